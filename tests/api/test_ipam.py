"""Endpoint creation allocates IP and MAC: deterministic, never twice, 409 when the pool is empty."""

from __future__ import annotations

from tests.api.support import Wsgi, network


def make(api: Wsgi, endpoint_id: str, net: str = "blue/small", node: str = "node1") -> dict:
    return api.ok("POST", "/v1/endpoints", {"id": endpoint_id, "network": net, "node": node})


def test_addresses_are_lowest_free_and_never_twice(cluster: Wsgi) -> None:
    # 10.0.0.0/29: .1 is the gateway, .7 broadcast, so .2 to .6 are the pool.
    cluster.ok("POST", "/v1/tenants/blue/networks", network("small", "10.0.0.0/29", vni=10))
    first = [make(cluster, f"e{i}", node=f"node{1 + i % 2}") for i in range(3)]
    assert [e["ip"] for e in first] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert len({e["mac"] for e in first}) == 3
    assert all(e["prefix_len"] == 29 and e["gateway"] == "10.0.0.1" and e["mtu"] == 1450 for e in first)
    cluster.ok("DELETE", "/v1/endpoints/e1")
    assert make(cluster, "e3")["ip"] == "10.0.0.3"  # the freed address comes back first
    assert make(cluster, "e4")["ip"] == "10.0.0.5"
    assert make(cluster, "e5")["ip"] == "10.0.0.6"
    full = cluster.post("/v1/endpoints", {"id": "e6", "network": "blue/small", "node": "node1"})
    assert (full.status, full.error["field"]) == (409, "endpoint.ip")
    assert "no free address" in full.error["message"]
    ips = [e["ip"] for e in cluster.ok("GET", "/v1/endpoints", query="network=blue/small")]
    assert sorted(ips) == [f"10.0.0.{i}" for i in range(2, 7)]


def test_same_sequence_gives_same_addresses(cluster: Wsgi, api: Wsgi) -> None:
    """Determinism: two tenants with identical subnets and the same requests get identical IPs."""
    cluster.ok("POST", "/v1/tenants/blue/networks", network("small", "10.0.0.0/24", vni=10))
    cluster.ok("POST", "/v1/tenants/red/networks", network("small", "10.0.0.0/24", vni=11))
    blue = [make(cluster, f"b{i}", "blue/small")["ip"] for i in range(4)]
    red = [make(cluster, f"r{i}", "red/small")["ip"] for i in range(4)]
    assert blue == red == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]


def test_static_address_is_skipped_by_allocation(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("small", "10.0.0.0/29", vni=10))
    static = cluster.ok(
        "POST", "/v1/endpoints", {"id": "s", "network": "blue/small", "node": "node1", "ip": "10.0.0.2"}
    )
    assert static["ip"] == "10.0.0.2"
    assert make(cluster, "d")["ip"] == "10.0.0.3"


def test_endpoint_filters(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("small", "10.0.0.0/24", vni=10))
    make(cluster, "a", node="node1")
    make(cluster, "b", node="node2")
    assert [e["id"] for e in cluster.ok("GET", "/v1/endpoints", query="node=node2")] == ["b"]
    assert cluster.ok("GET", "/v1/endpoints", query="network=red/small") == []
    node = cluster.ok("GET", "/v1/nodes/node2")
    assert node["endpoints"] == 1 and node["switch"] == {"connected": False}
