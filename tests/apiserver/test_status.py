"""Status subresources of Tenet's own CRDs (deploy/10-crds.yaml) through the official client, as the controller
writes a Network's status: `/status` changes only `status`, the main resource ignores `status`; and the
CRDs' printer columns in `kubectl get`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.apiserver.client import custom_object, error_body
from tests.apiserver.kubectl import kubectl
from tests.deploy.support import DEPLOY

GROUP, VERSION = "tenet.io", "v1alpha1"
CONDITION = {
    "type": "Ready",
    "status": "True",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
    "reason": "Programmed",
    "message": "flows installed",
}
WIDGETS: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.status.tenet.io"},
    "spec": {
        "group": "status.tenet.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def custom(kubeconfig: Path) -> Iterator[client.CustomObjectsApi]:
    """CustomObjectsApi with deploy/'s CRDs applied by kubectl (deleted after the test)."""
    crds = DEPLOY / "10-crds.yaml"
    kubectl(kubeconfig, "apply", "-f", str(crds))
    try:
        yield client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
    finally:
        kubectl(kubeconfig, "delete", "-f", str(crds))


def network(name: str, **extra: Any) -> dict[str, Any]:
    spec = {"tenant": "blue", "encap": "vxlan", "subnet": "10.1.0.0/24"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Network", "metadata": {"name": name}, "spec": spec, **extra}


def test_network_status_is_written_only_through_its_subresource(custom: client.CustomObjectsApi) -> None:
    made = custom_object(
        custom.create_cluster_custom_object(GROUP, VERSION, "networks", network("web", status={"segment": 9}))
    )
    assert "status" not in made, "a create ignores status when the status subresource exists"
    status = {"segment": 5001, "freeAddresses": 253, "conditions": [CONDITION]}
    written = custom_object(
        custom.patch_cluster_custom_object_status(
            GROUP, VERSION, "networks", "web", {"status": status, "spec": {"subnet": "10.9.0.0/24"}}
        )
    )
    assert written["status"] == status
    assert written["spec"] == made["spec"], "/status ignores spec"
    assert written["metadata"]["generation"] == 1
    assert int(written["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])

    main = custom_object(
        custom.patch_cluster_custom_object(
            GROUP, VERSION, "networks", "web", {"status": {"segment": 1}, "spec": {"mtu": 1400}}
        )
    )
    assert main["status"] == status, "the main resource ignores status"
    assert main["spec"]["mtu"] == 1400 and main["metadata"]["generation"] == 2

    current = custom_object(custom.get_cluster_custom_object_status(GROUP, VERSION, "networks", "web"))
    current["status"]["freeAddresses"] = 252
    current["spec"]["mtu"] = 9000
    replaced = custom_object(custom.replace_cluster_custom_object_status(GROUP, VERSION, "networks", "web", current))
    assert replaced["status"]["freeAddresses"] == 252 and replaced["spec"]["mtu"] == 1400

    for bad, words in (
        ({"conditions": [{**CONDITION, "status": "Maybe"}]}, 'status.conditions[0].status: Unsupported value: "Maybe"'),
        ({"segment": 0}, "status.segment: Invalid value: 0"),
        ({"conditions": [{"type": "Ready"}]}, "status.conditions[0].status: Required value"),
    ):
        with pytest.raises(ApiException) as invalid:
            custom.patch_cluster_custom_object_status(GROUP, VERSION, "networks", "web", {"status": bad})
        assert invalid.value.status == 422 and words in json.loads(error_body(invalid.value))["message"]
    kept = custom_object(custom.get_cluster_custom_object(GROUP, VERSION, "networks", "web"))
    assert kept["status"]["freeAddresses"] == 252 and kept["status"]["segment"] == 5001


def test_namespaced_custom_resource_status(kubeconfig: Path, namespace: str) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    extensions.create_custom_resource_definition(client.V1CustomResourceDefinition.model_validate(WIDGETS))
    try:
        body = {"apiVersion": "status.tenet.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
        custom.create_namespaced_custom_object("status.tenet.io", "v1", namespace, "widgets", body)
        ready = custom_object(
            custom.patch_namespaced_custom_object_status(
                "status.tenet.io", "v1", namespace, "widgets", "w", {"status": {"ready": True}, "spec": {"size": 2}}
            )
        )
        assert (ready["status"], ready["spec"], ready["metadata"]["generation"]) == ({"ready": True}, {"size": 1}, 1)
        with pytest.raises(ApiException) as elsewhere:
            custom.patch_namespaced_custom_object_status(
                "status.tenet.io", "v1", "default", "widgets", "w", {"status": {"ready": False}}
            )
        assert elsewhere.value.status == 404
    finally:
        extensions.delete_custom_resource_definition(WIDGETS["metadata"]["name"])


def test_kubectl_get_networks_prints_the_crd_columns(kubeconfig: Path, custom: client.CustomObjectsApi) -> None:
    custom.create_cluster_custom_object(GROUP, VERSION, "networks", network("web"))
    custom.create_cluster_custom_object(GROUP, VERSION, "tenants", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": "blue"},
        "spec": {"quota": {"networks": 4}},
    })  # fmt: skip
    custom.patch_cluster_custom_object_status(
        GROUP, VERSION, "networks", "web", {"status": {"segment": 5001, "freeAddresses": 253}}
    )
    rows = [line.split() for line in kubectl(kubeconfig, "get", "networks").splitlines()]
    assert rows[0] == ["NAME", "TENANT", "ENCAP", "SEGMENT", "SUBNET", "AGE"]
    assert rows[1][:5] == ["web", "blue", "vxlan", "5001", "10.1.0.0/24"]
    wide = [line.split() for line in kubectl(kubeconfig, "get", "tnet", "-o", "wide").splitlines()]
    assert wide[0] == ["NAME", "TENANT", "ENCAP", "SEGMENT", "SUBNET", "FREE", "AGE"]
    assert wide[1][:6] == ["web", "blue", "vxlan", "5001", "10.1.0.0/24", "253"]
    tenants = [line.split() for line in kubectl(kubeconfig, "get", "tenants").splitlines()]
    assert tenants[0] == ["NAME", "MAX-NETWORKS", "MAX-ENDPOINTS", "AGE"]
    assert tenants[1][:3] == ["blue", "4", "<none>"]
    everything = sorted(kubectl(kubeconfig, "get", "tenet", "-o", "name").split())  # the CRDs' category
    assert everything == ["network.tenet.io/web", "tenant.tenet.io/blue"]
