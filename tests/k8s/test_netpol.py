"""Namespaces, pod labels and NetworkPolicies from the API server into the model and its compiled flows:
namespace labels that change what a policy selects, policies created, replaced and deleted, a policy the
model refuses (an Event, the watch goes on), a realized policy's Event, pod labels, endpoints made by a CNI
ADD with their namespace, labels and named ports, namespaces that change tenant, and deleted namespaces."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from controller.api import Tokens, make_app
from controller.k8s.cluster import Kubernetes
from controller.pipeline import matrix
from tests.api.support import ADMIN, Wsgi
from tests.k8s.conftest import Lab, create_network_policy, wait_for
from topology.model import Model

NODE_TOKEN = "node-token"
WEB = {
    "tenant": "blue",
    "encap": "vxlan",
    "subnet": "10.1.0.0/24",
    "namespaceSelector": {"matchLabels": {"owner": "blue"}},
}


def netpol(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


# db in shop takes TCP on its port "http" from pods of namespaces labelled team=web only.
DB_FROM_WEB = {
    "podSelector": {"matchLabels": {"app": "db"}},
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}], "ports": [{"port": "http"}]}],
}


def api_of(lab: Lab, cluster: Kubernetes) -> Wsgi:
    tokens = Tokens.from_dict({"admin": [ADMIN], "nodes": {"n1": [NODE_TOKEN], "n2": [NODE_TOKEN]}})
    return Wsgi(make_app(lab.service, tokens, k8s=cluster))


def add(api: Wsgi, eid: str, node: str, namespace: str, pod: str) -> dict[str, Any]:
    """The agent's POST for a CNI ADD in a cluster."""
    body = {"id": eid, "node": node, "k8s": {"namespace": namespace, "pod": pod}}
    answer = api.post("/v1/endpoints", body, token=NODE_TOKEN)
    assert answer.status == 201, answer.body
    return answer.body


def reaches(lab: Lab, source: str, destination: str, port: int = 80) -> bool:
    """Whether a new TCP connection gets through the compiled flows (`controller.pipeline.matrix`)."""
    model, states = lab.service.model, lab.service.compiler.states
    [(_probe, allowed)] = matrix.run(model, states, [matrix.Probe(source, destination, "tcp", port)])
    return allowed


def events(cluster: Kubernetes, reason: str, name: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events.history if e["reason"] == reason and e["involvedObject"]["name"] == name]


def world(lab: Lab, **options: Any) -> tuple[Kubernetes, Wsgi, client.NetworkingV1Api]:
    """Nodes n1 and n2, the Network blue-web over namespaces labelled owner=blue, namespaces shop and
    front, pods shop/db (app=db, on n1) and front/web (app=web, on n2), watched."""
    cluster = lab.watch(**options)
    lab.node("n1", "192.168.50.1")
    lab.node("n2", "192.168.50.2")
    lab.create("networks", "blue-web", WEB)
    lab.namespace("shop", {"owner": "blue"})
    lab.namespace("front", {"owner": "blue"})
    lab.pod("shop", "db", labels={"app": "db"}, node="n1")
    lab.pod("front", "web", labels={"app": "web"}, node="n2")
    model = lab.service.model
    wait_for(lambda: {"n1", "n2"} <= set(model.nodes) and "blue/blue-web" in model.networks, "nodes and network")
    wait_for(lambda: {"shop", "front"} <= set(model.namespaces), "namespaces shop and front in the model")
    return cluster, api_of(lab, cluster), client.NetworkingV1Api(lab.api)


def tenant_of(model: Model, namespace: str) -> str | None:
    """The namespace's tenant in the model, None while it is absent (a moving namespace is for a moment)."""
    found = model.namespaces.get(namespace)
    return found.tenant if found is not None else None


def test_namespace_labels_change_what_a_policy_selects_in_the_compiled_flows(lab: Lab) -> None:
    _cluster, api, networking = world(lab)
    model = lab.service.model
    shop = model.namespaces["shop"]
    assert shop.tenant == "blue" and shop.label_map == {"owner": "blue", "kubernetes.io/metadata.name": "shop"}

    # The CNI ADD's endpoint carries the pod's namespace, labels and named ports from the change that made it.
    sequence = lab.service.sequence
    body = add(api, "db-eth0", "n1", "shop", "db")
    assert lab.service.sequence == sequence + 1
    assert (body["namespace"], body["labels"]) == ("shop", {"app": "db"})
    assert body["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    add(api, "web-eth0", "n2", "front", "web")
    assert model.endpoints["web-eth0"].namespace == "front"

    assert reaches(lab, "web-eth0", "db-eth0")  # no policy yet
    create_network_policy(networking, "shop", netpol("db", DB_FROM_WEB))
    wait_for(lambda: "shop/db" in model.policies, "policy shop/db applied")
    assert not reaches(lab, "web-eth0", "db-eth0")

    lab.core.patch_namespace("front", {"metadata": {"labels": {"team": "web"}}})
    wait_for(lambda: model.namespaces["front"].label_map.get("team") == "web", "front labelled team=web")
    assert reaches(lab, "web-eth0", "db-eth0")
    assert not reaches(lab, "web-eth0", "db-eth0", port=81)  # only the named port "http"

    lab.core.patch_namespace("front", {"metadata": {"labels": {"team": None}}})
    wait_for(lambda: "team" not in model.namespaces["front"].label_map, "front's team label removed")
    assert not reaches(lab, "web-eth0", "db-eth0")


def test_a_policy_is_created_replaced_and_deleted_and_a_refused_one_gets_an_event(lab: Lab) -> None:
    cluster, _api, networking = world(lab)
    policies = lab.service.model.policies
    create_network_policy(networking, "shop", netpol("db", DB_FROM_WEB))
    wait_for(lambda: "shop/db" in policies, "shop/db applied")
    assert policies["shop/db"].doc["spec"] == DB_FROM_WEB

    networking.patch_namespaced_network_policy("db", "shop", {"spec": {"ingress": []}})
    wait_for(lambda: policies["shop/db"].doc["spec"].get("ingress") == [], "shop/db replaced")

    # This lab's stand-in API server runs without its NetworkPolicy checks; the model validates, as
    # kube-apiserver would.
    bad = {"podSelector": {}, "policyTypes": ["Sideways"]}
    create_network_policy(networking, "shop", netpol("bad", bad))
    refused = wait_for(lambda: events(cluster, "Invalid", "bad"), "an Invalid Event on shop/bad")
    assert refused[0]["type"] == "Warning" and "spec.policyTypes[0]" in refused[0]["message"]
    assert refused[0]["involvedObject"]["kind"] == "NetworkPolicy" and "shop/bad" not in policies

    # A replacement the model refuses leaves the last accepted version applied; the watch goes on.
    networking.patch_namespaced_network_policy("db", "shop", {"spec": {"policyTypes": ["Sideways"]}})
    kept = wait_for(lambda: events(cluster, "Invalid", "db"), "an Invalid Event on shop/db")
    assert "last accepted version stays applied" in kept[0]["message"]
    assert policies["shop/db"].doc["spec"].get("ingress") == []
    create_network_policy(networking, "front", netpol("all", {"podSelector": {}}))
    wait_for(lambda: "front/all" in policies, "front/all applied after the refusals")

    networking.delete_namespaced_network_policy("db", "shop")
    networking.delete_namespaced_network_policy("all", "front")
    wait_for(lambda: not {"shop/db", "front/all"} & set(policies), "policies deleted")


def test_a_policy_is_realized_once_the_switches_of_its_pods_hold_it(lab: Lab) -> None:
    # The switches' state as the OpenFlow app reports it (`controller.k8s.cluster.switches`): per node,
    # the last change its switch holds; no switch is connected here, so the test says what they hold.
    holds: dict[str, int] = {}
    cluster, api, networking = world(lab, switch_sequence=holds.get)
    add(api, "db-eth0", "n1", "shop", "db")
    add(api, "web-eth0", "n2", "front", "web")
    create_network_policy(networking, "shop", netpol("db", DB_FROM_WEB))
    wait_for(lambda: "shop/db" in cluster.sync.realizing, "shop/db waiting to be realized")
    applied = cluster.sync.realizing["shop/db"][1]
    holds["n2"] = applied  # n2 holds only front/web, which the policy does not select
    holds["n1"] = applied - 1
    assert cluster.sync.check_realized() == []
    holds["n1"] = applied
    realized = wait_for(lambda: events(cluster, "Realized", "db"), "a Realized Event on shop/db")
    assert realized[0]["type"] == "Normal" and "nodes n1 " in realized[0]["message"] + " "
    assert "shop/db" not in cluster.sync.realizing


def test_pod_labels_relabel_its_endpoint(lab: Lab) -> None:
    cluster, api, _networking = world(lab)
    add(api, "db-eth0", "n1", "shop", "db")
    endpoints = lab.service.model.endpoints
    lab.core.patch_namespaced_pod("db", "shop", {"metadata": {"labels": {"app": "db", "tier": "gold"}}})
    wait_for(lambda: endpoints["db-eth0"].labels == (("app", "db"), ("tier", "gold")), "db-eth0 relabelled")
    assert cluster.sync.pods_of["db-eth0"]["labels"] == {"app": "db", "tier": "gold"}
    lab.core.patch_namespaced_pod("db", "shop", {"metadata": {"labels": {"tier": None}}})
    wait_for(lambda: endpoints["db-eth0"].labels == (("app", "db"),), "tier label removed from db-eth0")


def test_a_namespace_moves_to_the_tenant_of_its_new_network_once_it_has_no_endpoints(lab: Lab) -> None:
    cluster, api, networking = world(lab)
    model = lab.service.model
    red = {"tenant": "red", "encap": "vxlan", "subnet": "10.9.0.0/24", "namespaces": []}
    lab.create("networks", "apps", red)  # first by name: it wins where blue-web also claims a namespace
    wait_for(lambda: "red/apps" in model.networks, "red/apps")
    add(api, "db-eth0", "n1", "shop", "db")
    create_network_policy(networking, "front", netpol("all", {"podSelector": {}}))
    wait_for(lambda: "front/all" in model.policies, "front/all applied")

    # red's apps now claims front (no endpoints: it moves, its policy with it) and shop (an endpoint: it stays).
    lab.custom.patch_cluster_custom_object(
        "tenet.io", "v1alpha1", "networks", "apps", {"spec": {"namespaces": ["front", "shop"]}}
    )
    # A namespace moves by being deleted and made again: it is absent in between (one read each, so no KeyError).
    wait_for(lambda: tenant_of(model, "front") == "red", "front in red")
    wait_for(lambda: "front/all" in model.policies, "front/all applied again in tenant red")
    refused = wait_for(lambda: events(cluster, "TenantChangeRefused", "shop"), "TenantChangeRefused on shop")
    assert refused[0]["involvedObject"]["kind"] == "Namespace" and "'blue'" in refused[0]["message"]
    assert model.namespaces["shop"].tenant == "blue"

    lab.core.delete_namespaced_pod("db", "shop")
    wait_for(lambda: tenant_of(model, "shop") == "red", "shop moved to red once its endpoint went")
    assert "db-eth0" not in model.endpoints


def test_a_deleted_namespace_leaves_the_model_after_its_pods_and_policies(lab: Lab) -> None:
    _cluster, api, networking = world(lab)
    model = lab.service.model
    add(api, "db-eth0", "n1", "shop", "db")
    create_network_policy(networking, "shop", netpol("db", DB_FROM_WEB))
    wait_for(lambda: "shop/db" in model.policies, "shop/db applied")
    states: list[tuple[bool, bool, bool]] = []  # after each change: shop, its endpoint, its policy in the model
    lab.service.subscribe(
        lambda _changes: states.append(
            ("shop" in model.namespaces, "db-eth0" in model.endpoints, "shop/db" in model.policies)
        )
    )
    lab.core.delete_namespace("shop")  # the API server deletes its pods and NetworkPolicies with it
    wait_for(lambda: "shop" not in model.namespaces, "namespace shop removed from the model")
    assert "db-eth0" not in model.endpoints and "shop/db" not in model.policies
    # Subscribers hear of a change once it is stored, after the model has it: wait for that change's call.
    wait_for(lambda: states and states[-1] == (False, False, False), "the namespace's removal published")
    assert (True, False, False) in states  # the namespace went last
    assert "front" in model.namespaces


def test_network_status_follows_its_free_addresses(lab: Lab) -> None:
    _cluster, api, _networking = world(lab)

    def free() -> int | None:
        return (lab.get("networks", "blue-web").get("status") or {}).get("freeAddresses")

    before = wait_for(free, "blue-web freeAddresses written")
    add(api, "db-eth0", "n1", "shop", "db")
    wait_for(lambda: free() == before - 1, "freeAddresses one less after an endpoint")
    assert free() == lab.service.model.free_addresses("blue/blue-web")


def test_an_endpoint_posted_with_a_network_takes_the_k8s_namespace_of_its_tenant(lab: Lab) -> None:
    service = lab.service
    service.create_tenant("blue")
    service.create_tenant("red")
    service.create_network("blue", "web", encap="vxlan", segment=None, subnet="10.1.0.0/24")
    service.register_node("n1", tunnel_ip="192.168.50.1")
    service.create_namespace("shop", tenant="blue")
    service.create_namespace("bank", tenant="red")
    api = Wsgi(make_app(service, Tokens.from_dict({"admin": [ADMIN], "nodes": {"n1": [NODE_TOKEN]}})))
    for eid, namespace, expected in (("e1", "shop", "shop"), ("e2", "bank", None), ("e3", "nope", None)):
        body = {"id": eid, "node": "n1", "network": "blue/web", "k8s": {"namespace": namespace, "pod": "p"}}
        answer = api.post("/v1/endpoints", body, token=NODE_TOKEN)
        assert answer.status == 201, answer.body
        assert service.model.endpoints[eid].namespace == expected, eid


def test_a_namespace_held_by_another_tenant_never_gets_the_policies_of_the_one_kubernetes_maps_it_to(
    lab: Lab,
) -> None:
    """vault is red's by its Network, but blue holds a namespace of that name (the admin made it through the
    API before Kubernetes had it, with an endpoint in it). Blue's token cannot do that itself; the
    NetworkPolicies of Kubernetes' vault are held, with an Event, and applied once vault is red's."""
    cluster = lab.watch()
    tokens = Tokens.from_dict({"admin": [ADMIN], "tenants": {"blue": ["blue-token"]}, "nodes": {"n1": [NODE_TOKEN]}})
    api = Wsgi(make_app(lab.service, tokens, k8s=cluster))
    model = lab.service.model
    lab.node("n1", "192.168.50.1")
    lab.create("networks", "blue-web", WEB)
    lab.create(
        "networks", "vault-net", {"tenant": "red", "encap": "vxlan", "subnet": "10.9.0.0/24", "namespaces": ["vault"]}
    )
    wait_for(lambda: {"blue/blue-web", "red/vault-net"} <= set(model.networks) and "n1" in model.nodes, "the networks")
    squat = api.post("/v1/namespaces", {"name": "vault", "tenant": "blue"}, token="blue-token")
    assert squat.status == 403 and "where namespaces come from" in squat.error["message"]
    api.ok("POST", "/v1/namespaces", {"name": "vault", "tenant": "blue"})
    api.ok("POST", "/v1/endpoints", {"id": "pin", "network": "blue/blue-web", "node": "n1", "namespace": "vault"})

    lab.namespace("vault")
    wait_for(lambda: events(cluster, "TenantChangeRefused", "vault"), "TenantChangeRefused on vault")
    create_network_policy(client.NetworkingV1Api(lab.api), "vault", netpol("deny", {"podSelector": {}}))
    [held] = wait_for(lambda: events(cluster, "TenantMismatch", "deny"), "TenantMismatch on vault/deny")
    assert held["involvedObject"]["kind"] == "NetworkPolicy" and "tenant 'red'" in held["message"]
    assert "'blue'" not in held["message"]  # the Event goes to vault's Kubernetes users: blue is not named
    assert "vault/deny" not in model.policies and model.namespaces["vault"].tenant == "blue"
    assert api.ok("GET", "/v1/namespaces/vault/networkpolicies", token="blue-token") == []

    assert api.delete("/v1/endpoints/pin").status == 204
    lab.core.patch_namespace("vault", {"metadata": {"labels": {"touched": "yes"}}})  # an event: reconciled
    wait_for(lambda: tenant_of(model, "vault") == "red", "vault moved to red")
    wait_for(lambda: "vault/deny" in model.policies, "vault/deny applied in red")
    assert api.get("/v1/namespaces/vault/networkpolicies", token="blue-token").status == 404
