"""The simulated OpenFlow 1.3 switch and network, on hand-built states.

The simulator is what proves compiled state right, so its own semantics are pinned here against small,
explicit flow tables rather than against the compiler.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from controller.pipeline import simulate
from controller.pipeline.fields import NETWORK, OUT_PORT
from controller.pipeline.ir import (
    ETH_TYPE_IP,
    OFPP_IN_PORT,
    OFPVID_NONE,
    OFPVID_PRESENT,
    Action,
    DecTtl,
    Flow,
    Group,
    Meter,
    Move,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
    match,
)
from controller.pipeline.simulate import MAX_EVENTS, Packet, SimNetwork, SimSwitch, SimulationError, Trace
from controller.pipeline.state import NodeState
from controller.pipeline.tables import PIPELINE
from topology.model import FIRST_ENDPOINT_OFPORT, TUNNEL_OFPORT, UPLINK_OFPORT, Model

NET, OUT = NETWORK.register, OUT_PORT.register
POD_PORT = FIRST_ENDPOINT_OFPORT
SRC_MAC, DST_MAC, OTHER_MAC = 0x02_00_00_00_00_0A, 0x02_00_00_00_00_0B, 0x02_00_00_00_00_0C
VNI, VLAN = 5001, 101


def ip_packet(**extra: int) -> Packet:
    fields = {
        "eth_src": SRC_MAC,
        "eth_dst": DST_MAC,
        "eth_type": ETH_TYPE_IP,
        "ipv4_src": 0x0A01000A,
        "ipv4_dst": 0x0A01000B,
        "ip_proto": 6,
        "tcp_dst": 80,
        "ip_ttl": 64,
    }
    fields.update(extra)
    return Packet(fields)


def run(
    flows: list[Flow],
    packet: Packet | None = None,
    *,
    in_port: int = POD_PORT,
    groups: tuple[Group, ...] = (),
    meters: tuple[Meter, ...] = (),
    tunnel: dict[str, int] | None = None,
) -> tuple[list[tuple[int, Packet, dict[str, int]]], Trace]:
    switch = SimSwitch("n1", NodeState.flat(flows, groups, meters))
    trace = Trace()
    outputs = switch.process(packet or ip_packet(), in_port, tunnel or {}, trace)
    return outputs, trace


def ports(outputs: list[tuple[int, Packet, dict[str, int]]]) -> list[int]:
    return [port for port, _packet, _meta in outputs]


def classify_to(goto: str, *actions: Action, priority: int = 100, **fields: int) -> Flow:
    return Flow("classify", priority, match(in_port=POD_PORT, **fields), tuple(actions), goto=goto)


# --- one switch ------------------------------------------------------------------------------------


def test_highest_priority_wins_regardless_of_insertion_order() -> None:
    low = Flow("classify", 10, match(in_port=POD_PORT), (Output(3),))
    high = Flow("classify", 20, match(in_port=POD_PORT, eth_dst=DST_MAC), (Output(4),))
    for flows in ([low, high], [high, low]):
        outputs, trace = run(flows)
        assert ports(outputs) == [4]
        assert trace.hops[-1].flow is high
    # When the higher flow does not match, the lower one does.
    outputs, _ = run([low, high], ip_packet(eth_dst=OTHER_MAC))
    assert ports(outputs) == [3]


def test_masked_match_compares_only_masked_bits() -> None:
    flow = Flow("classify", 10, match(eth_dst=(0x01_00_00_00_00_00, 0x01_00_00_00_00_00)), (Output(3),))
    assert ports(run([flow], ip_packet(eth_dst=0xFF_FF_FF_FF_FF_FF))[0]) == [3]
    assert ports(run([flow], ip_packet(eth_dst=DST_MAC))[0]) == []


def test_match_on_absent_field_does_not_match() -> None:
    flow = Flow("classify", 10, match(arp_op=1), (Output(3),))
    outputs, trace = run([flow])
    assert outputs == []
    assert trace.drops == [f"n1: {PIPELINE.by_name['classify'].miss_reason}"]


def test_empty_first_table_drops_with_its_miss_reason() -> None:
    outputs, trace = run([])
    assert outputs == []
    assert [(h.table, h.detail, h.flow) for h in trace.hops] == [("classify", "miss: no flow", None)]
    assert trace.drops == [f"n1: {PIPELINE.by_name['classify'].miss_reason}"]
    assert trace.verdict == "dropped"


def test_miss_in_a_later_table_names_that_table() -> None:
    outputs, trace = run([classify_to("l2")])
    assert outputs == []
    assert [h.table for h in trace.hops] == ["classify", "l2"]
    assert trace.drops == [f"n1: {PIPELINE.by_name['l2'].miss_reason}"]
    assert "l2" in trace.reason


def test_explicit_priority_zero_drop_reports_the_miss_reason() -> None:
    # The compiled pipeline makes every miss explicit; the trace should still say why.
    flows = [classify_to("l2"), Flow("l2", 0, ())]
    outputs, trace = run(flows)
    assert outputs == []
    assert trace.drops == [f"n1: {PIPELINE.by_name['l2'].miss_reason}"]
    assert trace.hops[-1].flow is flows[1]


def test_goto_continues_in_the_named_table_and_skips_the_rest() -> None:
    flows = [
        classify_to("l2", SetField(NET, 7)),
        # Skipped by the goto: would send to port 9 if visited.
        Flow("port_security", 100, (), (Output(9),), goto="arp_responder"),
        Flow("l2", 100, match(**{NET: 7}, eth_dst=DST_MAC), (SetField(OUT, 5),), goto="output"),
        Flow("output", 100, (), (OutputReg(OUT),)),
    ]
    outputs, trace = run(flows)
    assert ports(outputs) == [5]
    assert [h.table for h in trace.hops] == ["classify", "l2", "output"]
    assert trace.drops == []


def test_output_sends_the_packet_as_it_is_at_that_point() -> None:
    flow = Flow("classify", 10, (), (Output(3), SetField("eth_dst", OTHER_MAC), Output(4)))
    outputs, _ = run([flow])
    assert [(port, pkt.fields["eth_dst"]) for port, pkt, _meta in outputs] == [(3, DST_MAC), (4, OTHER_MAC)]


def test_output_copies_are_independent_of_later_changes_in_the_pipeline() -> None:
    flows = [
        Flow("classify", 10, (), (Output(3), SetField(NET, 1)), goto="l2"),
        Flow("l2", 10, (), (SetField("eth_src", OTHER_MAC), Output(4))),
    ]
    outputs, _ = run(flows)
    assert [(port, pkt.fields["eth_src"]) for port, pkt, _meta in outputs] == [(3, SRC_MAC), (4, OTHER_MAC)]


def test_output_to_the_ingress_port_is_suppressed() -> None:
    flow = Flow("classify", 10, (), (Output(POD_PORT), Output(3)))
    assert ports(run([flow])[0]) == [3]


def test_output_in_port_sends_back_out_the_ingress_port() -> None:
    flow = Flow("classify", 10, (), (Output(OFPP_IN_PORT),))
    assert ports(run([flow])[0]) == [POD_PORT]
    assert ports(run([flow], in_port=7)[0]) == [7]


def test_output_reg_reads_the_register_and_suppresses_the_ingress_port() -> None:
    flows = [
        Flow("classify", 10, (), (SetField(OUT, POD_PORT),), goto="output"),
        Flow("output", 10, (), (OutputReg(OUT),)),
    ]
    assert ports(run(flows)[0]) == []
    assert ports(run(flows, in_port=3)[0]) == [POD_PORT]


def test_group_all_gives_every_bucket_its_own_copy() -> None:
    group = Group(
        9,
        (
            (SetField("eth_dst", OTHER_MAC), Output(3)),
            (Output(4),),  # must not see the first bucket's rewrite
            (Output(POD_PORT),),  # the ingress port: suppressed, as for a plain output
        ),
    )
    flow = Flow("classify", 10, (), (ToGroup(9), Output(5)))
    outputs, _ = run([flow], groups=(group,))
    assert [(port, pkt.fields["eth_dst"]) for port, pkt, _meta in outputs] == [
        (3, OTHER_MAC),
        (4, DST_MAC),
        (5, DST_MAC),  # actions after the group see the packet the group got, not a bucket's
    ]


def test_group_buckets_do_not_leak_registers_or_tunnel_fields() -> None:
    group = Group(9, ((SetField(OUT, 3), SetField("tunnel_id", VNI), Output(TUNNEL_OFPORT)),))
    flows = [
        Flow("classify", 10, (), (ToGroup(9),), goto="l2"),
        Flow("l2", 20, match(**{OUT: 0}), (Output(6),)),  # reg3 is still zero after the group
        Flow("l2", 10, (), (Output(7),)),
    ]
    outputs, _ = run(flows, groups=(group,))
    assert [(port, meta) for port, _pkt, meta in outputs] == [(TUNNEL_OFPORT, {"tunnel_id": VNI}), (6, {})]


def test_push_vlan_and_set_vid_are_matched_downstream() -> None:
    flows = [
        Flow("classify", 10, (), (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | VLAN)), goto="l2"),
        Flow("l2", 20, match(vlan_vid=OFPVID_PRESENT | VLAN), (Output(3),)),
        Flow("l2", 10, match(vlan_vid=OFPVID_NONE), (Output(4),)),
    ]
    outputs, trace = run(flows)
    assert ports(outputs) == [3]
    assert outputs[0][1].vlans == (VLAN,)
    assert trace.hops[-1].flow is flows[1]


def test_untagged_packet_matches_vlan_vid_none_only() -> None:
    flows = [
        Flow("classify", 20, match(vlan_vid=OFPVID_PRESENT | VLAN), (Output(3),)),
        Flow("classify", 10, match(vlan_vid=OFPVID_NONE), (Output(4),)),
    ]
    assert ports(run(flows)[0]) == [4]


def test_set_vlan_vid_on_untagged_packet_is_an_error() -> None:
    flow = Flow("classify", 10, (), (SetField("vlan_vid", OFPVID_PRESENT | VLAN), Output(3)))
    with pytest.raises(SimulationError):
        run([flow])


def test_pop_vlan_removes_the_outer_tag() -> None:
    flows = [
        Flow("classify", 10, match(vlan_vid=OFPVID_PRESENT | VLAN), (PopVlan(),), goto="l2"),
        Flow("l2", 20, match(vlan_vid=OFPVID_NONE), (Output(3),)),
        Flow("l2", 10, (), (Output(4),)),
    ]
    packet = ip_packet()
    packet.vlans = (VLAN,)
    outputs, _ = run(flows, packet)
    assert ports(outputs) == [3]
    assert outputs[0][1].vlans == ()
    assert packet.vlans == (VLAN,)  # the injected packet itself is never modified


def test_pop_vlan_on_double_tagged_exposes_the_inner_tag() -> None:
    flows = [
        Flow("classify", 10, (), (PopVlan(),), goto="l2"),
        Flow("l2", 10, match(vlan_vid=OFPVID_PRESENT | 7), (Output(3),)),
    ]
    packet = ip_packet()
    packet.vlans = (VLAN, 7)
    outputs, _ = run(flows, packet)
    assert ports(outputs) == [3]
    assert outputs[0][1].vlans == (7,)


def test_dec_ttl_decrements() -> None:
    flow = Flow("classify", 10, (), (DecTtl(), Output(3)))
    outputs, trace = run([flow], ip_packet(ip_ttl=2))
    assert [(port, pkt.fields["ip_ttl"]) for port, pkt, _meta in outputs] == [(3, 1)]
    assert trace.drops == []


def test_dec_ttl_to_zero_drops() -> None:
    flows = [Flow("classify", 10, (), (Output(4), DecTtl(), Output(3)), goto="l2"), Flow("l2", 10, (), (Output(5),))]
    outputs, trace = run(flows, ip_packet(ip_ttl=1))
    # The copy sent before dec_ttl leaves; nothing after it does, not even in later tables.
    assert ports(outputs) == [4]
    assert trace.drops == ["n1: TTL expired"]
    assert [h.table for h in trace.hops] == ["classify"]


def test_move_copies_a_field() -> None:
    flow = Flow("classify", 10, (), (Move("eth_src", "eth_dst"), Output(3)))
    outputs, _ = run([flow])
    fields = outputs[0][1].fields
    assert (fields["eth_src"], fields["eth_dst"]) == (SRC_MAC, SRC_MAC)


def test_move_into_a_register_is_matched_downstream() -> None:
    flows = [
        Flow("classify", 10, (), (Move("ipv4_dst", "reg5"),), goto="l2"),
        Flow("l2", 10, match(reg5=0x0A01000B), (Output(3),)),
    ]
    assert ports(run(flows)[0]) == [3]


def test_meters_are_counted() -> None:
    flows = [
        Flow("classify", 10, (), goto="qos"),
        Flow("qos", 10, (), goto="l2", meter=7),
        Flow("l2", 10, (), (Output(3),), meter=8),
    ]
    meters = (Meter(7, 1000, 100), Meter(8, 2000, 100))
    outputs, trace = run(flows, meters=meters)
    assert ports(outputs) == [3]  # a meter never drops in the simulator
    assert trace.meters == {("n1", 7): 1, ("n1", 8): 1}


def test_missing_meter_is_an_error() -> None:
    flow = Flow("classify", 10, (), (Output(3),), meter=7)
    with pytest.raises(SimulationError, match="meter 7"):
        run([flow], meters=(Meter(8, 1000, 100),))


def test_missing_group_is_an_error() -> None:
    flow = Flow("classify", 10, (), (ToGroup(9),))
    with pytest.raises(SimulationError, match="group 9"):
        run([flow], groups=(Group(8, ((Output(3),),)),))


def test_two_matching_flows_of_equal_priority_are_an_error() -> None:
    flows = [
        Flow("classify", 10, match(in_port=POD_PORT), (Output(3),)),
        Flow("classify", 10, match(eth_dst=DST_MAC), (Output(4),)),
    ]
    with pytest.raises(SimulationError, match="priority 10"):
        run(flows)


def test_equal_priority_flows_that_do_not_overlap_are_fine() -> None:
    flows = [
        Flow("classify", 10, match(in_port=POD_PORT), (Output(3),)),
        Flow("classify", 10, match(in_port=POD_PORT + 1), (Output(4),)),
    ]
    assert ports(run(flows)[0]) == [3]
    assert ports(run(flows, in_port=POD_PORT + 1)[0]) == [4]


def test_registers_start_at_zero_for_every_packet() -> None:
    switch = SimSwitch(
        "n1",
        NodeState.flat(
            [
                Flow("classify", 20, match(reg5=7), (Output(4),)),
                Flow("classify", 10, (), (SetField("reg5", 7), Output(3))),
            ]
        ),
    )
    for _ in range(2):
        assert ports(switch.process(ip_packet(), POD_PORT, {}, Trace())) == [3]


def test_tunnel_metadata_is_matched_and_set() -> None:
    flow = Flow(
        "classify",
        10,
        match(in_port=TUNNEL_OFPORT, tunnel_id=VNI),
        (SetField("tun_ipv4_dst", 0x01020304), Output(3)),
    )
    outputs, _ = run([flow], in_port=TUNNEL_OFPORT, tunnel={"tunnel_id": VNI})
    assert [(port, meta) for port, _pkt, meta in outputs] == [(3, {"tunnel_id": VNI, "tun_ipv4_dst": 0x01020304})]
    assert run([flow], in_port=TUNNEL_OFPORT, tunnel={"tunnel_id": VNI + 1})[0] == []


# --- the network -----------------------------------------------------------------------------------


def make_model(*nodes: tuple[str, bool], endpoints: tuple[tuple[str, str], ...]) -> Model:
    """Nodes (name, has uplink) with tunnel IPs 192.168.50.N, one VXLAN network, endpoints (id, node)."""
    model = Model()
    for i, (name, uplink) in enumerate(nodes, start=1):
        model.add_node(name, tunnel_ip=f"192.168.50.{i}", uplink="eth1" if uplink else None)
    model.add_tenant("t")
    model.add_network("t", "n", encap="vxlan", segment=VNI, subnet="10.1.0.0/24")
    for endpoint_id, node in endpoints:
        model.add_endpoint(endpoint_id, network="t/n", node=node)
    return model


def tunnel_ip(model: Model, node: str) -> int:
    return int(model.nodes[node].tunnel_ip)


def send_to_tunnel(destination: int, *extra: Action) -> Flow:
    return Flow(
        "classify",
        100,
        match(in_port=POD_PORT),
        (*extra, SetField("tunnel_id", VNI), SetField("tun_ipv4_dst", destination), Output(TUNNEL_OFPORT)),
    )


def deliver_from(in_port: int, port: int, *, priority: int = 100, **fields: int) -> Flow:
    return Flow("classify", priority, match(in_port=in_port, **fields), (Output(port),))


def test_registers_start_at_zero_on_every_switch() -> None:
    model = make_model(("node1", False), ("node2", False), endpoints=(("a", "node1"), ("b", "node2")))
    b_port = model.endpoints["b"].ofport
    states = {
        "node1": NodeState.flat([send_to_tunnel(tunnel_ip(model, "node2"), SetField("reg5", 7))]),
        "node2": NodeState.flat(
            [
                # Would win if reg5 survived the tunnel; port 77 has nothing attached.
                deliver_from(TUNNEL_OFPORT, 77, priority=200, reg5=7),
                deliver_from(TUNNEL_OFPORT, b_port, reg5=0),
            ]
        ),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.delivered_to == ["b"]
    assert trace.drops == []


def test_tunnel_goes_to_the_node_with_tun_ipv4_dst_and_keeps_tunnel_id() -> None:
    model = make_model(
        ("node1", False), ("node2", False), ("node3", False), endpoints=(("a", "node1"), ("b", "node2"), ("c", "node3"))
    )
    # node2 and node3 would both deliver a tunnelled packet with the right VNI; only node3 is addressed.
    states = {
        "node1": NodeState.flat([send_to_tunnel(tunnel_ip(model, "node3"))]),
        "node2": NodeState.flat([deliver_from(TUNNEL_OFPORT, model.endpoints["b"].ofport, tunnel_id=VNI)]),
        "node3": NodeState.flat([deliver_from(TUNNEL_OFPORT, model.endpoints["c"].ofport, tunnel_id=VNI)]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.delivered_to == ["c"]
    assert [d.node for d in trace.delivered] == ["node3"]
    wires = [h for h in trace.hops if h.table == "wire"]
    assert [(h.node, h.detail) for h in wires] == [("node1", f"vxlan vni {VNI} to node3")]


def test_tunnel_destination_sees_only_tunnel_id() -> None:
    model = make_model(("node1", False), ("node2", False), endpoints=(("a", "node1"), ("b", "node2")))
    node2 = tunnel_ip(model, "node2")
    states = {
        "node1": NodeState.flat([send_to_tunnel(node2)]),
        # tun_ipv4_dst is what the sender set; on the receiving side it is not a match field of the packet.
        "node2": NodeState.flat(
            [
                deliver_from(TUNNEL_OFPORT, 77, priority=200, tun_ipv4_dst=node2),
                deliver_from(TUNNEL_OFPORT, model.endpoints["b"].ofport, tunnel_id=VNI),
            ]
        ),
    }
    assert SimNetwork(model, states).send("a", ip_packet()).delivered_to == ["b"]


def test_unknown_tunnel_destination_is_a_drop() -> None:
    model = make_model(("node1", False), ("node2", False), endpoints=(("a", "node1"), ("b", "node2")))
    states = {
        "node1": NodeState.flat([send_to_tunnel(int(IPv4Address("192.168.99.9")))]),
        "node2": NodeState.flat([deliver_from(TUNNEL_OFPORT, model.endpoints["b"].ofport)]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.verdict == "dropped"
    assert trace.delivered == []
    assert trace.drops == ["node1: tunnel to an unknown node"]


def test_tunnel_to_a_node_without_a_switch_is_a_drop() -> None:
    model = make_model(("node1", False), ("node2", False), endpoints=(("a", "node1"),))
    states = {"node1": NodeState.flat([send_to_tunnel(tunnel_ip(model, "node2"))])}
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.drops == ["node1: tunnel to an unknown node"]


def test_uplink_hub_floods_to_every_other_uplinked_node() -> None:
    model = make_model(
        ("node1", True),
        ("node2", True),
        ("node3", True),
        ("node4", False),
        endpoints=(("a", "node1"), ("a2", "node1"), ("b", "node2"), ("c", "node3"), ("d", "node4")),
    )
    ofport = {e.id: e.ofport for e in model.endpoints.values()}
    states = {
        "node1": NodeState.flat(
            [
                deliver_from(ofport["a"], UPLINK_OFPORT),
                deliver_from(UPLINK_OFPORT, ofport["a2"]),  # the hub must not send it back to node1
            ]
        ),
        "node2": NodeState.flat([deliver_from(UPLINK_OFPORT, ofport["b"])]),
        "node3": NodeState.flat([deliver_from(UPLINK_OFPORT, ofport["c"])]),
        "node4": NodeState.flat([deliver_from(UPLINK_OFPORT, ofport["d"])]),  # no uplink: never reached
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert sorted(trace.delivered_to) == ["b", "c"]
    assert trace.drops == []


def test_uplink_output_on_a_node_without_uplink_goes_nowhere() -> None:
    model = make_model(("node1", False), ("node2", True), endpoints=(("a", "node1"), ("b", "node2")))
    states = {
        "node1": NodeState.flat([deliver_from(model.endpoints["a"].ofport, UPLINK_OFPORT)]),
        "node2": NodeState.flat([deliver_from(UPLINK_OFPORT, model.endpoints["b"].ofport)]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.delivered == []
    assert trace.drops == [f"node1: output to port {UPLINK_OFPORT}, where nothing is attached"]


def test_fabric_link_delivers_to_the_peer_port() -> None:
    model = make_model(("s1", False), ("s2", False), endpoints=(("a", "s1"), ("b", "s2")))
    model.add_link("s1", "to-s2", "s2", "to-s1")
    s1_port, s2_port = model.link_ports("s1")["to-s2"], model.link_ports("s2")["to-s1"]
    states = {
        "s1": NodeState.flat([deliver_from(model.endpoints["a"].ofport, s1_port)]),
        "s2": NodeState.flat([deliver_from(s2_port, model.endpoints["b"].ofport)]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.delivered_to == ["b"]
    assert [h.detail for h in trace.hops if h.table == "wire"] == [f"link port {s1_port} to s2 port {s2_port}"]


def test_forwarding_loop_is_detected_not_followed_forever() -> None:
    model = make_model(("node1", True), ("node2", True), endpoints=(("a", "node1"),))
    # Each switch reflects whatever arrives on the uplink back into it: a ping-pong between the two nodes.
    reflect = Flow("classify", 100, match(in_port=UPLINK_OFPORT), (Output(OFPP_IN_PORT),))
    states = {
        "node1": NodeState.flat([deliver_from(model.endpoints["a"].ofport, UPLINK_OFPORT), reflect]),
        "node2": NodeState.flat([reflect]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.verdict == "dropped"
    assert trace.drops[-1] == f"loop: more than {MAX_EVENTS} switch visits"
    # Every visit is one classify hop: the walk stopped right at the limit.
    assert sum(1 for h in trace.hops if h.table == "classify") == MAX_EVENTS


def test_broadcast_storm_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate, "MAX_EVENTS", 200)
    model = make_model(("node1", True), ("node2", True), ("node3", True), endpoints=(("a", "node1"),))
    # Flooding back to the hub from three nodes doubles the copies at every visit.
    reflect = Flow("classify", 100, match(in_port=UPLINK_OFPORT), (Output(OFPP_IN_PORT),))
    states = {
        "node1": NodeState.flat([deliver_from(model.endpoints["a"].ofport, UPLINK_OFPORT), reflect]),
        "node2": NodeState.flat([reflect]),
        "node3": NodeState.flat([reflect]),
    }
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.drops[-1] == "loop: more than 200 switch visits"


def test_delivery_to_the_sender_itself_counts() -> None:
    model = make_model(("node1", False), endpoints=(("a", "node1"),))
    states = {"node1": NodeState.flat([Flow("classify", 10, (), (Output(OFPP_IN_PORT),))])}
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.delivered_to == ["a"]
    assert trace.verdict == "delivered"


def test_trace_reason_without_any_drop() -> None:
    model = make_model(("node1", False), endpoints=(("a", "node1"),))
    # Output to the ingress port is suppressed silently: no copy leaves, and no table dropped it.
    states = {"node1": NodeState.flat([Flow("classify", 10, (), (Output(model.endpoints["a"].ofport),))])}
    trace = SimNetwork(model, states).send("a", ip_packet())
    assert trace.verdict == "dropped"
    assert trace.reason == "no copy left any switch"
