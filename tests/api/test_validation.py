"""The model's validation errors as the API answers them: 400 with the field, 409 for conflicts."""

from __future__ import annotations

import pytest

from tests.api.support import Wsgi, network

NETS = "/v1/tenants/blue/networks"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (network("w", "10.0.0.0/24", vni=0), "network.vni", "VNI 0 is outside 1..16777215"),
        (network("w", "10.0.0.0/24", vni=16_777_216), "network.vni", "outside 1..16777215"),
        (network("w", "10.0.0.0/24", vlan=0), "network.vlan", "VLAN 0 is outside 1..4094"),
        (network("w", "10.0.0.0/24", vlan=4095), "network.vlan", "VLAN 4095 is outside 1..4094"),
        (network("w", "10.0.0.0/24", vni=5, gateway="10.0.1.1"), "network.gateway", "not a host address"),
        (network("w", "10.0.0.0/24", vni=5, gateway="10.0.0.255"), "network.gateway", "not a host address"),
        (network("w", "10.0.0.0/24", vni=5, gateway="nope"), "network.gateway", "not an IPv4 address"),
        (network("w", "10.0.0.1/24", vni=5), "network.subnet", "has host bits set; did you mean 10.0.0.0/24?"),
        (network("w", "10.0.0.0/24", vni=5, mtu=100), "network.mtu", "MTU 100 is outside"),
        (network("w/x", "10.0.0.0/24", vni=5), "network.name", "'w/x' is not a valid name"),
        ({"name": "w", "encap": "gre", "vni": 5, "subnet": "10.0.0.0/24"}, "network.encap", "not one of vlan, vxlan"),
        ({"name": "w", "encap": "vxlan", "vlan": 5, "subnet": "10.0.0.0/24"}, "network.vlan", "takes vni, not vlan"),
    ],
)
def test_bad_network_is_400_naming_the_field(cluster: Wsgi, body: dict, field: str, words: str) -> None:
    answer = cluster.post(NETS, body)
    assert answer.status == 400, answer
    assert answer.error["field"] == field
    assert words in answer.error["message"]
    assert cluster.ok("GET", NETS) == []  # nothing half-made


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        (network("a", "10.0.0.0/24", vni=100), network("b", "10.1.0.0/24", vni=100), "network.vni"),
        (network("a", "10.0.0.0/24", vlan=10), network("b", "10.1.0.0/24", vlan=10), "network.vlan"),
        (network("a", "10.0.0.0/16", vni=1), network("b", "10.0.5.0/24", vni=2), "network.subnet"),
        (network("a", "10.0.0.0/24", vni=1), network("a", "10.1.0.0/24", vni=2), "network.name"),
    ],
)
def test_reuse_is_409(cluster: Wsgi, first: dict, second: dict, field: str) -> None:
    cluster.ok("POST", NETS, first)
    answer = cluster.post(NETS, second)
    assert (answer.status, answer.error["field"]) == (409, field), answer
    assert [n["name"] for n in cluster.ok("GET", NETS)] == [first["name"]]


def test_vni_is_unique_across_tenants_but_subnets_may_repeat(cluster: Wsgi) -> None:
    blue = cluster.post(NETS, network("web", "10.0.0.0/24", vni=100))
    red = cluster.post("/v1/tenants/red/networks", network("web", "10.0.0.0/24", vni=101))
    assert (blue.status, red.status) == (201, 201)
    assert blue.body["subnet"] == red.body["subnet"] == "10.0.0.0/24"
    clash = cluster.post("/v1/tenants/red/networks", network("db", "10.9.0.0/24", vni=100))
    assert clash.status == 409 and clash.error["field"] == "network.vni"


def test_host_bits_suggest_only_a_subnet_that_would_be_taken(cluster: Wsgi) -> None:
    answer = cluster.post(NETS, network("w", "10.0.0.0/1", vni=5))
    assert (answer.status, answer.error["field"]) == (400, "network.subnet")
    message = answer.error["message"]
    assert "did you mean" not in message and "0.0.0.0/1 overlaps 0.0.0.0/8" in message, message
    assert "10.0.0.0/1 has host bits set" in message


def test_a_null_field_is_called_null(cluster: Wsgi) -> None:
    answer = cluster.post("/v1/tenants", {"name": None})
    assert (answer.status, answer.error["field"]) == (400, "tenant.name")
    assert answer.error["message"] == "tenant.name: is null; want a string", answer.error
    assert "is required" in cluster.post("/v1/tenants", {}).error["message"]


def test_vni_and_vlan_number_spaces_are_separate(cluster: Wsgi) -> None:
    cluster.ok("POST", NETS, network("a", "10.0.0.0/24", vni=7))
    assert cluster.post(NETS, network("b", "10.1.0.0/24", vlan=7)).status == 201


def test_duplicate_tenant_qos_and_unknown_tenant(cluster: Wsgi) -> None:
    assert cluster.post("/v1/tenants", {"name": "blue"}).status == 409
    assert cluster.post("/v1/qos", {"name": "gold", "rate_kbps": 1, "burst_kb": 1}).status == 409
    bad = cluster.post("/v1/qos", {"name": "x", "rate_kbps": 0, "burst_kb": 1})
    assert (bad.status, bad.error["field"]) == (400, "qos.rate_kbps")
    assert cluster.post("/v1/tenants/green/networks", network("a", "10.0.0.0/24", vni=1)).status == 404


@pytest.fixture
def web(cluster: Wsgi) -> Wsgi:
    cluster.ok("POST", NETS, network("web", "10.0.0.0/29", vni=100))
    return cluster


def endpoint(endpoint_id: str, **extra: str) -> dict:
    return {"id": endpoint_id, "network": "blue/web", "node": "node1", **extra}


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        (endpoint("e1", ip="10.0.1.2"), 400, "endpoint.ip", "outside subnet 10.0.0.0/29"),
        (endpoint("e1", ip="10.0.0.7"), 400, "endpoint.ip", "broadcast address"),
        (endpoint("e1", ip="10.0.0.1"), 409, "endpoint.ip", "is the gateway"),
        (endpoint("e1", ip="ten"), 400, "endpoint.ip", "not an IPv4 address"),
        (endpoint("e1", mac="01:00:00:00:00:01"), 400, "endpoint.mac", "is a multicast MAC address"),
        (endpoint("e1", port_name="a-very-long-port-name"), 400, "endpoint.port_name", "longer than 15"),
        ({"id": "e1", "network": "blue/nope", "node": "node1"}, 400, "endpoint.network", "unknown network"),
        ({"id": "e1", "network": "blue/web", "node": "node9"}, 400, "endpoint.node", "unknown node"),
    ],
)
def test_bad_endpoint(web: Wsgi, body: dict, status: int, field: str, words: str) -> None:
    answer = web.post("/v1/endpoints", body)
    assert (answer.status, answer.error["field"]) == (status, field), answer
    assert words in answer.error["message"]
    assert web.ok("GET", "/v1/endpoints") == []


def test_ip_taken_and_id_taken_are_409(web: Wsgi) -> None:
    web.ok("POST", "/v1/endpoints", endpoint("e1", ip="10.0.0.3"))
    taken = web.post("/v1/endpoints", endpoint("e2", ip="10.0.0.3"))
    assert (taken.status, taken.error["field"]) == (409, "endpoint.ip")
    assert "already used" in taken.error["message"]
    again = web.post("/v1/endpoints", endpoint("e1"))
    assert (again.status, again.error["field"]) == (409, "endpoint.id")


def test_network_with_endpoints_cannot_be_deleted(web: Wsgi) -> None:
    web.ok("POST", "/v1/endpoints", endpoint("e1"))
    refused = web.delete("/v1/tenants/blue/networks/web")
    assert refused.status == 409 and "still has 1 endpoint" in refused.error["message"]
    assert web.delete("/v1/tenants/blue").status == 409  # and its tenant still has a network
    web.ok("DELETE", "/v1/endpoints/e1")
    assert web.delete("/v1/tenants/blue/networks/web").status == 204
    assert web.get("/v1/tenants/blue/networks/web").status == 404
    assert web.delete("/v1/tenants/blue").status == 204


def test_qos_attach_validation(web: Wsgi) -> None:
    unknown_target = web.post("/v1/qos/gold/attachments", {"target": "blue/nope"})
    assert (unknown_target.status, unknown_target.error["field"]) == (400, "qos.target")
    assert web.post("/v1/qos/silver/attachments", {"target": "blue/web"}).status == 404
    attached = web.post("/v1/qos/gold/attachments", {"target": "blue/web"})
    assert attached.status == 201 and attached.body["kind"] == "network"
    assert web.ok("GET", "/v1/tenants/blue/networks/web")["qos"] == "gold"
    in_use = web.delete("/v1/qos/gold")
    assert in_use.status == 409 and "still attached to blue/web" in in_use.error["message"]
    assert web.delete("/v1/qos-attachments", query="target=blue/web").status == 204
    assert web.delete("/v1/qos-attachments", query="target=blue/web").status == 404
    assert web.delete("/v1/qos-attachments").status == 400
    assert web.delete("/v1/qos/gold").status == 204


def test_node_registration(cluster: Wsgi) -> None:
    same = cluster.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.1"})
    assert same.status == 200  # registering again with the same values changes nothing
    clash = cluster.put("/v1/nodes/node3", {"tunnel_ip": "192.168.50.1"})
    assert (clash.status, clash.error["field"]) == (409, "node.tunnel_ip")
    bad = cluster.put("/v1/nodes/node3", {"tunnel_ip": "300.1.1.1"})
    assert (bad.status, bad.error["field"]) == (400, "node.tunnel_ip")
    dpid = cluster.put("/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "datapath_id": 0})
    assert (dpid.status, dpid.error["field"]) == (400, "node.datapath_id")
    assert cluster.get("/v1/nodes/node3").status == 404


def test_node_mtus_are_kept_and_checked_against_the_networks(cluster: Wsgi) -> None:
    doc = cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "underlay_mtu": 9000})
    assert (doc["underlay_mtu"], doc["uplink_mtu"]) == (9000, None)
    cluster.ok("POST", NETS, network("web", "10.0.0.0/24", vni=5))  # 1450: node1 and node2 report nothing
    small = cluster.put("/v1/nodes/node4", {"tunnel_ip": "192.168.50.4", "underlay_mtu": 1400})
    assert (small.status, small.error["field"]) == (409, "node.underlay_mtu"), small
    assert "too small for network 'blue/web' (MTU 1450 over VXLAN needs 1500)" in small.error["message"]
    shrunk = cluster.put("/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "underlay_mtu": 1499})
    assert (shrunk.status, shrunk.error["field"]) == (409, "node.underlay_mtu"), shrunk
    assert cluster.ok("GET", "/v1/nodes/node3")["underlay_mtu"] == 9000  # as it was
    cluster.ok("POST", "/v1/endpoints", {"id": "e1", "network": "blue/web", "node": "node1"})
    busy = cluster.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.1", "underlay_mtu": 1300})
    assert (busy.status, busy.error["field"]) == (409, "node.underlay_mtu"), busy  # not "still has endpoints"
    assert cluster.get("/v1/nodes/node4").status == 404
    bad = cluster.put("/v1/nodes/node4", {"tunnel_ip": "192.168.50.4", "uplink_mtu": "1500"})
    assert (bad.status, bad.error["field"]) == (400, "node.uplink_mtu"), bad


@pytest.mark.parametrize(
    "body",
    [
        network("w", "10.0.0.0/24", vlan=1),
        network("w", "10.0.0.0/24", vlan=4094),
        network("w", "10.0.0.0/24", vni=1),
        network("w", "10.0.0.0/24", vni=16_777_215),
        network("w", "10.0.0.0/24", vlan=5, mtu=576),
        network("w", "10.0.0.0/24", vlan=5, mtu=1500),  # the nodes' uplinks carry 1500
        network("w", "10.0.0.0/24", vni=5, mtu=1450),  # their underlays 1500, less 50 for VXLAN
        network("w", "10.0.0.4/30", vni=5),  # the longest prefix: gateway .5 and one endpoint .6
        network("w", "10.0.0.4/30", vni=5, gateway="10.0.0.6"),
        network("a" * 63, "10.0.0.0/24", vni=5),
        network("0-a", "10.0.0.0/24", vni=5),
        network("w", "128.0.0.0/2", vni=5),  # the shortest prefix clear of 0/8, 127/8, 224/4 and 240/4
    ],
)
def test_values_at_the_edges_are_accepted(cluster: Wsgi, body: dict) -> None:
    answer = cluster.post(NETS, body)
    assert answer.status == 201, answer
    assert answer.body["subnet"] == body["subnet"]


def test_a_slash_30_network_has_room_for_one_endpoint(cluster: Wsgi) -> None:
    cluster.ok("POST", NETS, network("w", "10.0.0.4/30", vni=5))
    assert cluster.ok("POST", "/v1/endpoints", endpoint("e1", network="blue/w"))["ip"] == "10.0.0.6"
    full = cluster.post("/v1/endpoints", endpoint("e2", network="blue/w"))
    assert (full.status, full.error["field"]) == (409, "endpoint.ip")
