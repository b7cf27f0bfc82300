"""The exact answer to a representative set of bad requests, in one table so the wording is reviewed as a whole.

Every message starts with the field it blames (the `field` of the answer), says what is wrong with the value
that was sent and, where it helps, what is allowed. Tenant tokens get the same words as the admin, except
that another tenant's network is never named.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import ADMIN, BLUE, Wsgi, network

NETS = "/v1/tenants/blue/networks"
EPS = "/v1/endpoints"
LABEL = "use lowercase letters, digits and '-', starting and ending with a letter or digit (a DNS-1123 label)"
SUBDOMAIN = (
    "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (a DNS-1123 subdomain)"
)
TOO_SMALL = (
    "is too small: a network needs a prefix length of /30 or shorter "
    "(room for the network and broadcast addresses, the gateway and one endpoint)"
)


def ep(**extra: Any) -> dict[str, Any]:
    return {"id": "x1", "network": "blue/web", "node": "node1", **extra}


# (method, path, body, token, status, field, message)
# fmt: off
CASES: list[tuple[str, str, Any, str | None, int, str | None, str]] = [
    # subnets
    ("POST", NETS, network("s", "10.6.0.0/32", vni=9), None, 400, "network.subnet", f"10.6.0.0/32 {TOO_SMALL}"),
    ("POST", NETS, network("s", "10.6.0.0/31", vni=9), None, 400, "network.subnet", f"10.6.0.0/31 {TOO_SMALL}"),
    ("POST", NETS, network("s", "10.1.0.5/24", vni=9), None,
     400, "network.subnet", "10.1.0.5/24 has host bits set; did you mean 10.1.0.0/24?"),
    ("POST", NETS, network("s", "fd00::/64", vni=9), None,
     400, "network.subnet", "fd00::/64 is an IPv6 subnet; want an IPv4 subnet like 10.1.0.0/24"),
    ("POST", NETS, network("s", "10.7.0.0", vni=9), None,
     400, "network.subnet", "10.7.0.0 has no prefix length; want CIDR notation like 10.1.0.0/24"),
    ("POST", NETS, network("s", "10.7.0/24", vni=9), None,
     400, "network.subnet",
     "'10.7.0/24' is not an IPv4 subnet (expected 4 octets in '10.7.0'); want one like 10.1.0.0/24"),
    ("POST", NETS, network("s", "10.7.0.0/255.255.255.0", vni=9), None,
     400, "network.subnet", "'10.7.0.0/255.255.255.0' has a bad prefix length; want 0..32 after '/', like 10.1.0.0/24"),
    ("POST", NETS, network("s", "10.7.0.0/33", vni=9), None,
     400, "network.subnet", "'10.7.0.0/33' has a bad prefix length; want 0..32 after '/', like 10.1.0.0/24"),
    ("POST", NETS, network("s", "224.1.0.0/24", vni=9), None,
     400, "network.subnet", "224.1.0.0/24 overlaps 224.0.0.0/4 (multicast); a network's subnet must be unicast"),
    ("POST", NETS, network("s", "10.1.0.0/25", vni=9), None,
     409, "network.subnet", "10.1.0.0/25 overlaps 10.1.0.0/24 of network 'blue/web' in the same tenant"),
    # gateways
    ("POST", NETS, network("s", "10.7.0.0/24", vni=9, gateway="10.7.0.255"), None,
     400, "network.gateway", "10.7.0.255 is not a host address of 10.7.0.0/24; want one in 10.7.0.1..10.7.0.254"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=9, gateway="10.8.0.1"), None,
     400, "network.gateway", "10.8.0.1 is not a host address of 10.7.0.0/24; want one in 10.7.0.1..10.7.0.254"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=9, gateway="fd00::1"), None,
     400, "network.gateway", "fd00::1 is an IPv6 address; want an IPv4 address like 10.1.0.1"),
    # segments, MTU
    ("POST", NETS, network("s", "10.7.0.0/24", vni=5_000_000_000), None,
     400, "network.vni", "VNI 5000000000 is outside 1..16777215"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=0), None, 400, "network.vni", "VNI 0 is outside 1..16777215"),
    ("POST", NETS, network("s", "10.7.0.0/24", vlan=4095), None, 400, "network.vlan", "VLAN 4095 is outside 1..4094"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=True), None, 400, "network.vni", "want an integer, got true"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni="5"), None,  # type: ignore[arg-type]  # the wrong type on purpose
     400, "network.vni", 'want an integer, got "5"'),
    ("POST", NETS, network("s", "10.7.0.0/24", vlan=10, mtu=575), None,
     400, "network.mtu", "MTU 575 is outside 576..1500 (the smallest node uplink MTU)"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=6001), BLUE,
     409, "network.vni", "VNI 6001 is already used by a network of another tenant"),
    ("POST", NETS, network("s", "10.7.0.0/24", vni=6001), None,
     409, "network.vni", "VNI 6001 is already used by network 'red/web'"),
    ("POST", NETS, {"name": "s", "encap": "vxlan", "vlan": 5, "subnet": "10.7.0.0/24"}, None,
     400, "network.vlan", "a vxlan network takes vni, not vlan"),
    ("POST", NETS, {"name": "s", "encap": "gre", "vni": 5, "subnet": "10.7.0.0/24"}, None,
     400, "network.encap", "'gre' is not one of vlan, vxlan"),
    # names and fields
    ("POST", NETS, network("a" * 64, "10.7.0.0/24", vni=9), None,
     400, "network.name", "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... is 64 characters long; a name has at most 63"),
    ("POST", NETS, network("Web", "10.7.0.0/24", vni=9), None,
     400, "network.name", f"'Web' is not a valid name: {LABEL}"),
    ("POST", NETS, network("wéb", "10.7.0.0/24", vni=9), None,
     400, "network.name", f"'wéb' is not a valid name: {LABEL}"),
    ("POST", NETS, network("", "10.7.0.0/24", vni=9), None, 400, "network.name", "a name may not be empty"),
    ("POST", NETS, network(["x"], "10.7.0.0/24", vni=9), None,  # type: ignore[arg-type]  # the wrong type on purpose
     400, "network.name", 'want a string, got ["x"]'),
    ("POST", NETS, network("web", "10.7.0.0/24", vni=9), None,
     409, "network.name", "network 'blue/web' already exists"),
    ("POST", NETS, {**network("s", "10.7.0.0/24", vni=9), "color": "red"}, None,
     400, "network.color",
     "unknown field (allowed: encap, gateway, mtu, name, nat_outgoing, node_ports, subnet, vlan, vni)"),
    ("PATCH", f"{NETS}/web", {"nat_outgoing": None}, None,
     400, "network.nat_outgoing", "want true or false, got null"),
    ("PATCH", f"{NETS}/web", {"node_ports": None}, None,
     400, "network.node_ports", 'want a list like ["tcp/53", "udp/53"] or "none", got null'),
    ("PATCH", f"{NETS}/web", {}, None, 400, "network", "want nat_outgoing or node_ports (or both)"),
    ("PATCH", f"{NETS}/web", {"node_ports": "none"}, BLUE,
     403, None, "network.node_ports (changing node ports of a network) needs the cluster-admin token"),
    # endpoints
    ("POST", EPS, ep(network="red/web"), BLUE, 400, "endpoint.network", "unknown network 'red/web'"),
    ("POST", EPS, ep(network="web"), BLUE, 400, "endpoint.network", "unknown network 'web' (want TENANT/NAME)"),
    ("POST", EPS, ep(node="node9"), BLUE, 400, "endpoint.node", "unknown node 'node9'"),
    ("POST", EPS, ep(id="B 1"), BLUE, 400, "endpoint.id", f"'B 1' is not a valid name: {SUBDOMAIN}"),
    ("POST", EPS, ep(id="b1"), BLUE, 409, "endpoint.id", "endpoint 'b1' already exists"),
    ("POST", EPS, ep(ip="10.1.0.255"), BLUE,
     400, "endpoint.ip", "10.1.0.255 is the broadcast address of 10.1.0.0/24, not a host address"),
    ("POST", EPS, ep(ip="10.2.0.2"), BLUE,
     400, "endpoint.ip", "10.2.0.2 is outside subnet 10.1.0.0/24 of network 'blue/web'"),
    ("POST", EPS, ep(ip="10.1.0.1"), BLUE, 409, "endpoint.ip", "10.1.0.1 is the gateway of network 'blue/web'"),
    ("POST", EPS, ep(ip="10.1.0.2"), BLUE, 409, "endpoint.ip", "10.1.0.2 is already used in network 'blue/web'"),
    ("POST", EPS, ep(ip="fd00::2"), BLUE,
     400, "endpoint.ip", "fd00::2 is an IPv6 address; want an IPv4 address like 10.1.0.1"),
    ("POST", EPS, ep(mac="01:00:5e:00:00:01"), BLUE,
     400, "endpoint.mac", "01:00:5e:00:00:01 is a multicast MAC address (odd first octet); want a unicast one"),
    ("POST", EPS, ep(mac="00:00:00:00:00:00"), BLUE,
     400, "endpoint.mac", "00:00:00:00:00:00 is the all-zero MAC address; want a unicast one like 02:00:00:00:00:0a"),
    ("POST", EPS, ep(mac="02:00:00:00:01"), BLUE,
     400, "endpoint.mac", "'02:00:00:00:01' is not a MAC address (want six hex octets like 02:00:00:00:00:0a)"),
    ("POST", EPS, ep(port_name="a-very-long-port-name"), None,
     400, "endpoint.port_name", "'a-very-long-port-name' is longer than 15 characters (Linux IFNAMSIZ)"),
    ("POST", EPS, ep(port_name="tnmine0"), BLUE,
     403, "endpoint.port_name", "set by the node agent; it needs a node or the cluster-admin token"),
    # nodes
    ("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.1"}, None,
     409, "node.tunnel_ip", "192.168.50.1 is already the tunnel IP of node 'node1'"),
    ("PUT", "/v1/nodes/node3", {"tunnel_ip": "0.0.0.0"}, None,
     400, "node.tunnel_ip", "0.0.0.0 is in 0.0.0.0/8 (this network); want a unicast address"),
    ("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "uplink": "eth 1"}, None,
     400, "node.uplink",
     "'eth 1' is not an interface name: printable ASCII without '/', ':' or spaces, not '.' or '..'"),
    ("PUT", "/v1/nodes/Node_3", {"tunnel_ip": "192.168.50.3"}, None,
     400, "node.name", f"'Node_3' is not a valid name: {SUBDOMAIN}"),
    # QoS, tenants, bodies
    ("POST", "/v1/qos", {"name": "x", "rate_kbps": 0, "burst_kb": 1}, None,
     400, "qos.rate_kbps", "rate (kbit/s) 0 is outside 1..100000000"),
    ("POST", "/v1/qos", {"name": "x", "rate_kbps": 1, "direction": "up"}, None,
     400, "qos.direction", "'up': want one of egress, ingress, both"),
    ("POST", "/v1/qos", {"name": "x", "rate_kbps": 1, "burst_kb": 1}, BLUE,
     403, None, "creating a QoS profile needs the cluster-admin token"),
    ("POST", "/v1/qos/gold/attachments", {"target": "red/web"}, BLUE,
     400, "qos.target", "'red/web' is neither a network (TENANT/NAME) nor an endpoint"),
    ("POST", "/v1/tenants", {"name": "blue"}, None, 409, "tenant.name", "tenant 'blue' already exists"),
    ("DELETE", "/v1/tenants/blue", None, None,
     409, "tenant", "tenant 'blue' still has networks (web): delete them first"),
    ("DELETE", f"{NETS}/web", None, None, 409, "network", "network 'blue/web' still has 1 endpoint(s)"),
    ("GET", "/v1/tenants/red", None, BLUE, 404, None, "unknown tenant 'red'"),
    ("POST", "/v1/tenants", [1], None, 400, None, "the request body must be a JSON object, not an array"),
]
# fmt: on


@pytest.fixture
def populated(cluster: Wsgi) -> Wsgi:
    cluster.ok("POST", NETS, network("web", "10.1.0.0/24", vni=5001))
    cluster.ok("POST", "/v1/tenants/red/networks", network("web", "10.1.0.0/24", vni=6001))
    cluster.ok("POST", EPS, {"id": "b1", "network": "blue/web", "node": "node1"}, token=BLUE)
    return cluster


def everything(api: Wsgi) -> list[Any]:
    return [api.ok("GET", p) for p in ("/v1/tenants", "/v1/networks", EPS, "/v1/qos", "/v1/nodes")]


def test_answers_word_for_word(populated: Wsgi) -> None:
    before = everything(populated)
    wrong = []
    for method, path, body, token, status, field, message in CASES:
        answer = populated.call(method, path, body, token=token or ADMIN)
        expected = (status, field, f"{field}: {message}" if field else message)
        got = (answer.status, answer.error["field"], answer.error["message"])
        if got != expected:
            wrong.append(f"{method} {path} {body}:\n  want {expected}\n  got  {got}")
    assert not wrong, "\n".join(wrong)
    assert everything(populated) == before  # nothing was applied
