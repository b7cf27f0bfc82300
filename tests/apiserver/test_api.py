"""The stand-in API server's answers through the official client: concurrency, status subresources,
finalizers, schema checks of custom resources, authentication, discovery, and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from lab.apiserver import StandInApiServer
from tests.apiserver.client import core_api, custom_object, error_body, filled, meta, name_of, pod, version_of
from tests.apiserver.kubectl import kubectl
from tests.etcd_server import EtcdServer

GROUP, VERSION, PLURAL = "lab.tenet.io", "v1", "gizmos"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Cluster",
        "names": {"plural": PLURAL, "singular": "gizmo", "kind": "Gizmo"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["rate"],
                                "properties": {
                                    "rate": {"type": "integer", "minimum": 1},
                                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                                },
                            },
                            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}


def gizmo(name: str, **spec: object) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gizmo", "metadata": {"name": name}, "spec": spec}


def conditions(node: client.V1Node) -> list[client.V1NodeCondition]:
    return filled(filled(node.status, "status").conditions, "status.conditions")


@pytest.fixture
def custom(kubeconfig: Path) -> Iterator[client.CustomObjectsApi]:
    """CustomObjectsApi with the cluster-scoped Gizmo CRD created (and deleted after the test)."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(client.V1CustomResourceDefinition.model_validate(CRD))
    yield client.CustomObjectsApi(api_client)
    extensions.delete_custom_resource_definition(CRD["metadata"]["name"])


def test_stale_resource_version_is_a_conflict(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    first = api.create_namespaced_pod(namespace, pod("p"))
    api.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"a": "1"}}})
    meta(first).labels = {"a": "2"}
    with pytest.raises(ApiException) as stale:
        api.replace_namespaced_pod("p", namespace, first)
    assert stale.value.status == 409 and '"reason":"Conflict"' in error_body(stale.value)
    with pytest.raises(ApiException) as pinned:
        api.patch_namespaced_pod("p", namespace, {"metadata": {"resourceVersion": version_of(first)}})
    assert pinned.value.status == 409
    current = api.read_namespaced_pod("p", namespace)
    meta(current).labels = {"a": "3"}
    assert meta(api.replace_namespaced_pod("p", namespace, current)).labels == {"a": "3"}
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_pod(namespace, pod("p"))
    assert exists.value.status == 409 and "AlreadyExists" in error_body(exists.value)
    with pytest.raises(ApiException) as missing:
        api.create_namespaced_pod(f"{namespace}-none", pod("p"))
    assert missing.value.status == 404


def test_pod_status_subresource(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    made = api.create_namespaced_pod(namespace, pod("p"))
    assert filled(made.status, "status").phase == "Pending" and meta(made).generation == 1
    ran = api.patch_namespaced_pod_status("p", namespace, {"status": {"phase": "Running", "podIP": "10.0.0.5"}})
    assert ran.status is not None
    assert (ran.status.phase, ran.status.pod_ip, meta(ran).generation) == ("Running", "10.0.0.5", 1)
    ignored = api.patch_namespaced_pod(
        "p", namespace, {"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}}
    )
    assert filled(ignored.status, "status").phase == "Running" and meta(ignored).labels == {"x": "y"}
    unchanged = api.patch_namespaced_pod_status("p", namespace, {"metadata": {"labels": {"x": "z"}}})
    assert meta(unchanged).labels == {"x": "y"}


def test_nodes_are_cluster_scoped_with_status(kubeconfig: Path, tmp_path: Path) -> None:
    api = core_api(kubeconfig)
    name = f"node-{tmp_path.name[-12:].lower().replace('_', '-')}".rstrip("-")
    node = client.V1Node(metadata=client.V1ObjectMeta(name=name, labels={"tenet.io/node": "yes"}))
    made = api.create_node(node)
    assert meta(made).namespace is None
    try:
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        assert conditions(api.patch_node_status(name, ready))[0].type == "Ready"
        listed = api.list_node(label_selector="tenet.io/node=yes")
        assert [name_of(n) for n in listed.items] == [name]
        assert conditions(api.read_node(name))[0].status == "True"
        api.patch_node_status(name, {"status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.1"}]}})
        api.patch_node(name, {"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})
        rows = [row.split() for row in kubectl(kubeconfig, "get", "node", name, "-o", "wide").splitlines()]
        assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]
        assert rows[1][:3] == [name, "Ready", "control-plane"] and rows[1][-2:] == ["192.168.50.1", "<none>"]
    finally:
        api.delete_node(name)
    assert api.list_node(label_selector="tenet.io/node=yes").items == []


def test_finalizers_hold_a_deleted_object(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    body = pod("p")
    meta(body).finalizers = ["tenet.io/cleanup"]
    api.create_namespaced_pod(namespace, body)
    api.delete_namespaced_pod("p", namespace)
    held = api.read_namespaced_pod("p", namespace)
    assert meta(held).deletion_timestamp is not None
    api.patch_namespaced_pod("p", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        api.read_namespaced_pod("p", namespace)
    assert gone.value.status == 404


def test_custom_resources_are_defaulted_checked_and_have_status(custom: client.CustomObjectsApi) -> None:
    made = custom_object(custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, gizmo("g1", rate=2, extra="x")))
    assert made["spec"] == {"rate": 2, "mode": "slow"}  # defaulted, the unknown field pruned
    for bad, words in (
        (gizmo("g2", rate="fast"), "spec.rate in body must be of type integer"),
        (gizmo("g2", rate=0), "should be greater than or equal to 1"),
        (gizmo("g2", rate=1, mode="medium"), 'Unsupported value: "medium"'),
        (gizmo("g2", mode="fast"), "spec.rate: Required value"),
    ):
        with pytest.raises(ApiException) as invalid:
            custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, bad)
        assert invalid.value.status == 422 and words in json.loads(error_body(invalid.value))["message"]
    with pytest.raises(ApiException) as strict:
        custom.create_cluster_custom_object(
            GROUP, VERSION, PLURAL, gizmo("g3", rate=1, extra="x"), field_validation="Strict"
        )
    assert (
        strict.value.status == 400 and 'unknown field "spec.extra"' in json.loads(error_body(strict.value))["message"]
    )
    ready = custom_object(
        custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, "g1", {"status": {"ready": True}})
    )
    assert ready["status"] == {"ready": True} and ready["metadata"]["generation"] == 1
    bumped = custom_object(custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "g1", {"spec": {"rate": 3}}))
    assert bumped["metadata"]["generation"] == 2 and bumped["status"] == {"ready": True}
    listed = custom_object(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["g1"]
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "g1")
    seen = watch.Watch().stream(
        custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=made["metadata"]["resourceVersion"],
        timeout_seconds=1,
    )  # fmt: skip
    assert [(e["type"], e["object"]["spec"]["rate"]) for e in seen] == [
        ("MODIFIED", 2),
        ("MODIFIED", 3),
        ("DELETED", 3),
    ]


def test_requests_without_the_token_are_refused(apiserver: StandInApiServer, tmp_path: Path) -> None:
    settings = apiserver.kubeconfig()
    settings["users"][0]["user"]["token"] = "wrong"
    path = tmp_path / "wrong"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ApiException) as refused:
        core_api(path).list_namespace()
    assert refused.value.status == 401


def test_discovery_documents(kubeconfig: Path, custom: client.CustomObjectsApi) -> None:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    versions = client.ApisApi(api_client).get_api_versions()
    groups = {g.name: filled(g.preferred_version, "preferredVersion").group_version for g in versions.groups}
    assert groups[GROUP] == f"{GROUP}/{VERSION}"
    assert groups["networking.k8s.io"] == "networking.k8s.io/v1"
    core = {r.name: r for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert core["pods"].namespaced and not core["nodes"].namespaced and "pods/status" in core
    assert {"watch", "list", "patch"} <= set(core["pods"].verbs)
    resources = kubectl(kubeconfig, "api-resources", "--api-group", GROUP, "--no-headers").split()
    assert resources[:4] == [PLURAL, f"{GROUP}/{VERSION}", "false", "Gizmo"]


def test_command_line_serves_and_writes_a_kubeconfig(etcd: EtcdServer, tmp_path: Path) -> None:
    out = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "lab.apiserver", "--etcd", etcd.client_url, "--prefix", f"/cli-{os.getpid()}"]
    log = (tmp_path / "log").open("w")
    process = subprocess.Popen([*command, "--kubeconfig-out", str(out)], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving on URL" once the kubeconfig is written
        assert line.startswith("serving on https://127.0.0.1:"), (tmp_path / "log").read_text()
        assert out.stat().st_mode & 0o777 == 0o600
        names = kubectl(out, "get", "namespaces", "-o", "name").split()
        assert names == ["namespace/default", "namespace/kube-public", "namespace/kube-system"]
    finally:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval, bounded by the deadline
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
    assert process.returncode == 0
    bad = subprocess.run([*command, "--port", "70000"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--port: 70000 is outside 0..65535" in bad.stderr
    bad = subprocess.run([*command, "--namespace-cleanup", "-1"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--namespace-cleanup: want 0 or more seconds, got -1" in bad.stderr
    bad = subprocess.run([*command[:3], "--etcd", "127.0.0.1:2379"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--etcd: etcd URL: '127.0.0.1:2379' is not http(s)://HOST[:PORT]" in bad.stderr


def test_list_at_an_exact_version_and_beyond_the_newest(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    api.create_namespaced_pod(namespace, pod("a"))
    then = version_of(api.list_namespaced_pod(namespace))
    api.create_namespaced_pod(namespace, pod("b"))
    exact = api.list_namespaced_pod(namespace, resource_version=then, resource_version_match="Exact")
    assert [name_of(p) for p in exact.items] == ["a"] and version_of(exact) == then
    newest = api.list_namespaced_pod(namespace, resource_version=then, resource_version_match="NotOlderThan")
    assert [name_of(p) for p in newest.items] == ["a", "b"]
    with pytest.raises(ApiException) as future:
        api.list_namespaced_pod(namespace, resource_version=str(int(then) + 10**6))
    assert future.value.status == 504 and "Too large resource version" in error_body(future.value)
    with pytest.raises(ApiException) as unmatched:
        api.list_namespaced_pod(namespace, resource_version_match="Exact")
    assert unmatched.value.status == 400


def test_a_deleted_namespace_is_terminating_until_emptied(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    name = f"{namespace}-doomed"
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert filled(api.read_namespace(name).spec, "spec").finalizers == ["kubernetes"]
    api.create_namespaced_pod(name, pod("p"))
    api.delete_namespace(name)
    terminating = api.read_namespace(name)
    assert filled(terminating.status, "status").phase == "Terminating"
    assert meta(terminating).deletion_timestamp is not None
    assert [name_of(p) for p in api.list_namespaced_pod(name).items] == ["p"], "still there, for a moment"
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_pod(name, pod("q"))
    assert refused.value.status == 403 and "because it is being terminated" in error_body(refused.value)
    api.patch_namespace(name, {"metadata": {"labels": {"still": "terminating"}}})  # an update does not end it
    deadline = time.monotonic() + 10
    while any(name_of(n) == name for n in api.list_namespace().items):
        assert time.monotonic() < deadline, "the namespace was not removed"
        time.sleep(0.05)  # poll interval, bounded by the deadline
    assert api.list_namespaced_pod(name).items == []


def test_server_side_dry_run_validates_and_stores_nothing(kubeconfig: Path, namespace: str) -> None:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    apps, rbac = client.AppsV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    answer = apps.create_namespaced_deployment(namespace, deployment, dry_run="All")
    assert meta(answer).uid and meta(answer).generation == 1 and meta(answer).namespace == namespace
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("web", namespace)
    assert missing.value.status == 404
    meta(deployment.spec.template).labels = {"app": "other"}
    with pytest.raises(ApiException) as invalid:
        apps.create_namespaced_deployment(namespace, deployment, dry_run="All")
    assert invalid.value.status == 422 and "`selector` does not match template `labels`" in error_body(invalid.value)
    meta(deployment.spec.template).labels = labels
    apps.create_namespaced_deployment(namespace, deployment)
    scaled = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 3}}, dry_run="All")
    assert scaled.spec.replicas == 3 and apps.read_namespaced_deployment("web", namespace).spec.replicas != 3
    apps.delete_namespaced_deployment("web", namespace, dry_run="All")
    assert meta(apps.read_namespaced_deployment("web", namespace)).generation == 1
    role = client.V1ClusterRole(metadata=client.V1ObjectMeta(name=f"{namespace}-reader"), rules=[
        client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"])
    ])  # fmt: skip
    assert name_of(rbac.create_cluster_role(role, dry_run="All")) == f"{namespace}-reader"
    assert f"{namespace}-reader" not in [name_of(r) for r in rbac.list_cluster_role().items]


def test_deployment_scale_subresource(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: c, image: busybox}]}\n"
    )
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(manifest))
    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert (filled(scale.spec, "spec").replicas, filled(scale.status, "status").selector) == (1, "app=web")
    assert "deployment.apps/web scaled" in kubectl(kubeconfig, "scale", "-n", namespace, "deploy/web", "--replicas=3")
    web = apps.read_namespaced_deployment("web", namespace)
    assert web.spec.replicas == 3 and meta(web).generation == 2
    patched = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    assert (
        filled(patched.spec, "spec").replicas == 0
        and apps.read_namespaced_deployment("web", namespace).spec.replicas == 0
    )
    with pytest.raises(ApiException) as negative:
        apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": -1}})
    assert negative.value.status == 422 and "spec.replicas" in error_body(negative.value)
    stale = apps.read_namespaced_deployment_scale("web", namespace)
    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"labels": {"x": "y"}}})
    filled(stale.spec, "spec").replicas = 5
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("web", namespace, stale)
    assert conflict.value.status == 409
    resources = {r.name: r for r in apps.get_api_resources().resources}
    assert (resources["deployments/scale"].group, resources["deployments/scale"].kind) == ("autoscaling", "Scale")
