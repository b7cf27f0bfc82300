"""Install `tenet-cni` for a container runtime: a launcher in the CNI bin directory and a conflist.

`tenet-agent install-cni` calls `install`. The launcher is a three-line Python script named after the plugin's
``type`` (``tenet``) that runs cni.plugin from this source tree with ``python3 -I -S``: isolated, no site
packages, no virtualenv, so it starts in a few milliseconds. The kernel hands everything after the interpreter
on a ``#!`` line to it as one argument, so the flags are written joined (``-IS``).

The conflist runs ``loopback`` and then ``tenet``. Its cniVersion is the newest one both this plugin and the
``loopback`` found in the bin directory speak: Debian's containernetworking-plugins 1.1 stop at 1.0.0 and fail
a 1.1.0 list outright (runtimes then send no STATUS or GC, which need 1.1.0).

Both files are written to a temporary name and renamed into place, so a runtime never reads half of one.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cni.config import LATEST_VERSION, SUPPORTED_VERSIONS, CniError, NetConf, version_key

PLUGIN_TYPE = "tenet"
CONFLIST_NAME = "10-tenet.conflist"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the cni package

LAUNCHER = """\
#!{python} -IS
# Tenet CNI plugin launcher, written by tenet-agent install-cni. Runs cni.plugin from {root}.
import sys
sys.path.insert(0, {root!r})
from cni.plugin import main
sys.exit(main())
"""


def install(
    bin_dir: Path,
    conf_dir: Path,
    *,
    socket_path: str,
    tenant: str | None,
    network: str | None,
    namespaces: dict[str, str] | None,
    name: str = "tenet",
    python: str = "/usr/bin/python3",
    cni_version: str | None = None,
    kubernetes: bool = False,
) -> tuple[Path, Path]:
    """Write `<bin_dir>/tenet` and `<conf_dir>/10-tenet.conflist`; return their paths.

    `cni_version` pins the conflist's cniVersion; by default it is the newest one `<bin_dir>/loopback` also
    speaks. `kubernetes`: a pod's network is the controller's choice (README "Kubernetes"). Raises ValueError
    when the settings would make a configuration the plugin rejects.
    """
    if not python.startswith("/") or any(c.isspace() for c in python):
        raise ValueError(f"python must be an absolute path without spaces, not {python!r}")
    version = cni_version or conflist_version(Path(bin_dir) / "loopback")
    plugin: dict[str, Any] = {"type": PLUGIN_TYPE, "agentSocket": socket_path}
    if tenant is not None or network is not None:
        plugin |= {"tenant": tenant, "network": network}
    if namespaces:
        plugin["namespaces"] = dict(namespaces)
    if kubernetes:
        plugin["kubernetes"] = True
    try:  # the plugin's own validation: never install a configuration it will refuse
        NetConf({"cniVersion": version, "name": name, **plugin}, version)
    except CniError as error:
        raise ValueError(f"invalid Tenet CNI settings: {error.msg}") from None
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cniVersion {version} is not one of {', '.join(SUPPORTED_VERSIONS)}")
    conflist = {"cniVersion": version, "name": name, "plugins": [{"type": "loopback"}, plugin]}
    launcher = Path(bin_dir) / PLUGIN_TYPE
    conf = Path(conf_dir) / CONFLIST_NAME
    write_atomically(launcher, LAUNCHER.format(python=python, root=str(SOURCE_ROOT)), mode=0o755)
    write_atomically(conf, json.dumps(conflist, indent=2) + "\n", mode=0o644)
    return launcher, conf


def conflist_version(loopback: Path) -> str:
    """The newest cniVersion this plugin shares with `loopback`; the latest if it is absent or will not say."""
    try:
        done = subprocess.run(
            [str(loopback)],
            input=json.dumps({"cniVersion": LATEST_VERSION}).encode(),
            capture_output=True,
            env={"CNI_COMMAND": "VERSION"},
            timeout=10,
            check=True,
        )
        theirs = set(json.loads(done.stdout)["supportedVersions"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return LATEST_VERSION
    shared = [version for version in SUPPORTED_VERSIONS if version in theirs]
    return max(shared, key=version_key) if shared else LATEST_VERSION


def write_atomically(path: Path, text: str, *, mode: int) -> None:
    """Replace `path` with `text` in one rename, so readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
