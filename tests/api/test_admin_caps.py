"""A QoS cap the admin attached cannot be escaped by a tenant: not by attaching its own profile to an
endpoint before the cap came, nor by deleting and recreating the network or endpoint that carries it."""

from __future__ import annotations

from controller.pipeline.compile import Compiler
from controller.service import Service
from tests.api.support import BLUE, Wsgi, network


def meters(service: Service, node: str) -> set[int]:
    return {m.rate_kbps for m in service.compiler.compile_node(node).meters().values()}


def test_the_admins_network_cap_wins_over_a_tenants_earlier_endpoint_profile(cluster: Wsgi, service: Service) -> None:
    cluster.ok("POST", "/v1/qos", {"name": "fast", "rate_kbps": 10_000_000})
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"}, token=BLUE)
    cluster.ok("POST", "/v1/qos/fast/attachments", {"target": "b1"}, token=BLUE)
    assert meters(service, "node1") == {10_000_000}
    cluster.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/web"})
    assert cluster.ok("GET", "/v1/endpoints/b1", token=BLUE)["qos"] == "gold"
    assert meters(service, "node1") == {10_000}
    fresh = Compiler(service.model).compile_all()
    assert all(service.compiler.states[n].same_as(s) for n, s in fresh.items())
    cluster.ok("DELETE", "/v1/qos-attachments", query="target=blue/web")  # the admin lifts it: the tenant's again
    assert meters(service, "node1") == {10_000_000}


def test_a_tenant_cannot_delete_the_network_or_endpoint_that_carries_an_admin_cap(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("db", "10.0.1.0/24", vni=101))
    cluster.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/db"})
    answer = cluster.delete("/v1/tenants/blue/networks/db", token=BLUE)
    assert answer.status == 403 and "'gold'" in answer.error["message"] and "blue/db" in answer.error["message"]
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/db", "node": "node1"}, token=BLUE)
    cluster.ok("POST", "/v1/qos/gold/attachments", {"target": "b1"})
    answer = cluster.delete("/v1/endpoints/b1", token=BLUE)
    assert answer.status == 403 and "endpoint 'b1'" in answer.error["message"]
    targets = {a["target"] for a in cluster.ok("GET", "/v1/qos-attachments", token=BLUE)}
    assert targets == {"blue/db", "b1"}
    assert cluster.delete("/v1/endpoints/b1").status == 204  # the admin may
    assert cluster.delete("/v1/tenants/blue/networks/db").status == 204
