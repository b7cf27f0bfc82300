"""deploy/ against an API server: the real kubectl applies, dry-runs, lists and deletes every manifest on the
stand-in API server (lab.apiserver over a real etcd), and each object comes back as it was applied."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.apiserver import StandInApiServer
from tests.apiserver.kubectl import kubectl
from tests.deploy.support import DEPLOY, NAMESPACE, Obj, objects
from tests.etcd_server import EtcdServer

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp")
KINDS = "ds,deploy,cm,sa,clusterrole,clusterrolebinding"
WAIT = 15.0  # seconds a deletion may take (the namespace stays Terminating for a moment)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    scratch = tmp_path_factory.mktemp("deploy-apiserver")
    with EtcdServer() as etcd, StandInApiServer(etcd.client_url, cert_dir=scratch / "certs") as server:
        yield server.write_kubeconfig(scratch / "kubeconfig")


def resource_name(obj: Obj) -> str:
    """What kubectl calls an object in its messages: `deployment.apps/tenet-controller`."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower()
    return f"{kind}.{group}/{obj['metadata']['name']}" if group else f"{kind}/{obj['metadata']['name']}"


def fetch(kubeconfig: Path, obj: Obj) -> Obj:
    where = ["-n", obj["metadata"]["namespace"]] if "namespace" in obj["metadata"] else []
    return json.loads(kubectl(kubeconfig, "get", *where, resource_name(obj), "-o", "json"))


def without_server_fields(got: Obj, applied: Obj) -> Obj:
    """`got` less what the server adds to what was applied: uid, resourceVersion, generation and
    creationTimestamp, kubectl's last-applied annotation (which must hold the applied object), a status the
    manifest does not set, and a Namespace's `spec.finalizers: [kubernetes]`."""
    out = copy.deepcopy(got)
    meta = out["metadata"]
    for field in SERVER_METADATA:
        assert field in meta, (resource_name(applied), field)
        del meta[field]
    annotations = meta.pop("annotations")
    recorded = json.loads(annotations.pop(LAST_APPLIED))
    if recorded["metadata"].get("annotations") == {}:  # kubectl records an empty map where there was none
        del recorded["metadata"]["annotations"]
    assert recorded == applied
    if annotations:
        meta["annotations"] = annotations
    if "status" not in applied:
        out.pop("status", None)
    if applied["kind"] == "Namespace":
        assert out.pop("spec") == {"finalizers": ["kubernetes"]}
    return out


def listed(kubeconfig: Path) -> set[str]:
    return set(kubectl(kubeconfig, "get", KINDS, "-A", "-o", "name").split())


def wait_gone(kubeconfig: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while kubectl(kubeconfig, "get", what, "--ignore-not-found", "-o", "name"):
        assert time.monotonic() < deadline, f"{what} is still there after {WAIT} s"
        time.sleep(0.1)  # poll interval, bounded by the deadline


def test_server_dry_run_checks_everything_and_stores_nothing(kubeconfig: Path) -> None:
    """As on a real cluster, a server-side dry run of objects in a namespace that does not exist yet is
    refused (the dry run creates nothing, the namespace neither); once it exists every object passes."""
    first = kubectl(kubeconfig, "apply", "--dry-run=server", "-f", str(DEPLOY), check=False)
    cluster_scoped = [obj for obj in objects() if "namespace" not in obj["metadata"]]
    for obj in cluster_scoped:
        assert f"{resource_name(obj)} created (server dry run)" in first
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(objects()[0]))  # the Namespace alone
    try:
        out = kubectl(kubeconfig, "apply", "--dry-run=server", "-f", str(DEPLOY))
        said = sorted(line for line in out.splitlines() if line)
        expected = sorted(
            f"{resource_name(obj)} {'unchanged' if obj['kind'] == 'Namespace' else 'created'} (server dry run)"
            for obj in objects()
        )
        assert said == expected
        assert listed(kubeconfig) == set()
        assert kubectl(kubeconfig, "get", "crd", "-o", "name") == ""
    finally:
        kubectl(kubeconfig, "delete", "namespace", NAMESPACE)
    wait_gone(kubeconfig, f"namespace/{NAMESPACE}")


def test_apply_lists_round_trips_and_deletes_every_object(kubeconfig: Path) -> None:
    applied = objects()
    out = kubectl(kubeconfig, "apply", "-f", str(DEPLOY))
    assert out.splitlines() == [f"{resource_name(obj)} created" for obj in applied]
    again = kubectl(kubeconfig, "apply", "-f", str(DEPLOY))
    assert again.splitlines() == [f"{resource_name(obj)} unchanged" for obj in applied]

    names = {resource_name(obj) for obj in applied if obj["kind"] in ("DaemonSet", "Deployment", "ConfigMap",
             "ServiceAccount", "ClusterRole", "ClusterRoleBinding")}  # fmt: skip
    assert listed(kubeconfig) == names
    table = kubectl(kubeconfig, "get", KINDS, "-A")
    rows = {tuple(line.split()[:2]) for line in table.splitlines() if line.startswith(NAMESPACE)}
    assert (NAMESPACE, "daemonset.apps/tenet-agent") in rows
    assert (NAMESPACE, "deployment.apps/tenet-controller") in rows
    bindings = [line.split() for line in table.splitlines() if "clusterrolebinding" in line]
    assert bindings[0][:2] == [
        "clusterrolebinding.rbac.authorization.k8s.io/tenet-controller",
        "ClusterRole/tenet-controller",
    ]
    deployments = kubectl(kubeconfig, "get", "-n", NAMESPACE, "deploy", "-o", "wide").splitlines()
    assert deployments[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                                      "SELECTOR"]  # fmt: skip
    assert deployments[1].split()[:2] == ["tenet-controller", "0/1"]
    assert deployments[1].split()[-2:] == ["localhost/tenet:0.1.0", "app.kubernetes.io/name=tenet-controller"]

    for obj in applied:
        got = fetch(kubeconfig, obj)
        assert without_server_fields(got, obj) == obj, resource_name(obj)

    kubectl(kubeconfig, "label", "-n", NAMESPACE, "deploy,ds,sa,cm", "--all", "tier=tenet")
    kubectl(kubeconfig, "label", "clusterrole,clusterrolebinding", "tenet-controller", "tier=tenet")
    labelled = set(kubectl(kubeconfig, "get", KINDS, "-A", "-l", "tier=tenet", "-o", "name").split())
    assert labelled == names
    assert fetch(kubeconfig, one_of(applied, "Deployment"))["metadata"]["generation"] == 1, "labels are metadata"

    deleted = kubectl(kubeconfig, "delete", "-f", str(DEPLOY))
    assert len(deleted.splitlines()) == len(applied)
    wait_gone(kubeconfig, f"namespace/{NAMESPACE}")
    assert listed(kubeconfig) == set()
    assert kubectl(kubeconfig, "get", "crd", "-o", "name") == ""


def one_of(applied: list[Obj], kind: str) -> Obj:
    return next(obj for obj in applied if obj["kind"] == kind)


def bad(kind: str, change: Any) -> Obj:
    """The deploy/ object of `kind` changed by `change(obj)`."""
    obj = next(o for o in objects() if o["kind"] == kind)
    change(obj)
    return obj


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        (bad("Deployment", lambda o: o["spec"]["template"]["metadata"]["labels"].clear()),
         "spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`"),
        (bad("Deployment", lambda o: o["spec"].pop("selector")), "spec.selector: Required value"),
        (bad("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("image")),
         "spec.template.spec.containers[0].image: Required value"),
        (bad("Deployment", lambda o: o["spec"]["strategy"].update(rollingUpdate={"maxSurge": 1})),
         "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"),
        (bad("DaemonSet", lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Never")),
         'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'),
        (bad("DaemonSet", lambda o: o["metadata"].pop("name")),
         "metadata.name: Required value: name or generateName is required"),
        (bad("ClusterRole", lambda o: o["rules"][0].pop("verbs")),
         "rules[0].verbs: Required value: verbs must contain at least one value"),
        (bad("ClusterRoleBinding", lambda o: o["roleRef"].update(kind="Role")),
         'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
        (bad("ClusterRoleBinding", lambda o: o["subjects"][0].pop("namespace")),
         "subjects[0].namespace: Required value"),
        (bad("ConfigMap", lambda o: o["data"].update({"bad key": "x"})),
         "data[bad key]: Invalid value"),
    ],
    ids=["selector-mismatch", "no-selector", "no-image", "recreate-rolling", "restart-never", "no-name", "no-verbs",
         "binding-role-kind", "subject-namespace", "config-key"],
)  # fmt: skip
def test_the_server_refuses_what_kube_apiserver_refuses(kubeconfig: Path, obj: Obj, words: str) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(objects()[0]))  # the namespace (left for the next)
    with pytest.raises(AssertionError, match="is invalid") as refused:
        kubectl(kubeconfig, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    assert words in str(refused.value)
    assert listed(kubeconfig) == set()


def test_selectors_and_role_refs_are_immutable(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "-f", str(DEPLOY))
    try:
        for kind, change, words in (
            ("Deployment", lambda o: o["spec"]["selector"]["matchLabels"].update(x="y"), "field is immutable"),
            ("DaemonSet", lambda o: o["spec"]["selector"]["matchLabels"].update(x="y"), "field is immutable"),
            ("ClusterRoleBinding", lambda o: o["roleRef"].update(name="view"), "cannot change roleRef"),
        ):
            obj = bad(kind, change)
            if kind != "ClusterRoleBinding":
                obj["spec"]["template"]["metadata"]["labels"]["x"] = "y"
            with pytest.raises(AssertionError, match=words):
                kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(obj))
            assert fetch(kubeconfig, obj)["metadata"]["generation"] == 1, kind
        changed = bad("Deployment", lambda o: o["spec"].update(replicas=2))
        said = kubectl(kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(changed))
        assert said == "deployment.apps/tenet-controller configured (server dry run)\n"
        assert fetch(kubeconfig, changed)["spec"]["replicas"] == 1
        kubectl(kubeconfig, "delete", "--dry-run=server", "-n", NAMESPACE, "deploy", "tenet-controller")
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(changed))
        assert fetch(kubeconfig, changed)["metadata"]["generation"] == 2
        assert fetch(kubeconfig, changed)["spec"]["replicas"] == 2
    finally:
        kubectl(kubeconfig, "delete", "-f", str(DEPLOY))
        wait_gone(kubeconfig, f"namespace/{NAMESPACE}")
