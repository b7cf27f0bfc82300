"""The real kubectl against the stand-in API server: apply, create, get, label, delete, dry runs, CRDs."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apiserver.kubectl import kubectl, kubectl_binary, kubectl_dry_run

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web, tier: {tier}}}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{{containerPort: 80}}]
"""
POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""
CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.lab.tenet.io}
spec:
  group: lab.tenet.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Colour, type: string, jsonPath: .spec.colour}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              colour: {type: string, default: blue}
          status:
            type: object
            properties:
              ready: {type: boolean}
"""
WIDGET = """
apiVersion: lab.tenet.io/v1alpha1
kind: Widget
metadata: {{name: {name}}}
spec: {{size: {size}}}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def get_json(kubeconfig: Path, *args: str) -> dict:
    return json.loads(kubectl(kubeconfig, "get", *args, "-o", "json"))


def test_namespaces_create_get_label_delete(kubeconfig: Path, namespace: str) -> None:
    name = f"{namespace}-extra"
    manifest = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
    assert f"namespace/{name} created" in kubectl(kubeconfig, "create", "-f", "-", stdin=manifest)
    table = kubectl(kubeconfig, "get", "namespaces")
    assert table.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(line.split()[:2] == [name, "Active"] for line in table.splitlines())
    kubectl(kubeconfig, "label", "namespace", name, "team=blue")
    assert get_json(kubeconfig, "namespace", name)["metadata"]["labels"] == {"team": "blue"}
    assert kubectl(kubeconfig, "get", "namespaces", "-l", "team=blue", "-o", "name").split() == [f"namespace/{name}"]
    with pytest.raises(AssertionError, match="AlreadyExists"):
        kubectl(kubeconfig, "create", "-f", "-", stdin=manifest)
    kubectl(kubeconfig, "delete", "namespace", name)
    assert kubectl(kubeconfig, "get", "namespace", name, "--ignore-not-found") == ""


def test_pod_apply_patches_label_and_delete(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    manifest = write(tmp_path / "pod.yaml", POD.format(tier="front"))
    assert "pod/web created" in kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    first = get_json(kubeconfig, "-n", namespace, "pod", "web")
    assert "kubectl.kubernetes.io/last-applied-configuration" in first["metadata"]["annotations"]
    assert first["metadata"]["uid"] and first["metadata"]["creationTimestamp"]
    write(manifest, POD.format(tier="back"))
    assert "pod/web configured" in kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    second = get_json(kubeconfig, "-n", namespace, "pod", "web")
    assert second["metadata"]["labels"] == {"app": "web", "tier": "back"}
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert "pod/web unchanged" in kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    write(
        manifest, POD.format(tier="back").replace(", tier: back", "").replace("    ports: [{containerPort: 80}]\n", "")
    )
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))  # a patch that deletes a label and a port
    third = get_json(kubeconfig, "-n", namespace, "pod", "web")
    assert third["metadata"]["labels"] == {"app": "web"}
    assert third["spec"]["containers"] == [{"name": "c", "image": "busybox"}]
    write(manifest, POD.format(tier="back"))
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    kubectl(kubeconfig, "label", "-n", namespace, "pod", "web", "colour=red")
    rows = kubectl(kubeconfig, "get", "-n", namespace, "pods", "-l", "tier in (back),colour", "--no-headers")
    assert [row.split()[:2] for row in rows.splitlines()] == [["web", "Pending"]]
    assert kubectl(kubeconfig, "get", "-n", namespace, "pods", "-l", "colour!=red", "--no-headers") == ""
    assert kubectl(
        kubeconfig, "get", "-n", namespace, "pods", "--field-selector", "metadata.name=web", "-o", "name"
    ) == ("pod/web\n")
    kubectl(kubeconfig, "delete", "-n", namespace, "pod", "web")
    assert kubectl(kubeconfig, "get", "-n", namespace, "pods", "-o", "name") == ""


def test_network_policy_apply_and_dry_runs(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    manifest = write(tmp_path / "policy.yaml", POLICY)
    for mode, said in (("server", "(server dry run)"), ("client", "(dry run)")):
        out = kubectl(kubeconfig, "apply", "-n", namespace, f"--dry-run={mode}", "-f", str(manifest))
        assert f"networkpolicy.networking.k8s.io/deny-all created {said}" in out
    assert kubectl(kubeconfig, "get", "-n", namespace, "networkpolicies", "-o", "name") == ""
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    policy = get_json(kubeconfig, "-n", namespace, "netpol", "deny-all")
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    kubectl(kubeconfig, "delete", "-n", namespace, "-f", str(manifest))
    assert kubectl(kubeconfig, "get", "-n", namespace, "networkpolicies", "-o", "name") == ""


@pytest.fixture
def widgets(kubeconfig: Path, tmp_path: Path) -> Iterator[Path]:
    """The Widget CRD, applied with kubectl; removed after the test."""
    manifest = write(tmp_path / "crd.yaml", CRD)
    kubectl(kubeconfig, "apply", "-f", str(manifest))
    yield manifest
    kubectl(kubeconfig, "delete", "-f", str(manifest), "--ignore-not-found")


def test_custom_resources_from_a_crd(kubeconfig: Path, namespace: str, widgets: Path, tmp_path: Path) -> None:
    crd = get_json(kubeconfig, "crd", "widgets.lab.tenet.io")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    manifest = write(tmp_path / "w.yaml", WIDGET.format(name="w1", size=3))
    kubectl_dry_run([manifest], kubeconfig)
    assert kubectl(kubeconfig, "get", "-n", namespace, "widgets", "-o", "name") == ""
    assert "widget.lab.tenet.io/w1 created" in kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    kubectl(kubeconfig, "create", "-n", namespace, "-f", "-", stdin=WIDGET.format(name="w2", size=5))
    table = kubectl(kubeconfig, "get", "-n", namespace, "wd")
    assert [line.split() for line in table.splitlines()] == [
        ["NAME", "SIZE", "COLOUR"],
        ["w1", "3", "blue"],
        ["w2", "5", "blue"],
    ]
    write(manifest, WIDGET.format(name="w1", size=4))
    assert "widget.lab.tenet.io/w1 configured" in kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    w1 = get_json(kubeconfig, "-n", namespace, "widget", "w1")
    assert w1["spec"] == {"size": 4, "colour": "blue"}
    assert w1["metadata"]["generation"] == 2
    kubectl(kubeconfig, "label", "-n", namespace, "widget", "w2", "pick=me")
    assert kubectl(kubeconfig, "get", "-n", namespace, "widgets", "-l", "pick", "-o", "name") == (
        "widget.lab.tenet.io/w2\n"
    )
    kubectl(kubeconfig, "delete", "-n", namespace, "widget", "w1", "w2")
    assert kubectl(kubeconfig, "get", "-n", namespace, "widgets", "-o", "name") == ""


def test_dry_run_on_a_private_server_applies_the_crds_first(tmp_path: Path) -> None:
    crd_file = write(tmp_path / "crds.yaml", CRD)
    widgets = write(
        tmp_path / "widgets.yaml", WIDGET.format(name="w1", size=2) + "---\n" + WIDGET.format(name="w2", size=3)
    )
    out = kubectl_dry_run([crd_file, widgets])
    assert "widget.lab.tenet.io/w1 created (server dry run)" in out["server"]
    assert "widget.lab.tenet.io/w2 created (dry run)" in out["client"]
    with pytest.raises(AssertionError, match=r"spec\.size"):
        kubectl_dry_run([crd_file, write(tmp_path / "bad.yaml", WIDGET.format(name="w3", size='"two"'))])


def test_dry_run_refuses_what_the_server_would(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    manifest = write(tmp_path / "bad.yaml", WIDGET.format(name="w1", size=1).replace("Widget", "Gadget"))
    with pytest.raises(AssertionError, match=r"Gadget|could not find the requested resource"):
        kubectl_dry_run([manifest], kubeconfig)
    no_schema = CRD[: CRD.index("    schema:")]
    with pytest.raises(AssertionError, match="schemas are required"):
        kubectl_dry_run([write(tmp_path / "crd.yaml", no_schema)], kubeconfig)
    kubectl_dry_run([write(tmp_path / "crd.yaml", CRD)], kubeconfig)
    assert kubectl(kubeconfig, "get", "crd", "widgets.lab.tenet.io", "--ignore-not-found") == ""
    bad_name = write(tmp_path / "pod.yaml", POD.format(tier="x").replace("name: web", "name: Web_1"))
    with pytest.raises(AssertionError, match=r"metadata\.name"):
        kubectl(kubeconfig, "apply", "-n", namespace, "--dry-run=server", "-f", str(bad_name))


def test_get_watch_prints_table_rows_of_events(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(write(tmp_path / "pod.yaml", POD.format(tier="a"))))
    command = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "get", "-n", namespace, "pods", "-w"]
    watcher = subprocess.Popen(
        [*command, "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    deadline = threading.Timer(15.0, watcher.kill)  # a line that never comes ends the test, not the suite
    deadline.start()
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ["EVENT", "NAME", "STATUS", "AGE"]
        assert watcher.stdout.readline().split()[:3] == ["ADDED", "web", "Pending"]
        kubectl(kubeconfig, "delete", "-n", namespace, "pod", "web")
        assert watcher.stdout.readline().split()[:3] == ["DELETED", "web", "Pending"]
    finally:
        deadline.cancel()
        watcher.kill()
        watcher.wait()


def test_generator_commands_go_through_a_json_pipe(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    """kubectl's generators send protobuf, which the stand-in refuses (415); their JSON, piped, is created."""
    tokens = write(tmp_path / "tokens.json", '{"admin": ["t"]}')
    generate = ["create", "secret", "generic", "tokens", "-n", namespace, f"--from-file={tokens}"]
    with pytest.raises(AssertionError, match=r"application/vnd\.kubernetes\.protobuf"):
        kubectl(kubeconfig, *generate)
    body = kubectl(kubeconfig, *generate, "--dry-run=client", "-o", "json")
    assert "secret/tokens created" in kubectl(kubeconfig, "create", "-f", "-", stdin=body)
    secret = get_json(kubeconfig, "-n", namespace, "secret", "tokens")
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"tokens.json"}
