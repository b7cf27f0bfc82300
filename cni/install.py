"""Install `tenet-cni` for a container runtime: the plugin in the CNI bin directory and a conflist.

`tenet-agent install-cni` calls `install`. The plugin, named after its ``type`` (``tenet``), is by default
cni/plugin.c compiled with the C compiler found on PATH (``cc``, ``gcc``): a runtime waits for the plugin of
every pod, and a compiled one starts in about a millisecond where Python takes 15 ms or more. It forwards
the call to the agent, which runs cni.plugin on it, and runs cni.plugin itself when the agent cannot be
reached (cni/plugin.c says when). Without a C compiler, or if compiling fails, the plugin is the Python
launcher instead, which behaves the same, only slower to start (`describe` tells which was installed).

The launcher is a three-line Python script that runs cni.plugin from this source tree with ``python3 -I -S``:
isolated, no site packages, no virtualenv. The kernel hands everything after the interpreter on a ``#!``
line to it as one argument, so the flags are written joined (``-IS``). The compiled plugin runs the same
code the same way when it falls back, so both need this source tree where it was installed from.

The conflist runs ``loopback`` and then ``tenet``. Its cniVersion is the newest one both this plugin and the
``loopback`` found in the bin directory speak: Debian's containernetworking-plugins 1.1 stop at 1.0.0 and fail
a 1.1.0 list outright (runtimes then send no STATUS or GC, which need 1.1.0).

Both files are written to a temporary name and renamed into place, so a runtime never reads half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cni.config import LATEST_VERSION, SUPPORTED_VERSIONS, CniError, NetConf, version_key

PLUGIN_TYPE = "tenet"
CONFLIST_NAME = "10-tenet.conflist"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the cni package
PLUGIN_SOURCE = Path(__file__).resolve().parent / "plugin.c"
COMPILERS = ("cc", "gcc")
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")  # gnu11, not c11: no trigraphs in the paths built in
ELF_MAGIC = b"\x7fELF"
log = logging.getLogger(__name__)

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
    compiled: bool | None = None,
) -> tuple[Path, Path]:
    """Write `<bin_dir>/tenet` and `<conf_dir>/10-tenet.conflist`; return their paths.

    `cni_version` pins the conflist's cniVersion; by default it is the newest one `<bin_dir>/loopback` also
    speaks. `kubernetes`: a pod's network is the controller's choice (README "Kubernetes"). `compiled`: True
    compiles the plugin, False writes the Python launcher, None (the default) compiles when a C compiler is
    found and compiling works, else writes the launcher. Raises ValueError when the settings would make a
    configuration the plugin rejects, or when `compiled` is True and the plugin cannot be compiled.
    """
    if not python.startswith("/") or any(c.isspace() for c in python):
        raise ValueError(f"python must be an absolute path without spaces, not {python!r}")
    version = cni_version or conflist_version(Path(bin_dir) / "loopback")
    # capabilities: a runtime passes runtimeConfig.ips only to a plugin that declares it (CNI CONVENTIONS.md)
    plugin: dict[str, Any] = {"type": PLUGIN_TYPE, "agentSocket": socket_path, "capabilities": {"ips": True}}
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
    built = False
    if compiled or (compiled is None and compiler()):
        try:
            build(launcher, python=python)
            built = True
        except ValueError as error:
            if compiled:
                raise
            log.warning("%s; installing the Python launcher, which starts slower", error)
    if not built:
        write_atomically(launcher, LAUNCHER.format(python=python, root=str(SOURCE_ROOT)), mode=0o755)
    write_atomically(conf, json.dumps(conflist, indent=2) + "\n", mode=0o644)
    return launcher, conf


def compiler() -> str | None:
    """The C compiler on PATH that `build` uses, or None."""
    return next((found for name in COMPILERS if (found := shutil.which(name))), None)


def build(target: Path, *, python: str = "/usr/bin/python3") -> None:
    """Compile cni/plugin.c to `target` (mode 0755, replaced in one rename), falling back to cni.plugin
    from this source tree run by `python`. Raises ValueError when there is no compiler or compiling fails."""
    cc = compiler()
    if cc is None:
        raise ValueError(f"no C compiler ({' or '.join(COMPILERS)}) on PATH to build the plugin")
    fallback = f"import sys; sys.path.insert(0, {str(SOURCE_ROOT)!r}); from cni.plugin import main; sys.exit(main())"
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        defines = [f"-DTENET_PYTHON={c_string(python)}", f"-DTENET_FALLBACK={c_string(fallback)}"]
        done = subprocess.run(
            [cc, *CFLAGS, *defines, "-o", temporary, str(PLUGIN_SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise ValueError(f"{cc} could not compile {PLUGIN_SOURCE}: {done.stderr.strip()[-2000:]}")
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(f"{cc} could not compile {PLUGIN_SOURCE}: {error}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def describe(plugin: Path) -> str:
    """ "compiled" or "Python launcher": which kind of plugin `install` wrote at `plugin`."""
    with open(plugin, "rb") as handle:
        return "compiled" if handle.read(4) == ELF_MAGIC else "Python launcher"


def c_string(text: str) -> str:
    """`text` as a C string literal (UTF-8, with every byte outside printable ASCII escaped in octal)."""
    escaped = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            escaped.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            escaped.append(char)
        else:
            escaped.append(f"\\{byte:03o}")
    return '"' + "".join(escaped) + '"'


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
