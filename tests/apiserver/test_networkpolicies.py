"""NetworkPolicies in the stand-in API server: validated by topology/netpol_spec.py on create, update and patch
(422 Invalid naming the field, as kube-apiserver answers), and `spec.policyTypes` defaulted when stored."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.apiserver.client import error_body, filled
from tests.apiserver.kubectl import kubectl, kubectl_binary


def policy(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, **spec},
    }


def policy_object(name: str, namespace: str, **spec: Any) -> client.V1NetworkPolicy:
    """`policy(...)` as the client's model, for a create or replace."""
    return client.V1NetworkPolicy.model_validate(policy(name, namespace, **spec))


def ports(port: int, end_port: int) -> list[dict[str, Any]]:
    return [{"ports": [{"protocol": "TCP", "port": port, "endPort": end_port}]}]


@pytest.fixture
def networking(kubeconfig: Path) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def cause(error: ApiException) -> tuple[str, str]:
    status = json.loads(error_body(error))
    assert status["kind"] == "Status" and status["reason"] == "Invalid" and status["code"] == 422
    assert status["details"]["kind"] == "NetworkPolicy" and status["details"]["group"] == "networking.k8s.io"
    first = status["details"]["causes"][0]
    return first["field"], first["message"]


def test_an_end_port_below_the_port_is_refused_on_create_update_and_patch(
    networking: client.NetworkingV1Api, namespace: str
) -> None:
    with pytest.raises(ApiException) as refused:
        networking.create_namespaced_network_policy(
            namespace, policy_object("bad", namespace, ingress=ports(9000, 8000))
        )
    assert refused.value.status == 422
    field, message = cause(refused.value)
    assert field == "spec.ingress[0].ports[0].endPort" and "below" in message
    with pytest.raises(ApiException):
        networking.read_namespaced_network_policy("bad", namespace)  # nothing was stored
    networking.create_namespaced_network_policy(namespace, policy_object("good", namespace, ingress=ports(8000, 9000)))
    stored = networking.read_namespaced_network_policy("good", namespace).to_dict()
    broken = policy("good", namespace, egress=ports(80, 79))
    broken["metadata"]["resourceVersion"] = stored["metadata"]["resource_version"]
    with pytest.raises(ApiException) as updated:
        networking.replace_namespaced_network_policy("good", namespace, client.V1NetworkPolicy.model_validate(broken))
    assert cause(updated.value)[0] == "spec.egress[0].ports[0].endPort"
    patch = {"spec": {"ingress": [{"ports": [{"port": 70000}]}]}}
    with pytest.raises(ApiException) as patched:
        networking.patch_namespaced_network_policy("good", namespace, patch)
    assert cause(patched.value)[0] == "spec.ingress[0].ports[0].port"
    unchanged = networking.read_namespaced_network_policy("good", namespace)
    ingress = filled(filled(unchanged.spec, "spec").ingress, "spec.ingress")
    assert filled(ingress[0].ports, "spec.ingress[0].ports")[0].end_port == 9000


def test_policy_types_are_defaulted_as_the_api_server_does(networking: client.NetworkingV1Api, namespace: str) -> None:
    networking.create_namespaced_network_policy(namespace, policy_object("in", namespace, ingress=ports(80, 81)))
    networking.create_namespaced_network_policy(namespace, policy_object("both", namespace, egress=ports(53, 53)))
    networking.create_namespaced_network_policy(
        namespace, policy_object("given", namespace, policyTypes=["Egress"], ingress=ports(80, 81))
    )
    types = {
        name: filled(networking.read_namespaced_network_policy(name, namespace).spec, "spec").policy_types
        for name in ("in", "both", "given")
    }
    assert types == {"in": ["Ingress"], "both": ["Ingress", "Egress"], "given": ["Egress"]}


def test_kubectl_apply_shows_the_field_of_an_invalid_policy(kubeconfig: Path, namespace: str) -> None:
    document = yaml.safe_dump(policy("wide", namespace, ingress=ports(9000, 8000)))
    command = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"]
    done = subprocess.run(command, input=document, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and 'The NetworkPolicy "wide" is invalid' in done.stderr
    assert "spec.ingress[0].ports[0].endPort" in done.stderr, done.stderr
    answer = kubectl(kubeconfig, "get", "networkpolicies", "-n", namespace, "-o", "name")
    assert "wide" not in answer
    fixed = yaml.safe_dump(policy("wide", namespace, ingress=ports(8000, 9000)))
    kubectl(kubeconfig, "apply", "-f", "-", stdin=fixed)
    shown = json.loads(kubectl(kubeconfig, "get", "networkpolicy", "wide", "-n", namespace, "-o", "json"))
    assert shown["spec"]["policyTypes"] == ["Ingress"]
