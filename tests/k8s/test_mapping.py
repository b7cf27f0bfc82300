"""Tenet's custom resources into the model with status written back, and which network a pod's endpoint
joins: by a Network's namespaces, its namespaceSelector, the pod's annotation, else the cluster network."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.api import Tokens, make_app
from tests.api.support import ADMIN, Wsgi
from tests.k8s.conftest import Lab, wait_for
from topology.errors import ValidationError


def ready(lab: Lab, name: str) -> dict | None:
    """The Network's Ready condition once written back, else None."""
    conditions = (lab.get("networks", name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def test_custom_resources_become_model_objects_with_status_written_back(lab: Lab) -> None:
    model = lab.service.model
    lab.watch()
    lab.create("tenants", "blue", {"quota": {"networks": 5, "endpoints": 50}})
    lab.create("qosprofiles", "gold", {"rateKbps": 10000, "burstKb": 1000})
    web = {"tenant": "blue", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24", "namespaces": ["shop"]}
    lab.create("networks", "blue-web", {**web, "qos": "gold"})
    lab.create("networks", "red-web", {"tenant": "red", "encap": "vlan", "subnet": "10.1.0.0/24"})
    lab.create("networks", "red-dup", {"tenant": "red", "encap": "vxlan", "vni": 5001, "subnet": "10.9.0.0/24"})

    wait_for(lambda: (ready(lab, "blue-web") or {}).get("status") == "True", "blue-web Ready")
    network = model.networks["blue/blue-web"]
    assert (network.encap.value, network.segment, str(network.subnet)) == ("vxlan", 5001, "10.1.0.0/24")
    # Tenants and QoS profiles have watchers of their own: the network may be Ready before they are applied.
    wait_for(lambda: "blue" in lab.service.quotas and "gold" in model.qos_profiles, "blue's quota and gold applied")
    assert lab.service.quotas["blue"].networks == 5 and lab.service.quotas["blue"].endpoints == 50
    assert model.qos_profiles["gold"].rate_kbps == 10000 and model.qos_profiles["gold"].direction == "egress"
    wait_for(lambda: "blue/blue-web" in model.qos_attachments, "gold attached to blue/blue-web")
    status = wait_for(
        lambda: (
            (s := lab.get("networks", "blue-web")["status"]).get("freeAddresses") is not None
            and {c["type"] for c in s["conditions"]} == {"Ready", "QosApplied"}
            and s
        ),
        "blue-web status with QosApplied",
    )
    assert status["segment"] == 5001 and status["freeAddresses"] == model.free_addresses("blue/blue-web") > 200

    # The tenant red is made on first use; its vlan network gets a VLAN from the pool.
    wait_for(lambda: (ready(lab, "red-web") or {}).get("status") == "True", "red-web Ready")
    segment = lab.get("networks", "red-web")["status"]["segment"]
    assert segment == model.networks["red/red-web"].segment and segment in lab.service.policy.vlan_pool

    # A VNI in use: the model refuses, the status says why, the watcher goes on.
    refused = wait_for(lambda: ready(lab, "red-dup"), "red-dup condition")
    assert refused["status"] == "False" and refused["reason"] == "Invalid" and "5001" in refused["message"]
    assert "red/red-dup" not in model.networks

    lab.delete("networks", "red-web")
    wait_for(lambda: "red/red-web" not in model.networks, "red/red-web deleted")
    lab.delete("qosprofiles", "gold")
    wait_for(lambda: "gold" not in model.qos_profiles, "gold deleted")
    assert "blue/blue-web" not in model.qos_attachments and "blue/blue-web" in model.networks


def test_a_pod_joins_the_network_of_its_namespace_or_annotation_or_the_cluster_network(lab: Lab) -> None:
    cluster = lab.watch()
    base = {"encap": "vxlan", "subnet": "10.1.0.0/24"}
    lab.create("networks", "blue-web", {**base, "tenant": "blue", "namespaces": ["shop"]})
    lab.create("networks", "blue-db", {**base, "tenant": "blue", "subnet": "10.2.0.0/24"})
    selector = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["bank"]}]}
    lab.create("networks", "red-web", {**base, "tenant": "red", "namespaceSelector": selector})
    lab.namespace("shop")
    lab.namespace("vault", {"team": "bank"})
    lab.namespace("plain")
    lab.pod("shop", "web", labels={"app": "web"})
    lab.pod("shop", "db", annotations={"tenet.io/network": "blue-db"})
    lab.pod("shop", "elsewhere", annotations={"tenet.io/network": "red-web"})
    lab.pod("vault", "teller")
    lab.pod("plain", "loner")
    models = lab.service.model.networks
    wait_for(lambda: {"blue/blue-web", "blue/blue-db", "red/red-web"} <= set(models), "the three networks")
    wait_for(lambda: "vault" in cluster.sync.known("namespaces"), "namespace vault watched")

    assert cluster.endpoint_network("shop", "web")[0] == "blue/blue-web"
    assert cluster.endpoint_network("shop", "db")[0] == "blue/blue-db"
    assert cluster.endpoint_network("vault", "teller")[0] == "red/red-web"
    with pytest.raises(ValidationError) as other_tenant:
        cluster.endpoint_network("shop", "elsewhere")
    assert "not a network of tenant 'blue'" in str(other_tenant.value)
    with pytest.raises(ValidationError) as no_cluster_network:
        cluster.endpoint_network("plain", "loner")
    assert "default/pods" in str(no_cluster_network.value) and "'plain'" in str(no_cluster_network.value)

    # The cluster network, once it exists, takes every namespace no Network claims.
    lab.service.create_tenant("default")
    lab.service.create_network("default", "pods", encap="vxlan", segment=None, subnet="10.244.0.0/16")
    assert cluster.endpoint_network("plain", "loner")[0] == "default/pods"

    # A label added to a namespace moves its new pods to the Network that selects it.
    lab.core.patch_namespace("plain", {"metadata": {"labels": {"team": "bank"}}})
    wait_for(lambda: cluster.endpoint_network("plain", "loner")[0] == "red/red-web", "plain on red-web")


def test_the_endpoint_route_picks_the_pods_network_and_records_it(lab: Lab) -> None:
    cluster = lab.watch()
    tokens = Tokens.from_dict({"admin": [ADMIN], "nodes": {"n1": ["node-token"]}})
    api = Wsgi(make_app(lab.service, tokens, k8s=cluster))
    lab.node("n1", "192.168.50.1")
    spec = {"tenant": "blue", "encap": "vxlan", "subnet": "10.1.0.0/24", "namespaces": ["shop"]}
    lab.create("networks", "blue-web", spec)
    lab.namespace("shop")
    lab.pod("shop", "web", labels={"app": "web"}, node="n1")
    wait_for(lambda: "n1" in lab.service.model.nodes, "node n1 registered")
    wait_for(lambda: "blue/blue-web" in lab.service.model.networks, "blue/blue-web")
    body = {"id": "c1-eth0", "node": "n1", "k8s": {"namespace": "shop", "pod": "web"}}
    answer = api.post("/v1/endpoints", body, token="node-token")
    assert answer.status == 201, answer.body
    assert answer.body["network"] == "blue/blue-web"
    record = cluster.sync.pods_of["c1-eth0"]
    assert record["labels"] == {"app": "web"} and record["ports"] == {"http": {"port": 80, "protocol": "TCP"}}

    refused = api.post("/v1/endpoints", {**body, "id": "c2-eth0", "k8s": {"namespace": "shop", "pod": "nope"}})
    assert refused.status == 400 and refused.error["field"] == "endpoint.k8s"
    assert "shop/nope" in refused.error["message"]

    # The pod is deleted: its endpoint is released, whether or not a CNI DEL comes.
    lab.core.delete_namespaced_pod("web", "shop")
    wait_for(lambda: "c1-eth0" not in cluster.sync.pods_of, "endpoint released with its pod")
    assert "c1-eth0" not in lab.service.model.endpoints


def test_only_node_and_admin_tokens_look_up_pods_and_only_for_pods_on_their_node(lab: Lab) -> None:
    cluster = lab.watch()
    tokens = Tokens.from_dict(
        {"admin": [ADMIN], "tenants": {"red": ["red-token"]}, "nodes": {"n1": ["n1-token"], "n2": ["n2-token"]}}
    )
    api = Wsgi(make_app(lab.service, tokens, k8s=cluster))
    lab.node("n1", "192.168.50.1")
    lab.node("n2", "192.168.50.2")
    lab.create(
        "networks", "blue-web", {"tenant": "blue", "encap": "vxlan", "subnet": "10.1.0.0/24", "namespaces": ["shop"]}
    )
    lab.create("networks", "red-web", {"tenant": "red", "encap": "vxlan", "subnet": "10.2.0.0/24"})
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.pod("shop", "unscheduled")
    wait_for(lambda: {"n1", "n2"} <= set(lab.service.model.nodes), "nodes registered")
    wait_for(lambda: {"blue/blue-web", "red/red-web"} <= set(lab.service.model.networks), "networks")
    body = {"id": "c1-eth0", "node": "n1", "k8s": {"namespace": "shop", "pod": "web"}}

    # A tenant token learns nothing of other tenants' pods or networks.
    for pod in ("web", "nope"):
        answer = api.post("/v1/endpoints", {**body, "k8s": {"namespace": "shop", "pod": pod}}, token="red-token")
        assert answer.status == 403 and answer.error["field"] == "endpoint.k8s", answer.body
        assert "blue" not in answer.error["message"] and "shop" not in answer.error["message"]

    # A node's token: only pods scheduled on its own node.
    elsewhere = api.post("/v1/endpoints", {**body, "node": "n2"}, token="n2-token")
    assert elsewhere.status == 400 and elsewhere.error["field"] == "endpoint.k8s", elsewhere.body
    assert "not scheduled on node 'n2'" in elsewhere.error["message"]
    unscheduled = {**body, "k8s": {"namespace": "shop", "pod": "unscheduled"}}
    answer = api.post("/v1/endpoints", unscheduled, token="n1-token")
    assert answer.status == 400 and answer.error["field"] == "endpoint.k8s", answer.body
    assert not lab.service.model.endpoints

    # A pod the API server does not have: said so, without the client's headers or the server's address.
    missing = api.post("/v1/endpoints", {**body, "k8s": {"namespace": "shop", "pod": "nope"}}, token="n1-token")
    assert missing.status == 400 and missing.error["field"] == "endpoint.k8s"
    assert missing.error["message"] == "endpoint.k8s: cannot find pod shop/nope: not found"
    assert api.post("/v1/endpoints", body, token="n1-token").status == 201

    # The API server away: said so, without its address.
    lab.stop_watching()
    lab.server.stop()
    cluster.lookup.api_client.rest_client.pool_manager.clear()
    away = api.post(
        "/v1/endpoints", {**body, "id": "c2-eth0", "k8s": {"namespace": "shop", "pod": "x"}}, token="n1-token"
    )
    assert away.status == 400 and away.error["field"] == "endpoint.k8s", away.body
    assert away.error["message"] == "endpoint.k8s: cannot find pod shop/x: the API server cannot be reached"


def test_requests_to_the_api_server_are_made_without_the_service_lock(lab: Lab) -> None:
    cluster = lab.watch()
    tokens = Tokens.from_dict({"admin": [ADMIN], "nodes": {"n1": ["n1-token"]}})
    api = Wsgi(make_app(lab.service, tokens, k8s=cluster))
    lock_free: list[tuple[str, bool]] = []

    def free() -> bool:
        """Whether another thread could take the Service's lock now."""
        taken: list[bool] = []

        def attempt() -> None:
            taken.append(lab.service.lock.acquire(timeout=1))
            if taken[0]:
                lab.service.lock.release()

        other = threading.Thread(target=attempt)
        other.start()
        other.join()
        return taken[0]

    def watched(name: str, call: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            lock_free.append((name, free()))
            return call(*args, **kwargs)

        return wrapper

    lookup, custom = cluster.lookup, cluster.custom
    assert lookup.api_client.configuration.retries is False  # one try within the timeout, no urllib3 retries
    lookup.read_namespaced_pod = watched("pod", lookup.read_namespaced_pod)  # type: ignore[method-assign]
    lookup.read_namespace = watched("namespace", lookup.read_namespace)  # type: ignore[method-assign]
    custom.patch_cluster_custom_object_status = watched(  # type: ignore[method-assign]
        "status", custom.patch_cluster_custom_object_status
    )
    lab.node("n1", "192.168.50.1")
    lab.create(
        "networks", "blue-web", {"tenant": "blue", "encap": "vxlan", "subnet": "10.1.0.0/24", "namespaces": ["shop"]}
    )
    wait_for(lambda: "n1" in lab.service.model.nodes and "blue/blue-web" in lab.service.model.networks, "applied")
    wait_for(lambda: ("status", True) in lock_free, "a Network status written")
    # A pod and namespace the watch has not delivered yet: both are read by GET for the CNI ADD.
    cluster.sync.informers["pods"].stop()
    cluster.sync.informers["namespaces"].stop()
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    body = {"id": "c1-eth0", "node": "n1", "k8s": {"namespace": "shop", "pod": "web"}}
    answer = api.post("/v1/endpoints", body, token="n1-token")
    assert answer.status == 201, answer.body
    assert lab.service.model.endpoints["c1-eth0"].namespace == "shop"
    assert {"pod", "namespace", "status"} <= {name for name, _ in lock_free}
    assert all(free for _name, free in lock_free), lock_free
