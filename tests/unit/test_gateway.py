"""The gateway port in the compiled pipeline, traced in the simulator: the cluster network to and from the
host, egress SNAT of two tenants with the very same addresses, and what the gateway refuses."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.pipeline.compile import Compiler
from controller.pipeline.fields import TO_GATEWAY_MARK
from controller.pipeline.ir import ETH_TYPE_IP
from controller.pipeline.simulate import Packet, SimNetwork, gateway_endpoint
from controller.pipeline.state import ChangeSet, NodeState, apply
from tests.unit.test_diff import assert_same, random_change
from tests.unit.topologies import SHAPES
from topology.errors import ValidationError
from topology.gateway import GatewayConfig, node_gateway_mac
from topology.ipam import int_to_mac
from topology.model import GATEWAY_OFPORT, GATEWAY_PORT_NAME, Model, Network, Touched, touched_by

OUTSIDE = int(IPv4Address("203.0.113.10"))
CONFIG = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/16"))


def ip(text: str) -> int:
    return int(IPv4Address(text))


def tcp(src: int, dst: int, sport: int, dport: int, eth_dst: int, eth_src: int = 0x0E_00_00_00_12_34) -> Packet:
    fields = {"eth_type": ETH_TYPE_IP, "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 6, "ip_ttl": 64}
    return Packet(fields | {"tcp_src": sport, "tcp_dst": dport, "eth_dst": eth_dst, "eth_src": eth_src})


def pod_mac(model: Model, endpoint: str) -> int:
    return model.endpoints[endpoint].mac


def cluster_model() -> Model:
    model = Model()
    model.configure_gateway(CONFIG)
    model.add_node("n1", tunnel_ip="192.168.50.1")
    model.add_node("n2", tunnel_ip="192.168.50.2")
    model.add_node("n3", tunnel_ip="192.168.50.3")
    model.add_tenant("default")
    model.add_network("default", "pods", encap="vxlan", segment=4000, subnet="10.244.0.0/16")
    model.add_endpoint("p1", network="default/pods", node="n1")
    model.add_endpoint("p2", network="default/pods", node="n2")
    for tenant, vni in (("red", 5001), ("blue", 5002)):
        model.add_tenant(tenant)
        model.add_network(tenant, "net", encap="vxlan", segment=vni, subnet="10.1.0.0/24", nat_outgoing=True)
        model.add_endpoint(f"{tenant}-a", network=f"{tenant}/net", node="n1", ip="10.1.0.5")
    return model


@pytest.fixture
def model() -> Model:
    return cluster_model()


def network_of(model: Model) -> SimNetwork:
    return SimNetwork(model, Compiler(model).compile_all())


def test_the_model_plans_the_gateway_port_and_keeps_the_cluster_subnet_unique(model: Model) -> None:
    assert model.planned_ports("n3")[GATEWAY_PORT_NAME] == GATEWAY_OFPORT
    assert model.networks["default/pods"].nat_outgoing and model.networks["red/net"].nat_outgoing
    with pytest.raises(ValidationError, match="overlaps the cluster subnet"):
        model.add_network("red", "other", encap="vxlan", segment=5003, subnet="10.244.8.0/24")
    model.add_network("red", "off", encap="vxlan", segment=5004, subnet="10.2.0.0/24")
    assert not model.networks["red/off"].nat_outgoing
    # every node holds the cluster network through its gateway port, pods or not
    assert set(model.hosts["default/pods"]) == {"n1", "n2", "n3"}


def test_host_reaches_local_and_remote_pods_and_pods_reach_every_node(model: Model) -> None:
    sim = network_of(model)
    cluster = model.networks["default/pods"]
    p1, p2 = model.endpoints["p1"], model.endpoints["p2"]
    node1_ip = ip("192.168.50.1")
    probe = tcp(node1_ip, int(p1.ip), 40000, 8080, cluster.gateway_mac)
    assert sim.send_from("n1", GATEWAY_OFPORT, probe).delivered_to == ["p1"]
    # node n3 has no pod: its host still reaches a pod on n2
    n3_ip = ip("192.168.50.3")
    assert sim.send_from("n3", GATEWAY_OFPORT, tcp(n3_ip, int(p2.ip), 1, 80, cluster.gateway_mac)).delivered_to == [
        "p2"
    ]
    # the reply from p2 goes to n3's gateway port through the overlay
    reply = sim.send("p2", tcp(int(p2.ip), n3_ip, 80, 1, cluster.gateway_mac, p2.mac))
    assert reply.delivered_to == [gateway_endpoint("n3")]
    assert reply.delivered[0].packet.fields["eth_dst"] == node_gateway_mac(IPv4Address("192.168.50.3"))
    last_l2 = [hop.flow for hop in reply.hops if hop.table == "l2"][-1]
    assert last_l2 is not None and TO_GATEWAY_MARK.set() in last_l2.actions  # for the ingress policy
    # anything else leaves by the sender's own node, unchanged (the host's iptables do the rest)
    out = sim.send("p1", tcp(int(p1.ip), OUTSIDE, 5000, 443, cluster.gateway_mac, p1.mac))
    assert out.delivered_to == [gateway_endpoint("n1")]
    assert out.delivered[0].packet.fields["ipv4_src"] == int(p1.ip)


def test_a_new_endpoint_may_not_take_a_node_gateway_mac(model: Model) -> None:
    n1_mac = int_to_mac(node_gateway_mac(IPv4Address("192.168.50.1")))
    with pytest.raises(ValidationError, match="the nodes' gateway port MACs"):
        model.add_endpoint("thief", network="default/pods", node="n1", mac=n1_mac)
    assert "thief" not in model.endpoints


@pytest.mark.parametrize("encap", ["vxlan", "vlan"])
@pytest.mark.parametrize(("on", "of"), [("n1", "n1"), ("n3", "n1"), ("n1", "n2")])
def test_a_stored_pod_with_a_node_gateway_mac_takes_none_of_the_nodes_traffic(encap: str, on: str, of: str) -> None:
    """One restored from a store written before the model refused such MACs (the controller restores an
    endpoint with its number): the nodes' gateway ports still get what is theirs, and it gets nothing."""
    model = Model()
    model.configure_gateway(CONFIG)
    for index in (1, 2, 3):
        model.add_node(f"n{index}", tunnel_ip=f"192.168.50.{index}", uplink="eth1")
    model.add_tenant("default")
    model.add_network("default", "pods", encap=encap, segment=400, subnet="10.244.0.0/16")
    for index in (1, 2, 3):
        model.add_endpoint(f"p{index}", network="default/pods", node=f"n{index}")
    stolen = int_to_mac(node_gateway_mac(model.nodes[of].tunnel_ip))
    model.add_endpoint("thief", network="default/pods", node=on, mac=stolen, num=900)
    sim = network_of(model)
    gateway = model.networks["default/pods"].gateway_mac
    for sender in ("p1", "p2", "p3"):
        pod = model.endpoints[sender]
        for target in ("n1", "n2", "n3"):
            probe = tcp(int(pod.ip), int(model.nodes[target].tunnel_ip), 5000, 22, gateway, pod.mac)
            reached = sim.send(sender, probe).delivered_to
            # A VLAN cluster network has no way to another node's gateway port yet: dropped, never the thief.
            want = [gateway_endpoint(target)] if encap == "vxlan" or pod.node == target else []
            assert reached == want, f"{sender} -> {target}'s host"


def test_two_tenants_with_the_same_five_tuple_leave_with_their_own_transit_address(model: Model) -> None:
    sim = network_of(model)
    sources = {}
    for tenant in ("red", "blue"):
        network = model.networks[f"{tenant}/net"]
        trace = sim.send(
            f"{tenant}-a", tcp(ip("10.1.0.5"), OUTSIDE, 40000, 80, network.gateway_mac, pod_mac(model, f"{tenant}-a"))
        )
        assert trace.delivered_to == [gateway_endpoint("n1")], trace.drops
        sources[tenant] = trace.delivered[0].packet.fields["ipv4_src"]
        assert sources[tenant] == int(CONFIG.transit_ip(network))
    assert sources["red"] != sources["blue"]
    for tenant in ("red", "blue"):
        back = tcp(OUTSIDE, sources[tenant], 80, 40000, node_gateway_mac(IPv4Address("192.168.50.1")))
        trace = sim.send_from("n1", GATEWAY_OFPORT, back)
        assert trace.delivered_to == [f"{tenant}-a"], trace.drops
        assert trace.delivered[0].packet.fields["ipv4_dst"] == ip("10.1.0.5")


def test_an_isolated_tenant_reaches_no_cluster_pod_node_or_transit_address(model: Model) -> None:
    sim = network_of(model)
    red = model.networks["red/net"]
    for target in ("10.244.0.2", "192.168.50.1", "192.168.50.2", "100.64.0.9", "10.1.0.77"):
        trace = sim.send("red-a", tcp(ip("10.1.0.5"), ip(target), 40000, 80, red.gateway_mac, pod_mac(model, "red-a")))
        assert trace.delivered_to == [], target
    # an unsolicited packet to a transit address from the host is not un-NATed and goes nowhere
    unsolicited = tcp(OUTSIDE, int(CONFIG.transit_ip(red)), 80, 40001, 0x0A)
    assert sim.send_from("n1", GATEWAY_OFPORT, unsolicited).delivered_to == []


def test_nat_outgoing_off_means_no_egress_and_incremental_equals_full(model: Model) -> None:
    compiler = Compiler(model)
    compiler.compile_all()
    compiler.update(model.set_nat_outgoing("red/net", False))
    full = Compiler(model).compile_all()
    for name, state in full.items():
        assert set(state.flows()) == set(compiler.states[name].flows()), name
    sim = SimNetwork(model, compiler.states)
    red = model.networks["red/net"]
    assert (
        sim.send(
            "red-a", tcp(ip("10.1.0.5"), OUTSIDE, 40000, 80, red.gateway_mac, pod_mac(model, "red-a"))
        ).delivered_to
        == []
    )
    blue = model.networks["blue/net"]
    assert sim.send(
        "blue-a", tcp(ip("10.1.0.5"), OUTSIDE, 40000, 80, blue.gateway_mac, pod_mac(model, "blue-a"))
    ).delivered_to == [gateway_endpoint("n1")]


def test_nat_outgoing_needs_a_cluster_network_setting() -> None:
    model = Model()
    model.add_tenant("t")
    with pytest.raises(ValidationError, match="nat_outgoing"):
        model.add_network("t", "n", encap="vxlan", segment=7, subnet="10.0.0.0/24", nat_outgoing=True)


def test_node_ports_open_only_those_ports_of_the_own_node_and_incremental_equals_full(model: Model) -> None:
    compiler = Compiler(model)
    compiler.compile_all()
    compiler.update(model.set_nat_outgoing("red/net", False))
    compiler.update(model.set_node_ports("red/net", ["tcp/53", "udp/53"]))
    full = Compiler(model).compile_all()
    for name, state in full.items():
        assert set(state.flows()) == set(compiler.states[name].flows()), name
    sim = SimNetwork(model, compiler.states)
    red, blue = model.networks["red/net"], model.networks["blue/net"]

    def reaches(pod: str, network: Network, dst: str, dport: int) -> bool:
        packet = tcp(ip("10.1.0.5"), ip(dst), 40000, dport, network.gateway_mac, pod_mac(model, pod))
        return sim.send(pod, packet).delivered_to == [gateway_endpoint("n1")]

    assert reaches("red-a", red, "192.168.50.1", 53)  # its own node (n1), the opened port
    assert not reaches("red-a", red, "192.168.50.1", 54)
    assert not reaches("red-a", red, "192.168.50.2", 53)  # another node's address
    assert not reaches("red-a", red, "203.0.113.10", 80)  # nat_outgoing is off
    assert not reaches("blue-a", blue, "192.168.50.1", 53)  # nothing opened to blue
    compiler.update(model.set_node_ports("red/net", "none"))
    sim = SimNetwork(model, compiler.states)
    assert not reaches("red-a", red, "192.168.50.1", 53)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tcp/53", "want a list"),
        (["tcp/0"], r"node_ports\[0\]: port 0"),
        (["icmp/1"], r"node_ports\[0\]: want PROTOCOL/PORT"),
        (["tcp/53", 53], r"node_ports\[1\]"),
    ],
)
def test_bad_node_ports_name_the_field_and_change_nothing(model: Model, value: object, problem: str) -> None:
    model.set_node_ports("red/net", ["udp/53"])
    with pytest.raises(ValidationError, match=problem):
        model.set_node_ports("red/net", value)
    with pytest.raises(ValidationError, match="reach every node address"):
        model.set_node_ports("default/pods", ["tcp/53"])
    assert model.networks["red/net"].node_ports == ("udp/53",)


def gateway_change(model: Model, rng: random.Random, step: int) -> Touched | None:
    """A random change of what the gateway sections depend on, or any other model change."""
    kind = rng.choice(["nat", "nat", "ports", "ports", "cluster-pod", "other", "other"])
    nat_able = [k for k in sorted(model.networks) if not k.startswith("default/")]
    if kind == "nat" and nat_able:
        key = rng.choice(nat_able)
        return model.set_nat_outgoing(key, not model.networks[key].nat_outgoing)
    if kind == "ports" and nat_able:
        ports = rng.sample(["tcp/53", "udp/53", "tcp/10250", "udp/123"], rng.randint(0, 3))
        return model.set_node_ports(rng.choice(nat_able), ports)
    if kind == "cluster-pod" and "default/pods" in model.networks:  # a random change may remove it
        return touched_by(model.add_endpoint(f"g{step}", network="default/pods", node=rng.choice(sorted(model.nodes))))
    return random_change(model, rng, step)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(sorted(SHAPES)), seed=st.integers(0, 10_000))
def test_incremental_updates_equal_a_full_recompile_with_the_gateway(shape: str, seed: int) -> None:
    model = SHAPES[shape](seed % 5 + 1)
    rng = random.Random(seed)
    compiler = Compiler(model)
    installed = {name: NodeState.flat() for name in model.nodes}
    for name, initial in compiler.update(Touched(everything=True)).items():
        installed[name] = apply(initial, installed[name])
    setup = model.configure_gateway(CONFIG)
    setup.merge(model.add_tenant("default"))
    setup.merge(model.add_network("default", "pods", encap="vxlan", segment=4000, subnet="10.244.0.0/16"))
    for step in range(11):
        touched = setup if step == 0 else gateway_change(model, rng, step)
        if touched is None:
            continue
        changes = compiler.update(touched)
        fresh = Compiler(model).compile_all()
        for name in model.nodes:
            assert_same(compiler.states[name], fresh[name], f"step {step}: {name} incremental vs full")
            installed[name] = apply(changes.get(name, ChangeSet()), installed[name])
            assert_same(installed[name], fresh[name], f"step {step}: {name} switch after the change set")
        assert_no_unsolicited_transit_delivery(model, compiler.states, step)


def assert_no_unsolicited_transit_delivery(model: Model, states: dict[str, NodeState], step: int) -> None:
    """From any node's gateway port, a packet for a transit address without a connection reaches no pod."""
    if model.gateway is None or not model.nodes:
        return
    sim = SimNetwork(model, states)
    for network in model.networks.values():
        if not (network.nat_outgoing or network.node_ports):
            continue
        for node in model.nodes.values():
            packet = tcp(OUTSIDE, int(CONFIG.transit_ip(network)), 80, 40001, node_gateway_mac(node.tunnel_ip))
            trace = sim.send_from(node.name, GATEWAY_OFPORT, packet)
            assert trace.delivered_to == [], f"step {step}: {network.key} on {node.name}: {trace.delivered_to}"


def test_a_network_overlapping_the_transit_subnet_is_refused(model: Model) -> None:
    with pytest.raises(ValidationError, match=r"network\.subnet: .* overlaps the transit subnet"):
        model.add_network("red", "t", encap="vxlan", segment=5003, subnet="100.64.0.0/24")
    bad = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("10.244.0.0/24"))
    with pytest.raises(ValidationError, match=r"transit_subnet: .* overlaps the cluster subnet"):
        Model().configure_gateway(bad)
    fresh = Model()
    fresh.add_tenant("red")
    fresh.add_network("red", "t", encap="vxlan", segment=5003, subnet="100.64.0.0/24")
    with pytest.raises(ValidationError, match=r"transit_subnet: .* overlaps 100\.64\.0\.0/24"):
        fresh.configure_gateway(CONFIG)


def test_a_packet_for_a_transit_address_conntrack_did_not_un_nat_never_reaches_a_pod(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: even a pod whose address is the network's own transit address (which the model
    refuses) gets no packet for it from the gateway port without a connection."""
    monkeypatch.setattr(Model, "_check_cluster_subnet", lambda self, path, key, net: None)
    model.add_network("red", "t", encap="vxlan", segment=5003, subnet="100.64.0.0/24")
    red = model.networks["red/net"]
    transit = CONFIG.transit_ip(red)
    model.add_endpoint("red-t", network="red/t", node="n1", ip=str(transit))
    sim = network_of(model)
    unsolicited = tcp(OUTSIDE, int(transit), 80, 40001, node_gateway_mac(IPv4Address("192.168.50.1")))
    trace = sim.send_from("n1", GATEWAY_OFPORT, unsolicited)
    assert trace.delivered_to == []
    assert [hop.table for hop in trace.hops][-1] == "l3_gateway"
    # a real reply still comes back to the pod that opened the connection
    out = sim.send("red-a", tcp(ip("10.1.0.5"), OUTSIDE, 40002, 80, red.gateway_mac, pod_mac(model, "red-a")))
    assert out.delivered_to == [gateway_endpoint("n1")]
    back = tcp(OUTSIDE, int(transit), 80, 40002, node_gateway_mac(IPv4Address("192.168.50.1")))
    assert sim.send_from("n1", GATEWAY_OFPORT, back).delivered_to == ["red-a"]
