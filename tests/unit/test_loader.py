"""The YAML loader: the example file, every rejection with its path, dump/load round trips, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topology.errors import ValidationError
from topology.loader import dump_model, load_data, load_file, load_text
from topology.model import Encap, Model, default_datapath_id

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.yaml"

# A small valid document; each rejection case below changes one field of it.
BASE: dict[str, Any] = {
    "nodes": [
        {"name": "node1", "tunnel_ip": "192.168.50.1", "uplink": "eth1"},
        {"name": "node2", "tunnel_ip": "192.168.50.2", "uplink": "eth1"},
    ],
    "links": [{"a": "node1", "a_port": "eth2", "b": "node2", "b_port": "eth2"}],
    "tenants": [
        {
            "name": "blue",
            "networks": [
                {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24", "gateway": "10.1.0.1"},
                {"name": "db", "encap": "vlan", "vlan": 101, "subnet": "10.1.1.0/24"},
            ],
        },
        {"name": "red", "networks": [{"name": "web", "encap": "vxlan", "vni": 6001, "subnet": "10.1.0.0/24"}]},
    ],
    "qos": [{"name": "gold", "rate_kbps": 100000, "burst_kb": 1000, "applies_to": "blue/web"}],
    "endpoints": [
        {"id": "b1", "network": "blue/web", "node": "node1", "ip": "10.1.0.10", "mac": "02:00:00:00:01:0a"},
        {"id": "b2", "network": "blue/web", "node": "node2"},
    ],
}

DELETE = object()
_TOKEN = re.compile(r"(\w+)|\[(\d+)\]")


def edit(path: str, value: object, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """A copy of `base` with the field at `path` set (or appended, for index == len), or removed with DELETE."""
    doc = copy.deepcopy(base)
    keys: list[str | int] = [name or int(index) for name, index in _TOKEN.findall(path)]
    parent: Any = doc
    for key in keys[:-1]:
        parent = parent.setdefault(key, []) if isinstance(key, str) else parent[key]
    last = keys[-1]
    if value is DELETE:
        del parent[last]
    elif isinstance(last, int) and last == len(parent):
        parent.append(value)
    else:
        parent[last] = value
    return doc


def load_doc(doc: object) -> Model:
    """Load through YAML text, as a file would be."""
    return load_text(yaml.safe_dump(doc, sort_keys=False))


def rejection(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        load_text(text)
    return caught.value


# --- the example -------------------------------------------------------------------------------------


def test_example_loads() -> None:
    model = load_file(EXAMPLE)
    assert list(model.nodes) == ["node1", "node2"]
    assert list(model.tenants) == ["blue", "red"]
    assert list(model.networks) == ["blue/web", "blue/db", "red/web"]
    assert len(model.endpoints) == 6
    assert model.links == []


def test_example_networks() -> None:
    model = load_file(EXAMPLE)
    view = {key: (n.encap, n.segment, str(n.subnet), str(n.gateway), n.mtu, n.id) for key, n in model.networks.items()}
    assert view == {
        "blue/web": (Encap.VXLAN, 5001, "10.1.0.0/24", "10.1.0.1", 1450, 1),
        "blue/db": (Encap.VLAN, 101, "10.1.1.0/24", "10.1.1.1", 1450, 2),  # the tenant's one MTU
        "red/web": (Encap.VXLAN, 6001, "10.1.0.0/24", "10.1.0.1", 1450, 3),
    }


def test_example_endpoints_get_deterministic_addresses_and_ports() -> None:
    model = load_file(EXAMPLE)
    view = {e.id: (e.network, e.node, str(e.ip), e.mac_text, e.ofport, e.num) for e in model.endpoints.values()}
    # b2 and r2 get .2: .1 is the gateway and .10 is taken statically. Allocated MACs are 02:<net id>:<IP>.
    assert view == {
        "b1": ("blue/web", "node1", "10.1.0.10", "02:00:00:00:01:0a", 1000, 1),
        "b2": ("blue/web", "node2", "10.1.0.2", "02:00:01:01:00:02", 1000, 2),
        "b3": ("blue/db", "node2", "10.1.1.2", "02:00:02:01:01:02", 1001, 3),
        "b4": ("blue/db", "node1", "10.1.1.3", "02:00:02:01:01:03", 1001, 4),
        "r1": ("red/web", "node2", "10.1.0.10", "02:00:00:00:02:0a", 1002, 5),
        "r2": ("red/web", "node1", "10.1.0.2", "02:00:03:01:00:02", 1002, 6),
    }


def test_example_nodes_qos_and_counters() -> None:
    model = load_file(EXAMPLE)
    node1 = model.nodes["node1"]
    assert (node1.tunnel_ip, node1.uplink, node1.datapath_id) == (
        IPv4Address("192.168.50.1"),
        "eth1",
        default_datapath_id("node1"),
    )
    assert [(a.profile, a.target, a.meter_id) for a in model.qos_attachments.values()] == [("gold", "blue/web", 1)]
    assert model.hosts["blue/web"] == {"node1": 1, "node2": 1}
    assert model.tenant_nodes["blue"] == {"node1": 2, "node2": 2}
    assert model.tenant_nodes["red"] == {"node1": 1, "node2": 1}


def test_loading_twice_gives_the_same_model() -> None:
    assert dump_model(load_file(EXAMPLE)) == dump_model(load_file(EXAMPLE))


def test_same_subnet_and_ip_in_different_tenants_is_fine() -> None:
    example = load_file(EXAMPLE)
    assert example.networks["blue/web"].subnet == example.networks["red/web"].subnet == IPv4Network("10.1.0.0/24")
    model = load_doc(edit("endpoints[2]", {"id": "r1", "network": "red/web", "node": "node1", "ip": "10.1.0.10"}))
    assert model.endpoints["r1"].ip == model.endpoints["b1"].ip


def test_optional_fields() -> None:
    doc = edit("nodes[0].datapath_id", "0x1A")
    doc = {**doc, "nodes": [*doc["nodes"], {"name": "node3", "tunnel_ip": "192.168.50.3", "datapath_id": 7}]}
    doc["tenants"][0]["networks"][0].update(mtu=1400)
    doc["tenants"][0]["networks"][1].update(gateway="10.1.1.254", mtu=1400)
    doc["endpoints"][1]["port_name"] = "veth-b2"
    doc["qos"][0]["applies_to"] = ["blue/web", "b2"]
    model = load_doc(doc)
    assert [model.nodes[n].datapath_id for n in ("node1", "node3")] == [0x1A, 7]
    assert model.nodes["node3"].uplink is None
    assert (model.networks["blue/db"].gateway, model.networks["blue/db"].mtu) == (IPv4Address("10.1.1.254"), 1400)
    assert model.endpoints["b2"].port_name == "veth-b2"
    assert [(a.target, a.meter_id) for a in model.qos_attachments.values()] == [("blue/web", 1), ("b2", 2)]


def test_empty_sections_are_allowed() -> None:
    model = load_text("nodes: []\nlinks:\ntenants: []\n")
    assert (model.nodes, model.networks, model.endpoints) == ({}, {}, {})


# --- rejections --------------------------------------------------------------------------------------

REJECTIONS = [
    # unknown keys, named with the allowed ones
    (
        "firewalls",
        [],
        "firewalls",
        "unknown top-level key 'firewalls' (allowed: nodes, links, tenants, namespaces, qos, endpoints, policies)",
    ),
    (
        "nodes[0].colour",
        "red",
        "nodes[0].colour",
        "unknown key 'colour' (allowed: name, tunnel_ip, uplink, datapath_id)",
    ),
    ("links[0].speed", 10, "links[0].speed", "unknown key 'speed' (allowed: a, a_port, b, b_port)"),
    ("tenants[0].subnet", "10.0.0.0/8", "tenants[0].subnet", "unknown key 'subnet' (allowed: name, networks)"),
    ("tenants[0].networks[1].vlan_id", 5, "tenants[0].networks[1].vlan_id", "unknown key 'vlan_id'"),
    (
        "qos[0].ceil_kbps",
        5,
        "qos[0].ceil_kbps",
        "unknown key 'ceil_kbps' (allowed: name, rate_kbps, burst_kb, direction, applies_to)",
    ),
    ("endpoints[0].ipaddr", "10.1.0.9", "endpoints[0].ipaddr", "unknown key 'ipaddr' (allowed: id, network, node, ip,"),
    # missing required keys
    ("nodes[1].tunnel_ip", DELETE, "nodes[1].tunnel_ip", "missing required key 'tunnel_ip'"),
    ("links[0].b_port", DELETE, "links[0].b_port", "missing required key 'b_port'"),
    ("tenants[1].name", DELETE, "tenants[1].name", "missing required key 'name'"),
    ("tenants[0].networks[0].subnet", DELETE, "tenants[0].networks[0].subnet", "missing required key 'subnet'"),
    ("tenants[0].networks[0].vni", DELETE, "tenants[0].networks[0].vni", "missing required key 'vni'"),
    ("tenants[0].networks[1].vlan", DELETE, "tenants[0].networks[1].vlan", "missing required key 'vlan'"),
    ("qos[0].rate_kbps", DELETE, "qos[0].rate_kbps", "missing required key 'rate_kbps'"),
    ("qos[0].direction", "sideways", "qos[0].direction", "'sideways': want one of egress, ingress, both"),
    ("endpoints[1].node", DELETE, "endpoints[1].node", "missing required key 'node'"),
    # wrong types
    ("nodes", {"node1": {}}, "nodes", "want a list"),
    ("tenants[0].networks", "web", "tenants[0].networks", "want a list"),
    ("endpoints[0]", "b1", "endpoints[0]", "want a mapping with keys id, network, node"),
    ("tenants[0].networks[0].vni", "abc", "tenants[0].networks[0].vni", "want an integer, got 'abc'"),
    ("tenants[0].networks[0].vni", "5001", "tenants[0].networks[0].vni", "want an integer, got '5001'"),
    ("tenants[0].networks[1].vlan", True, "tenants[0].networks[1].vlan", "want an integer, got True"),
    ("tenants[0].networks[1].mtu", 1400.5, "tenants[0].networks[1].mtu", "want an integer, got 1400.5"),
    ("qos[0].rate_kbps", "fast", "qos[0].rate_kbps", "want an integer"),
    ("nodes[0].name", 5, "nodes[0].name", "want a string, got 5"),
    ("nodes[0].datapath_id", "12", "nodes[0].datapath_id", "want an integer or a hex string like '0x1a'"),
    ("nodes[0].datapath_id", "0xg", "nodes[0].datapath_id", "want an integer or a hex string"),
    ("nodes[0].datapath_id", False, "nodes[0].datapath_id", "want an integer or a hex string"),
    ("endpoints[0].ip", 10, "endpoints[0].ip", "want a string, got 10"),
    ("endpoints[0].network", None, "endpoints[0].network", "want a string, got None"),
    ("qos[0].applies_to", 5, "qos[0].applies_to", "want a network key (TENANT/NAME), an endpoint id"),
    ("qos[0].applies_to", ["blue/web", 7], "qos[0].applies_to[1]", "got 7"),
    # bad values
    ("nodes[0].tunnel_ip", "192.168.50", "nodes[0].tunnel_ip", "'192.168.50' is not an IPv4 address"),
    ("nodes[0].name", "", "nodes[0].name", "a name may not be empty"),
    ("tenants[0].name", "blue sky", "tenants[0].name", "is not a valid name: use lowercase letters, digits and '-'"),
    ("tenants[0].networks[0].encap", "gre", "tenants[0].networks[0].encap", "'gre' is not one of vlan, vxlan"),
    (
        "tenants[0].networks[0].subnet",
        "10.1.0.1/24",
        "tenants[0].networks[0].subnet",
        "has host bits set; did you mean 10.1.0.0/24?",
    ),
    ("tenants[0].networks[0].vlan", 7, "tenants[0].networks[0].vlan", "a vxlan network takes 'vni', not 'vlan'"),
    ("tenants[0].networks[1].vni", 7, "tenants[0].networks[1].vni", "a vlan network takes 'vlan', not 'vni'"),
    ("tenants[0].networks[1].vlan", 4095, "tenants[0].networks[1].vlan", "VLAN 4095 is outside 1..4094"),
    ("tenants[0].networks[1].vlan", 0, "tenants[0].networks[1].vlan", "VLAN 0 is outside 1..4094"),
    ("tenants[0].networks[0].vni", 2**24, "tenants[0].networks[0].vni", "VNI 16777216 is outside 1..16777215"),
    ("tenants[0].networks[0].mtu", 9000, "tenants[0].networks[0].mtu", "MTU 9000 is outside 576..1450"),
    (
        "tenants[0].networks[0].gateway",
        "10.2.0.1",
        "tenants[0].networks[0].gateway",
        "not a host address of 10.1.0.0/24; want one in 10.1.0.1..10.1.0.254",
    ),
    ("tenants[0].networks[0].gateway", "10.1.0.255", "tenants[0].networks[0].gateway", "not a host address of"),
    ("qos[0].rate_kbps", 0, "qos[0].rate_kbps", "rate (kbit/s) 0 is outside 1..100000000"),
    ("endpoints[0].mac", "02:00:00:00:01", "endpoints[0].mac", "is not a MAC address"),
    ("endpoints[0].mac", "01:00:5e:00:00:01", "endpoints[0].mac", "is a multicast MAC address"),
    ("endpoints[0].port_name", "a-very-long-port-name", "endpoints[0].port_name", "longer than 15 characters"),
    # segments and subnets in use
    (
        "tenants[1].networks[0].vni",
        5001,
        "tenants[1].networks[0].vni",
        "VNI 5001 is already used by network 'blue/web'",
    ),
    (
        "tenants[1].networks[1]",
        {"name": "db", "encap": "vlan", "vlan": 101, "subnet": "10.9.0.0/24"},
        "tenants[1].networks[1].vlan",
        "VLAN 101 is already used by network 'blue/db'",
    ),
    ("tenants[0].networks[1].subnet", "10.1.0.128/25", "tenants[0].networks[1].subnet", "overlaps 10.1.0.0/24"),
    ("tenants[0].networks[1].subnet", "10.0.0.0/8", "tenants[0].networks[1].subnet", "of network 'blue/web'"),
    ("tenants[1].name", "blue", "tenants[1].name", "tenant 'blue' already exists"),
    ("tenants[0].networks[1].name", "web", "tenants[0].networks[1].name", "network 'blue/web' already exists"),
    ("nodes[1].name", "node1", "nodes[1].name", "node 'node1' already exists"),
    ("nodes[1].tunnel_ip", "192.168.50.1", "nodes[1].tunnel_ip", "already the tunnel IP of node 'node1'"),
    # links
    ("links[0].b", "node9", "links[0].b", "unknown node 'node9'"),
    ("links[0].a_port", "eth1", "links[0].a_port", "port 'eth1' of node 'node1' is already in use"),
    # endpoints
    ("endpoints[0].ip", "10.1.1.10", "endpoints[0].ip", "10.1.1.10 is outside subnet 10.1.0.0/24"),
    ("endpoints[0].ip", "10.1.0.1", "endpoints[0].ip", "10.1.0.1 is the gateway of network 'blue/web'"),
    ("endpoints[0].ip", "10.1.0.0", "endpoints[0].ip", "is the network address of 10.1.0.0/24, not a host address"),
    ("endpoints[0].node", "node9", "endpoints[0].node", "unknown node 'node9'"),
    ("endpoints[0].network", "blue/nope", "endpoints[0].network", "unknown network 'blue/nope'"),
    ("endpoints[0].network", "blue", "endpoints[0].network", "unknown network 'blue' (want TENANT/NAME)"),
    ("endpoints[1].id", "b1", "endpoints[1].id", "endpoint 'b1' already exists"),
    ("endpoints[1].ip", "10.1.0.10", "endpoints[1].ip", "10.1.0.10 is already used in network 'blue/web'"),
    ("endpoints[1].mac", "02:00:00:00:01:0a", "endpoints[1].mac", "02:00:00:00:01:0a is already used in network"),
    ("endpoints[1].mac", "0a:00:00:00:00:01", "endpoints[1].mac", "is the gateway MAC of network 'blue/web'"),
    ("endpoints[1].mac", "0e:00:c0:a8:32:01", "endpoints[1].mac", "is in 0e:00:00:00:00:00/16, the nodes' gateway"),
    ("endpoints[1].mac", "0E:00:00:00:00:01", "endpoints[1].mac", "is in 0e:00:00:00:00:00/16, the nodes' gateway"),
    # QoS attachments, applied after endpoints
    ("qos[0].applies_to", "blue/nope", "qos[0].applies_to", "'blue/nope' is neither a network (TENANT/NAME) nor"),
    ("qos[0].applies_to", ["b2", "b9"], "qos[0].applies_to[1]", "'b9' is neither a network"),
    ("qos[0].applies_to", ["b2", "b2"], "qos[0].applies_to[1]", "'b2' already has QoS profile 'gold'"),
    ("qos[1]", {"name": "gold", "rate_kbps": 1, "burst_kb": 1}, "qos[1].name", "QoS profile 'gold' already exists"),
]


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    REJECTIONS,
    ids=[f"{case[0]}={'DELETE' if case[1] is DELETE else case[1]!r}"[:60] for case in REJECTIONS],
)
def test_rejected(field: str, value: object, path: str, message: str) -> None:
    doc = edit(field, value)
    with pytest.raises(ValidationError) as caught:
        load_doc(doc)
    assert caught.value.path == path
    assert message in caught.value.message
    # The same error from parsed data, without YAML in between (the API's path).
    with pytest.raises(ValidationError) as again:
        load_data(doc)
    assert (again.value.path, again.value.message) == (caught.value.path, caught.value.message)


@pytest.mark.parametrize(
    ("field", "value", "conflict"),
    [
        ("tenants[1].networks[0].vni", 5001, True),
        ("endpoints[1].ip", "10.1.0.10", True),
        ("nodes[1].name", "node1", True),
        ("tenants[0].networks[1].vlan", 4095, False),
        ("endpoints[0].node", "node9", False),
    ],
)
def test_conflicts_are_marked(field: str, value: object, conflict: bool) -> None:
    with pytest.raises(ValidationError) as caught:
        load_doc(edit(field, value))
    assert caught.value.conflict is conflict


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- nodes\n- tenants\n",
            "want a mapping with keys nodes, links, tenants, namespaces, qos, endpoints, policies, got ['nodes',",
        ),
        ("just words\n", "got 'just words'"),
        ("", "got an empty document"),
        ("# only a comment\n", "got an empty document"),
    ],
)
def test_document_that_is_not_a_mapping(text: str, message: str) -> None:
    error = rejection(text)
    assert error.path == "<text>"
    assert message in error.message


def test_unquoted_mac_read_as_a_number_is_explained() -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("mac: 02:00:00:00:01:0a", "mac: 12:34:56:12:34:56")
    error = rejection(text)
    assert error.path == "endpoints[0].mac"
    assert "quote MAC addresses" in error.message


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("nodes:\n  - {name: node1, tunnel_ip: 192.168.50.1\n", "cluster.yaml:3", "expected ',' or '}'"),
        ("nodes: [\n", "cluster.yaml:2", "while parsing a flow"),
        ("nodes:\n  - name: a\n   bad: indent\n", "cluster.yaml:3", "expected <block end>"),
        ("nodes:\n\t- {name: a}\n", "cluster.yaml:2", "found character '\\t'"),
        ("nodes: *nowhere\n", "cluster.yaml:1", "found undefined alias 'nowhere'"),
        ("nodes:\n  - name: a\n    name: b\n", "cluster.yaml:3", "duplicate key 'name'"),
        ("tenants: []\ntenants: []\n", "cluster.yaml:2", "duplicate key 'tenants'"),
        ("nodes: []\n---\nnodes: []\n", "cluster.yaml:2", "expected a single document"),
        ("nodes: !!python/object:os.system x\n", "cluster.yaml:1", "could not determine a constructor"),
        ("nodes: !!int abc\n", "cluster.yaml", "bad YAML value"),
        ("nodes: !!bool maybe\n", "cluster.yaml", "bad YAML value"),
        ("nodes: !!timestamp 2001-13-45\n", "cluster.yaml", "bad YAML value"),
        ("nodes: \x00\n", "cluster.yaml", "unacceptable character #x0000"),
        ("[" * 1500, "cluster.yaml", "nested too deeply"),
    ],
)
def test_bad_yaml_is_a_validation_error_with_the_line(text: str, path: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_text(text, source="cluster.yaml")
    assert caught.value.path == path
    assert message in caught.value.message


def test_bad_yaml_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nodes:\n  - {name: node1\n")
    with pytest.raises(ValidationError) as caught:
        load_file(path)
    assert caught.value.path == f"{path}:3"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load_file(tmp_path / "missing.yaml")
    assert caught.value.path == str(tmp_path / "missing.yaml")
    assert "cannot read the file" in caught.value.message


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"nodes: [{name: n\xe9}]\n")
    with pytest.raises(ValidationError) as caught:
        load_file(path)
    assert caught.value.path == str(path)
    assert "not UTF-8" in caught.value.message


def test_merge_keys_still_work() -> None:
    text = (
        "nodes:\n"
        "  - &n {name: node1, tunnel_ip: 192.168.50.1, uplink: eth1}\n"
        "  - {<<: *n, name: node2, tunnel_ip: 192.168.50.2}\n"
    )
    assert load_text(text).nodes["node2"].uplink == "eth1"


def test_self_referencing_alias_is_refused_cleanly() -> None:
    error = rejection("nodes: &a [*a]\n")
    assert error.path == "nodes[0]"
    assert "want a mapping" in error.message


# --- dump and round trips ----------------------------------------------------------------------------


def endpoint_view(model: Model) -> dict[str, tuple[object, ...]]:
    return {e.id: (e.network, e.node, e.ip, e.mac, e.port_name) for e in model.endpoints.values()}


def network_view(model: Model) -> dict[str, tuple[object, ...]]:
    return {k: (n.encap, n.segment, n.subnet, n.gateway, n.mtu) for k, n in model.networks.items()}


def test_round_trip_of_the_example() -> None:
    model = load_file(EXAMPLE)
    again = load_text(yaml.safe_dump(dump_model(model), sort_keys=False))
    # Nothing was removed, so even ids, ofports, numbers and meter ids come back the same.
    assert again.endpoints == model.endpoints
    assert again.networks == model.networks
    assert again.nodes == model.nodes
    assert again.qos_attachments == model.qos_attachments


def test_dump_writes_allocated_addresses() -> None:
    dumped = dump_model(load_file(EXAMPLE))
    assert dumped["endpoints"][1] == {
        "id": "b2",
        "network": "blue/web",
        "node": "node2",
        "ip": "10.1.0.2",
        "mac": "02:00:01:01:00:02",
    }
    assert dumped["tenants"][0]["networks"][0] == {
        "name": "web",
        "encap": "vxlan",
        "vni": 5001,
        "subnet": "10.1.0.0/24",
        "gateway": "10.1.0.1",
        "mtu": 1450,
    }
    assert dumped["qos"] == [
        {"name": "gold", "rate_kbps": 100000, "burst_kb": 50000, "direction": "both", "applies_to": "blue/web"}
    ]


def changed_model() -> Model:
    """A model that went through removals and API-style changes, so it differs from any fresh load."""
    model = load_file(EXAMPLE)
    model.add_node("node3", tunnel_ip="192.168.50.3", datapath_id=0xABC)
    model.add_link("node1", "eth2", "node3", "eth2")
    model.add_network("red", "db", encap="vlan", segment=102, subnet="10.1.1.0/24", mtu=1450)
    model.remove_endpoint("b2")
    model.add_endpoint("r3", network="red/db", node="node3", port_name="veth-r3")
    model.add_endpoint("b5", network="blue/web", node="node3", mac="02:00:01:01:00:03")  # takes b2's .2
    model.add_endpoint("b6", network="blue/web", node="node3")  # takes .3; its derived MAC is b5's, so +1
    model.add_qos("silver", rate_kbps=1000, burst_kb=100)
    model.attach_qos("silver", "b5")
    model.attach_qos("silver", "red/db")
    model.add_tenant("green")  # a tenant without networks
    return model


def test_round_trip_after_changes() -> None:
    model = changed_model()
    again = load_data(dump_model(model))
    assert endpoint_view(again) == endpoint_view(model)
    assert network_view(again) == network_view(model)
    assert again.nodes == model.nodes
    assert again.links == model.links
    assert {t: (a.profile) for t, a in again.qos_attachments.items()} == {
        t: (a.profile) for t, a in model.qos_attachments.items()
    }
    assert list(again.tenants) == list(model.tenants)
    assert dump_model(again) == dump_model(model)


def test_round_trip_keeps_the_next_allocation() -> None:
    model = changed_model()
    again = load_text(yaml.safe_dump(dump_model(model)))
    for m in (model, again):
        m.add_endpoint("new", network="blue/web", node="node1")
    # .2 (released by b2) went to b5 and .3 to b6, whose derived MAC moved up to ...:04 because b5 holds ...:03;
    # so the new endpoint gets .4 and, its derived MAC being taken too, ...:05, on both sides.
    assert (model.endpoints["new"].ip, model.endpoints["new"].mac_text) == (
        IPv4Address("10.1.0.4"),
        "02:00:01:01:00:05",
    )
    assert endpoint_view(again) == endpoint_view(model)


def test_dump_of_an_empty_model() -> None:
    empty = dump_model(Model())
    assert empty == {"nodes": [], "links": [], "tenants": [], "qos": [], "endpoints": []}
    assert load_data(empty).networks == {}


# --- fuzzing -----------------------------------------------------------------------------------------

KNOWN_KEYS = sorted(
    {"nodes", "links", "tenants", "qos", "endpoints", "name", "tunnel_ip", "uplink", "datapath_id", "a", "a_port"}
    | {"b", "b_port", "networks", "encap", "vni", "vlan", "subnet", "gateway", "mtu", "rate_kbps", "burst_kb"}
    | {"applies_to", "id", "network", "node", "ip", "mac", "port_name"}
)
PLAUSIBLE = st.sampled_from(
    ["vlan", "vxlan", "10.1.0.0/24", "10.1.0.1", "10.1.0.300", "node1", "blue/web", "02:00:00:00:01:0a", "0x1f", ""]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | PLAUSIBLE
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8) | st.integers() | st.none() | st.booleans()
yamlish = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


def load_or_reject(load: Any, value: object) -> None:
    """Loading may succeed or raise ValidationError; anything else is a bug."""
    try:
        load(value)
    except ValidationError as error:
        assert error.path or error.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yamlish)
def test_fuzz_random_structures(value: object) -> None:
    load_or_reject(load_doc, value)
    load_or_reject(load_data, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["nodes", "links", "tenants", "qos", "endpoints"]), yamlish, max_size=5))
def test_fuzz_random_sections(value: object) -> None:
    load_or_reject(load_doc, value)


def all_paths(value: object, prefix: str = "") -> list[str]:
    """Every field path of a document, in the loader's notation."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found += [path, *all_paths(child, path)]
    elif isinstance(value, list):
        for index, child in enumerate(value):
            path = f"{prefix}[{index}]"
            found += [path, *all_paths(child, path)]
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(all_paths(BASE)), st.just(DELETE) | yamlish), min_size=1, max_size=3))
def test_fuzz_mutated_valid_document(changes: list[tuple[str, object]]) -> None:
    """One to three fields of a valid document replaced or removed: reaches deep into the loader and model."""
    doc = BASE
    for path, value in changes:
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            doc = edit(path, value, doc)  # fails when an earlier change removed or replaced the parent
    load_or_reject(load_doc, doc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.text(alphabet="[]{}:,-&*!|>'\"#%@` \n\tabc019", max_size=80))
def test_fuzz_random_text(text: str) -> None:
    load_or_reject(load_text, text)
