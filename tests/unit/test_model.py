"""The model: refused changes leave no trace, allocations stay unique, indexes and counters stay right."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.errors import PoolExhausted, ValidationError
from topology.ipam import endpoint_mac, int_to_mac
from topology.model import (
    FIRST_ENDPOINT_OFPORT,
    LAST_OFPORT,
    Encap,
    Endpoint,
    IdAllocator,
    Model,
    Touched,
    default_port_name,
)

IP = IPv4Address
NETWORKS = ["blue/web", "blue/db", "red/web", "red/tiny"]
NODES = ["n1", "n2"]


def build() -> Model:
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1")
    model.add_node("n2", tunnel_ip="192.168.0.2", uplink="eth1")
    model.add_tenant("blue")
    model.add_tenant("red")
    model.add_network("blue", "web", encap="vxlan", segment=5001, subnet="10.1.0.0/24")
    model.add_network("blue", "db", encap="vlan", segment=101, subnet="10.1.1.0/24")
    model.add_network("red", "web", encap="vxlan", segment=6001, subnet="10.1.0.0/24")
    model.add_network("red", "tiny", encap="vlan", segment=102, subnet="10.9.0.0/30")  # room for one endpoint
    return model


def populated() -> Model:
    model = build()
    model.add_endpoint("e1", network="blue/web", node="n1", ip="10.1.0.10", mac="02:00:00:00:00:10")
    model.add_endpoint("e2", network="blue/web", node="n2")
    model.add_endpoint("t1", network="red/tiny", node="n1")
    return model


def counts(counters: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    """Counters as plain dicts, so a zero entry left behind shows up (Counter equality ignores zeros)."""
    return {key: dict(counter) for key, counter in counters.items()}


def snapshot(model: Model) -> tuple[object, ...]:
    return (
        model.revision,
        dict(model.endpoints),
        {key: dict(eps) for key, eps in model.endpoints_by_network.items()},
        {key: dict(eps) for key, eps in model.endpoints_by_node.items()},
        counts(model.hosts),
        counts(model.tenant_nodes),
        dict(model.qos_attachments),
    )


def probe(model: Model) -> list[object]:
    """What the model hands out next on every network and node: a leaked IP, MAC, ofport or number shows here."""
    outcomes: list[object] = []
    for network in NETWORKS:
        for node in NODES:
            try:
                e = model.add_endpoint(f"probe-{network.replace('/', '-')}-{node}", network=network, node=node)
            except ValidationError as error:
                outcomes.append(error.message)
            else:
                outcomes.append((e.ip, e.mac, e.ofport, e.num))
    return outcomes


# --- networks and tenants ----------------------------------------------------------------------------


def test_network_defaults() -> None:
    model = build()
    web, db = model.networks["blue/web"], model.networks["blue/db"]
    assert (web.encap, web.segment, web.gateway, web.mtu, web.id) == (Encap.VXLAN, 5001, IP("10.1.0.1"), 1450, 1)
    assert (db.encap, db.segment, db.gateway, db.mtu, db.id) == (Encap.VLAN, 101, IP("10.1.1.1"), 1450, 2)


def test_vlan_ids_and_vnis_are_separate_namespaces() -> None:
    model = build()
    model.add_network("red", "other", encap="vxlan", segment=101, subnet="10.2.0.0/24")
    assert model.networks["red/other"].segment == model.networks["blue/db"].segment


def test_remove_network_with_endpoints_is_refused() -> None:
    model = populated()
    before = snapshot(model)
    with pytest.raises(ValidationError) as caught:
        model.remove_network("blue/web", path="networks/blue/web")
    assert caught.value.conflict
    assert caught.value.path == "networks/blue/web"
    assert caught.value.message == "network 'blue/web' still has 2 endpoint(s)"
    assert "blue/web" in model.networks
    assert snapshot(model) == before


def test_remove_network_frees_its_segment_id_and_meter() -> None:
    model = build()
    model.add_qos("gold", rate_kbps=1000, burst_kb=100)
    model.attach_qos("gold", "blue/web")
    assert model.remove_network("blue/web") == Touched(networks={"blue/web"})
    assert "blue/web" not in model.qos_attachments
    assert "blue/web" not in model.hosts
    model.add_network("red", "again", encap="vxlan", segment=5001, subnet="10.3.0.0/24")
    assert model.networks["red/again"].id == 5  # the next from above: a removed id is not handed out soon
    model.remove_network("red/again")
    model.add_network("red", "again", encap="vxlan", segment=5001, subnet="10.3.0.0/24", network_id=1)
    assert model.networks["red/again"].id == 1  # the removed network's id, free to claim
    model.attach_qos("gold", "red/again")
    assert model.qos_attachments["red/again"].meter_id == 1


def test_remove_tenant_with_networks_is_refused() -> None:
    model = build()
    with pytest.raises(ValidationError, match="tenant 'red' still has networks") as caught:
        model.remove_tenant("red")
    assert caught.value.conflict
    model.remove_network("red/web")
    model.remove_network("red/tiny")
    model.remove_tenant("red")
    assert "red" not in model.tenant_nodes
    model.add_tenant("green")
    assert model.tenants["green"].id == 2


# --- add_endpoint is all or nothing ------------------------------------------------------------------

FAILED_ADDS: list[tuple[dict[str, Any], str, str]] = [
    ({"ip": "10.1.0.10"}, "endpoints[9].ip", "10.1.0.10 is already used in network 'blue/web'"),
    ({"ip": "10.1.0.10", "mac": "02:00:00:00:00:99"}, "endpoints[9].ip", "already used"),
    ({"ip": "10.1.0.2"}, "endpoints[9].ip", "already used"),
    ({"ip": "10.1.0.1"}, "endpoints[9].ip", "is the gateway"),
    ({"ip": "10.2.0.1"}, "endpoints[9].ip", "is outside subnet"),
    ({"ip": "10.1.0"}, "endpoints[9].ip", "is not an IPv4 address"),
    ({"mac": "02:00:00:00:00:10"}, "endpoints[9].mac", "is already used in network 'blue/web'"),
    ({"mac": "0a:00:00:00:00:01"}, "endpoints[9].mac", "is the gateway MAC"),
    ({"mac": "01:00:5e:00:00:01"}, "endpoints[9].mac", "is a multicast MAC address"),
    ({"node": "n9"}, "endpoints[9].node", "unknown node 'n9'"),
    ({"network": "blue/nope"}, "endpoints[9].network", "unknown network"),
    ({"endpoint_id": "e1"}, "endpoints[9].id", "endpoint 'e1' already exists"),
    ({"endpoint_id": "a b"}, "endpoints[9].id", "is not a valid name"),
    ({"port_name": "sixteen-chars-xx"}, "endpoints[9].port_name", "longer than 15 characters"),
    ({"port_name": default_port_name("e1")}, "endpoints[9].port_name", "is already used on node 'n1'"),
    ({"network": "red/tiny"}, "endpoints[9].ip", "no free address left in 10.9.0.0/30"),
]


@pytest.mark.parametrize(("change", "path", "message"), FAILED_ADDS, ids=[str(c[0]) for c in FAILED_ADDS])
def test_failed_add_endpoint_changes_nothing(change: dict[str, Any], path: str, message: str) -> None:
    failed, twin = populated(), populated()
    before = snapshot(failed)
    request: dict[str, Any] = {"endpoint_id": "x", "network": "blue/web", "node": "n1"} | change
    with pytest.raises(ValidationError) as caught:
        failed.add_endpoint(**request, path="endpoints[9]")
    assert caught.value.path == path
    assert message in caught.value.message
    assert snapshot(failed) == before
    assert probe(failed) == probe(twin)


def test_running_out_of_ofports_claims_no_address() -> None:
    model = build()
    model._ofports["n1"] = IdAllocator(FIRST_ENDPOINT_OFPORT, FIRST_ENDPOINT_OFPORT)  # a node with one port
    model.add_endpoint("a", network="blue/web", node="n1")
    before = snapshot(model)
    with pytest.raises(ValidationError) as caught:
        model.add_endpoint("b", network="blue/web", node="n1", path="endpoints[1]")
    assert (caught.value.path, caught.value.message) == ("endpoints[1].node", "no free OpenFlow port left on node 'n1'")
    assert snapshot(model) == before
    other = model.add_endpoint("c", network="blue/web", node="n2")
    assert (other.ip, other.num) == (IP("10.1.0.3"), 2)  # what "b" would have had
    model.remove_endpoint("a")
    assert model.add_endpoint("d", network="blue/web", node="n1").ofport == FIRST_ENDPOINT_OFPORT


# --- allocations -------------------------------------------------------------------------------------


def test_allocated_macs_are_unique_across_the_model() -> None:
    model = build()
    for index in range(40):
        for network in ("blue/web", "blue/db", "red/web"):  # blue/web and red/web hand out the same IPs
            model.add_endpoint(f"{network.replace('/', '-')}-{index}", network=network, node=NODES[index % 2])
    macs = [e.mac for e in model.endpoints.values()]
    assert len(set(macs)) == len(macs) == 120
    gateways = {n.gateway_mac for n in model.networks.values()}
    assert not gateways & set(macs)
    assert all(mac >> 40 == 0x02 for mac in macs)  # locally administered unicast


def test_static_mac_on_a_derived_one_pushes_the_next_allocation_up() -> None:
    model = build()
    web = model.networks["blue/web"]
    taken = int_to_mac(endpoint_mac(web.id, IP("10.1.0.2")))
    model.add_endpoint("static", network="blue/web", node="n1", ip="10.1.0.50", mac=taken)
    allocated = model.add_endpoint("allocated", network="blue/web", node="n1")
    assert allocated.ip == IP("10.1.0.2")
    assert allocated.mac == endpoint_mac(web.id, IP("10.1.0.2")) + 1


def test_ofports_are_per_node_and_reused_lowest_first() -> None:
    model = build()
    ports = [model.add_endpoint(f"a{i}", network="blue/web", node="n1").ofport for i in range(4)]
    assert ports == [1000, 1001, 1002, 1003]
    assert model.add_endpoint("b0", network="blue/web", node="n2").ofport == 1000
    model.remove_endpoint("a2")
    model.remove_endpoint("a1")
    assert [model.add_endpoint(f"c{i}", network="blue/db", node="n1").ofport for i in range(3)] == [1001, 1002, 1004]


def test_endpoint_numbers_are_reused_lowest_first() -> None:
    model = build()
    nums = [model.add_endpoint(f"a{i}", network="blue/web", node="n1").num for i in range(3)]
    assert nums == [1, 2, 3]
    model.remove_endpoint("a1")
    assert model.add_endpoint("b", network="red/web", node="n2").num == 2


def test_ip_released_with_the_endpoint_is_reused() -> None:
    model = populated()
    removed = model.endpoints["e2"]
    model.remove_endpoint("e2")
    again = model.add_endpoint("e3", network="blue/web", node="n1")
    assert (again.ip, again.mac) == (removed.ip, removed.mac)


# --- indexes and counters ----------------------------------------------------------------------------


def test_hosts_and_tenant_nodes_follow_adds_and_removes() -> None:
    model = build()
    for endpoint_id, network, node in [("a", "blue/web", "n1"), ("b", "blue/web", "n1"), ("c", "blue/db", "n2")]:
        model.add_endpoint(endpoint_id, network=network, node=node)
    assert counts(model.hosts) == {"blue/web": {"n1": 2}, "blue/db": {"n2": 1}, "red/web": {}, "red/tiny": {}}
    assert counts(model.tenant_nodes) == {"blue": {"n1": 2, "n2": 1}, "red": {}}
    assert model.remove_endpoint("c") == Touched(networks={"blue/db"}, endpoints={"c"}, nodes={"n2"})
    model.remove_endpoint("a")
    assert counts(model.hosts) == {"blue/web": {"n1": 1}, "blue/db": {}, "red/web": {}, "red/tiny": {}}
    assert counts(model.tenant_nodes) == {"blue": {"n1": 1}, "red": {}}
    assert list(model.endpoints_by_node["n2"]) == []
    assert list(model.endpoints_by_network["blue/web"]) == ["b"]


def test_revision_counts_successful_changes_only() -> None:
    model = build()
    start = model.revision
    model.add_endpoint("a", network="blue/web", node="n1")
    with pytest.raises(ValidationError):
        model.add_endpoint("a", network="blue/web", node="n1")
    model.remove_endpoint("a")
    assert model.revision == start + 2


# --- QoS ---------------------------------------------------------------------------------------------


def test_qos_attach_and_detach() -> None:
    model = populated()
    model.add_qos("gold", rate_kbps=100_000, burst_kb=1000)
    model.add_qos("silver", rate_kbps=10_000, burst_kb=100)
    e1, e2 = model.endpoints["e1"], model.endpoints["e2"]
    assert model.qos_for(e1) is None

    # A network's profile meters each of its endpoints, so they and their nodes are recompiled.
    everyone = Touched(networks={"blue/web"}, endpoints={"e1", "e2"}, nodes={"n1", "n2"})
    assert model.attach_qos("gold", "blue/web") == everyone
    assert model.qos_for(e1) == model.qos_for(e2) == model.qos_attachments["blue/web"]
    assert model.qos_attachments["blue/web"].meter_id == 1

    assert model.attach_qos("silver", "e1") == Touched(networks={"blue/web"}, endpoints={"e1"}, nodes={"n1"})
    own, inherited = model.qos_for(e1), model.qos_for(e2)
    assert own is not None and (own.profile, own.meter_id) == ("silver", 2)  # the endpoint's own wins
    assert inherited is not None and inherited.profile == "gold"

    model.attach_qos("gold", "e1")  # a new profile for the same target keeps its meter
    assert (model.qos_attachments["e1"].profile, model.qos_attachments["e1"].meter_id) == ("gold", 2)

    assert model.detach_qos("e1") == Touched(networks={"blue/web"}, endpoints={"e1"}, nodes={"n1"})
    assert model.qos_for(e1) == model.qos_attachments["blue/web"]
    model.attach_qos("silver", "e2")
    assert model.qos_attachments["e2"].meter_id == 2  # the freed meter id is reused
    assert model.detach_qos("blue/web") == everyone
    assert model.qos_for(e1) is None


def test_removing_an_endpoint_drops_its_qos() -> None:
    model = populated()
    model.add_qos("gold", rate_kbps=1000, burst_kb=100)
    model.attach_qos("gold", "e2")
    model.remove_endpoint("e2")
    assert model.qos_attachments == {}
    model.attach_qos("gold", "e1")
    assert model.qos_attachments["e1"].meter_id == 1


@pytest.mark.parametrize(
    ("call", "path", "message"),
    [
        (lambda m: m.attach_qos("bronze", "e1", path="qos[0]"), "qos[0]", "unknown QoS profile 'bronze'"),
        (lambda m: m.attach_qos("gold", "e9", path="qos[0]"), "qos[0].applies_to", "'e9' is neither a network"),
        (lambda m: m.detach_qos("e1", path="qos[0]"), "qos[0]", "no QoS profile is attached to 'e1'"),
        (lambda m: m.add_qos("gold", rate_kbps=1, burst_kb=1, path="qos[1]"), "qos[1].name", "already exists"),
        (lambda m: m.add_qos("x", rate_kbps=1, burst_kb=0, path="qos[1]"), "qos[1].burst_kb", "(kbit) 0 is outside"),
    ],
)
def test_qos_refusals(call: Any, path: str, message: str) -> None:
    model = populated()
    model.add_qos("gold", rate_kbps=1000, burst_kb=100)
    before = snapshot(model)
    with pytest.raises(ValidationError) as caught:
        call(model)
    assert caught.value.path == path
    assert message in caught.value.message
    assert snapshot(model) == before


# --- properties: any sequence of adds and removes ----------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from(NETWORKS),
            st.sampled_from(NODES),
            st.none() | st.integers(0, 255),  # a static IP: index into the subnet, gateway and broadcast included
            st.none() | st.integers(0, 8),  # a static MAC: one of the network's derived MACs, to provoke clashes
        ),
        st.tuples(st.just("remove"), st.integers(0, 1000)),
    ),
    max_size=60,
)


def lowest_free(used: set[int], first: int) -> int:
    value = first
    while value in used:
        value += 1
    return value


def add_checked(model: Model, name: str, network: str, node: str, ip: int | None, mac: int | None) -> bool:
    """Add an endpoint; a refusal must leave no trace, a success must take the lowest free ofport and number."""
    net = model.networks[network]
    hosts = list(net.subnet)
    want_ip = None if ip is None else str(hosts[ip % len(hosts)])
    want_mac = None if mac is None else int_to_mac(endpoint_mac(net.id, net.subnet[mac % net.subnet.num_addresses]))
    ofports = {e.ofport for e in model.endpoints_by_node[node].values()}
    nums = {e.num for e in model.endpoints.values()}
    before = snapshot(model)
    try:
        endpoint = model.add_endpoint(name, network=network, node=node, ip=want_ip, mac=want_mac)
    except ValidationError as error:
        assert error.path.startswith("endpoint.")
        assert snapshot(model) == before
        return False
    assert endpoint.ofport == lowest_free(ofports, FIRST_ENDPOINT_OFPORT)
    assert endpoint.num == lowest_free(nums, 1)
    return True


def check_invariants(model: Model, *, static_macs: bool) -> None:
    endpoints = list(model.endpoints.values())
    for e in endpoints:
        net = model.networks[e.network]
        assert e.ip in net.subnet and e.ip != net.gateway
        assert FIRST_ENDPOINT_OFPORT <= e.ofport <= LAST_OFPORT
        assert model.endpoints_by_network[e.network][e.id] is e and model.endpoints_by_node[e.node][e.id] is e
    assert sum(map(len, model.endpoints_by_network.values())) == sum(map(len, model.endpoints_by_node.values()))
    assert sum(map(len, model.endpoints_by_node.values())) == len(endpoints)
    for network in model.networks:
        members = [e for e in endpoints if e.network == network]
        assert unique([e.ip for e in members]) and unique([e.mac for e in members])
    for node in model.nodes:
        members = [e for e in endpoints if e.node == node]
        assert unique([e.ofport for e in members]) and unique([e.port_name for e in members])
    assert unique([e.num for e in endpoints])
    if not static_macs:
        assert unique([e.mac for e in endpoints])
    assert counts(model.hosts) == {n: dict(Counter(e.node for e in endpoints if e.network == n)) for n in NETWORKS}
    assert counts(model.tenant_nodes) == {
        t: dict(Counter(e.node for e in endpoints if e.tenant == t)) for t in model.tenants
    }


def unique(values: list[object]) -> bool:
    return len(set(values)) == len(values)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_any_sequence_keeps_the_model_consistent(ops: list[tuple[Any, ...]]) -> None:
    model = build()
    static_macs = False
    for step, op in enumerate(ops):
        if op[0] == "add":
            _, network, node, ip, mac = op
            added = add_checked(model, f"e{step}", network, node, ip, mac)
            static_macs |= added and mac is not None
        elif model.endpoints:
            model.remove_endpoint(sorted(model.endpoints)[op[1] % len(model.endpoints)])
        check_invariants(model, static_macs=static_macs)


@settings(max_examples=50, deadline=None)
@given(operations)
def test_any_sequence_is_deterministic(ops: list[tuple[Any, ...]]) -> None:
    def replay() -> dict[str, Endpoint]:
        model = build()
        for step, op in enumerate(ops):
            if op[0] == "add":
                add_checked(model, f"e{step}", *op[1:])
            elif model.endpoints:
                model.remove_endpoint(sorted(model.endpoints)[op[1] % len(model.endpoints)])
        return dict(model.endpoints)

    assert replay() == replay()


def test_pool_exhaustion_is_a_pool_exhausted_error() -> None:
    model = populated()
    with pytest.raises(PoolExhausted):
        model.add_endpoint("x", network="red/tiny", node="n2")


def test_network_ids_increase_and_wrap_to_the_lowest_free_only_when_exhausted() -> None:
    ids = IdAllocator(1, 4, reuse=False)
    assert [ids.take("id") for _ in range(3)] == [1, 2, 3]
    ids.give_back(1)
    ids.give_back(2)
    assert ids.take("id") == 4  # not 1
    assert ids.take("id") == 1  # exhausted above: the lowest free
    ids.claim(2, "id")
    with pytest.raises(ValidationError, match="no free id left"):
        ids.take("id")
    restored = IdAllocator(1, 10, reuse=False)
    restored.claim(2, "id")
    restored.raise_mark(6)  # the stored mark: 1, 3, 4, 5 were handed out once and released
    assert restored.take("id") == 6
    assert restored.mark == 7
