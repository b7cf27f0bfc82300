"""Conntrack and conjunctive matches in the simulated switch, pinned against OVS's semantics."""

from __future__ import annotations

import pytest

from controller.pipeline.conntrack import ICMP_INNER, Conntrack
from controller.pipeline.fields import CT_ZONE, NETWORK
from controller.pipeline.ir import (
    CT_DNAT,
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_REL,
    CT_RPL,
    CT_SNAT,
    CT_TRK,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    Conjunction,
    Ct,
    CtClear,
    Flow,
    Nat,
    Output,
    SetField,
    ct_state,
    match,
)
from controller.pipeline.simulate import Packet, SimNetwork, SimSwitch, SimulationError, Trace
from controller.pipeline.state import NodeState
from topology.model import Model

A_IP, B_IP, C_IP, NAT_IP = 0x0A01000A, 0x0A01000B, 0x0A01000C, 0xC0A80001
A_MAC, B_MAC = 0x02_00_00_00_00_0A, 0x02_00_00_00_00_0B


def tcp(src: int, dst: int, sport: int, dport: int, **extra: int) -> Packet:
    fields = {"eth_type": ETH_TYPE_IP, "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 6, "tcp_src": sport}
    fields |= {"tcp_dst": dport, "eth_dst": B_MAC if dst == B_IP else A_MAC, "ip_ttl": 64}
    return Packet(fields | extra)


def reply_to(packet: Packet) -> Packet:
    f = packet.fields
    return tcp(f["ipv4_dst"], f["ipv4_src"], f["tcp_dst"], f["tcp_src"])


# --- the tracker alone -----------------------------------------------------------------------------


def test_states_follow_a_connection_new_then_established_with_replies_marked() -> None:
    track, ct = Conntrack(), Ct(commit=True)
    first = tcp(A_IP, B_IP, 1000, 80)
    assert Conntrack().run(Ct(), 0, dict(first.fields)).state == CT_TRK | CT_NEW  # no commit: nothing kept
    assert track.run(ct, 0, dict(first.fields)).state == CT_TRK | CT_NEW
    assert track.run(Ct(), 0, dict(first.fields)).state == CT_TRK | CT_NEW  # no reply seen yet
    assert track.run(Ct(), 0, dict(reply_to(first).fields)).state == CT_TRK | CT_EST | CT_RPL
    assert track.run(Ct(), 0, dict(first.fields)).state == CT_TRK | CT_EST
    assert len(track) == 1


def icmp(src: int, dst: int, icmp_type: int, icmp_id: int = 0, **extra: int) -> dict[str, int]:
    fields = {"eth_type": ETH_TYPE_IP, "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 1, "icmp_type": icmp_type}
    return fields | {"icmp_code": 0, "icmp_id": icmp_id, "ip_ttl": 64} | extra


def test_an_echo_is_keyed_by_its_identifier_and_a_request_the_other_way_is_new() -> None:
    track = Conntrack()
    assert track.run(Ct(commit=True), 0, icmp(B_IP, A_IP, 8, 7)).state == CT_TRK | CT_NEW
    assert track.run(Ct(), 0, icmp(A_IP, B_IP, 0, 7)).state == CT_TRK | CT_EST | CT_RPL
    assert track.run(Ct(), 0, icmp(B_IP, A_IP, 8, 7)).state == CT_TRK | CT_EST
    # A's own echo request, even with B's identifier, is no reply: a connection of its own
    assert track.run(Ct(), 0, icmp(A_IP, B_IP, 8, 7)).state == CT_TRK | CT_NEW
    assert track.run(Ct(), 0, icmp(A_IP, B_IP, 8, 9)).state == CT_TRK | CT_NEW
    # a reply with another identifier, or with no request at all, belongs to nothing
    assert track.run(Ct(), 0, icmp(A_IP, B_IP, 0, 8)).state == CT_TRK | CT_INV
    assert track.run(Ct(commit=True), 0, icmp(A_IP, C_IP, 0, 7)).state == CT_TRK | CT_INV
    assert len(track) == 1
    # a packet without icmp_type is an echo request
    plain = {"eth_type": ETH_TYPE_IP, "ipv4_src": A_IP, "ipv4_dst": B_IP, "ip_proto": 1}
    assert track.run(Ct(commit=True), 0, plain).state == CT_TRK | CT_NEW
    assert track.run(Ct(), 0, icmp(B_IP, A_IP, 0, 0)).state == CT_TRK | CT_EST | CT_RPL


def test_an_icmp_error_about_a_tracked_connection_is_related_and_others_are_invalid() -> None:
    track = Conntrack()
    first = tcp(A_IP, B_IP, 1000, 80)
    track.run(Ct(commit=True, exec_=(SetField("ct_mark", 5),)), 1, dict(first.fields))
    inner = dict(zip(ICMP_INNER, (6, A_IP, B_IP, 1000, 80), strict=True))
    unreachable = icmp(C_IP, A_IP, 3, **inner)  # from a router on the way, about A's packet
    result = track.run(Ct(commit=True), 1, unreachable)
    assert (result.state, result.mark) == (CT_TRK | CT_REL | CT_RPL, 5)
    # about a packet of the reply direction: related, original direction
    reply_inner = dict(zip(ICMP_INNER, (6, B_IP, A_IP, 80, 1000), strict=True))
    assert track.run(Ct(), 1, icmp(A_IP, B_IP, 11, **reply_inner)).state == CT_TRK | CT_REL
    # about another connection, in another zone, or with no embedded header: invalid, and nothing committed
    other = dict(zip(ICMP_INNER, (6, A_IP, B_IP, 1001, 80), strict=True))
    assert track.run(Ct(commit=True), 1, icmp(C_IP, A_IP, 3, **other)).state == CT_TRK | CT_INV
    assert track.run(Ct(), 2, unreachable).state == CT_TRK | CT_INV
    assert track.run(Ct(), 1, icmp(C_IP, A_IP, 3)).state == CT_TRK | CT_INV
    assert len(track) == 1


def test_what_cannot_be_tracked_is_invalid() -> None:
    arp = {"eth_type": ETH_TYPE_ARP, "arp_op": 1}
    assert Conntrack().run(Ct(commit=True), 0, arp).state == CT_TRK | CT_INV


def test_identical_tuples_in_two_zones_never_meet() -> None:
    track = Conntrack()
    first = tcp(A_IP, B_IP, 1000, 80)
    track.run(Ct(commit=True), 1, dict(first.fields))
    assert track.run(Ct(), 2, dict(reply_to(first).fields)).state == CT_TRK | CT_NEW
    assert track.run(Ct(), 1, dict(reply_to(first).fields)).state == CT_TRK | CT_EST | CT_RPL


def test_snat_rewrites_the_source_and_un_nats_replies() -> None:
    track = Conntrack()
    snat = Ct(commit=True, nat=Nat("src", NAT_IP, None, 5000, 5001))
    out = dict(tcp(A_IP, B_IP, 1000, 80).fields)
    assert track.run(snat, 0, out).state == CT_TRK | CT_NEW | CT_SNAT
    assert (out["ipv4_src"], out["tcp_src"], out["ipv4_dst"]) == (NAT_IP, 5000, B_IP)
    back = dict(tcp(B_IP, NAT_IP, 80, 5000).fields)
    assert track.run(Ct(nat=Nat()), 0, back).state == CT_TRK | CT_EST | CT_RPL | CT_DNAT
    assert (back["ipv4_dst"], back["tcp_dst"], back["ipv4_src"]) == (A_IP, 1000, B_IP)
    # a second client gets the next port; a third finds the range full
    other = dict(tcp(A_IP + 1, B_IP, 1000, 80).fields)
    track.run(snat, 0, other)
    assert other["tcp_src"] == 5001
    with pytest.raises(RuntimeError, match=r"every port of 5000\.\.5001 is taken in zone 0"):
        track.run(snat, 0, dict(tcp(A_IP + 2, B_IP, 1000, 80).fields))
    # a later packet of the first connection is translated again; without nat it is left alone
    again = dict(tcp(A_IP, B_IP, 1000, 80).fields)
    assert track.run(Ct(nat=Nat()), 0, again).state & CT_SNAT and again["ipv4_src"] == NAT_IP
    plain = dict(tcp(A_IP, B_IP, 1000, 80).fields)
    assert not track.run(Ct(), 0, plain).state & CT_SNAT and plain["ipv4_src"] == A_IP


def test_dnat_rewrites_the_destination_and_replies_come_from_the_service_address() -> None:
    track = Conntrack()
    out = dict(tcp(A_IP, NAT_IP, 1000, 80).fields)
    assert track.run(Ct(commit=True, nat=Nat("dst", B_IP, None, 8080)), 3, out).state == CT_TRK | CT_NEW | CT_DNAT
    assert (out["ipv4_dst"], out["tcp_dst"]) == (B_IP, 8080)
    back = dict(tcp(B_IP, A_IP, 8080, 1000).fields)
    assert track.run(Ct(nat=Nat()), 3, back).state == CT_TRK | CT_EST | CT_RPL | CT_SNAT
    assert (back["ipv4_src"], back["tcp_src"]) == (NAT_IP, 80)


def test_commit_exec_sets_the_connection_mark_and_label() -> None:
    track = Conntrack()
    first = tcp(A_IP, B_IP, 1000, 80)
    ct = Ct(commit=True, exec_=(SetField("ct_mark", 0x10), SetField("ct_label", 1 << 100)))
    assert (track.run(ct, 0, dict(first.fields)).mark, track.run(Ct(), 0, dict(first.fields)).label) == (0x10, 1 << 100)
    masked = Ct(commit=True, exec_=(SetField("ct_mark", 0x1, 0x3),))
    assert track.run(masked, 0, dict(reply_to(first).fields)).mark == 0x11


# --- the switch: recirculation, state in later tables -------------------------------------------------


A_PORT, B_PORT = 5, 6


def firewall(*, commit: bool = True, zone_of_b: int = 1) -> list[Flow]:
    """A may open connections to B; B only answers. The zone is the network register."""
    return [
        Flow("classify", 100, match(in_port=A_PORT), (SetField("reg0", 1),), goto="egress_policy"),
        Flow("classify", 100, match(in_port=B_PORT), (SetField("reg0", zone_of_b),), goto="egress_policy"),
        Flow(
            "egress_policy",
            300,
            match(ct_state=ct_state(trk=False), eth_type=ETH_TYPE_IP),
            (Ct(zone=CT_ZONE, table="l3_gateway"), Output(99)),  # the output never happens: recirculated
            goto="l2",
        ),
        Flow(
            "l3_gateway",
            200,
            match(ct_state=ct_state(trk=True, new=True), ipv4_src=A_IP),
            (Ct(commit=commit, zone=CT_ZONE),),
            goto="l2",
        ),
        Flow("l3_gateway", 200, match(ct_state=ct_state(trk=True, est=True)), goto="l2"),
        Flow("l3_gateway", 100, ()),  # anything else: dropped
        Flow("l2", 100, match(eth_dst=B_MAC), (Output(B_PORT),)),
        Flow("l2", 100, match(eth_dst=A_MAC), (Output(A_PORT),)),
    ]


def send(switch: SimSwitch, packet: Packet, in_port: int) -> tuple[list[int], Trace]:
    trace = Trace()
    outputs = switch.process(packet, in_port, {}, trace)
    return [port for port, _packet, _meta in outputs], trace


def test_replies_of_an_allowed_connection_pass_and_new_ones_from_the_answering_side_do_not() -> None:
    switch = SimSwitch("n1", NodeState.flat(firewall()))
    opening = tcp(A_IP, B_IP, 1000, 80)
    assert send(switch, tcp(B_IP, A_IP, 80, 1000), B_PORT)[0] == []  # before A opened it: new from B
    ports, trace = send(switch, opening, A_PORT)
    assert ports == [B_PORT]
    assert [h.detail for h in trace.hops if h.table == "conntrack"] == ["zone 1: +new+trk", "zone 1: +new+trk commit"]
    assert send(switch, reply_to(opening), B_PORT)[0] == [A_PORT]
    assert send(switch, tcp(B_IP, A_IP, 81, 1000), B_PORT)[0] == []  # another tuple: new from B
    assert send(switch, opening, A_PORT)[0] == [B_PORT]


def test_without_commit_the_reply_is_new_and_dropped() -> None:
    switch = SimSwitch("n1", NodeState.flat(firewall(commit=False)))
    opening = tcp(A_IP, B_IP, 1000, 80)
    assert send(switch, opening, A_PORT)[0] == [B_PORT]
    assert send(switch, reply_to(opening), B_PORT)[0] == []


def test_a_reply_in_another_zone_is_a_new_connection() -> None:
    switch = SimSwitch("n1", NodeState.flat(firewall(zone_of_b=2)))
    opening = tcp(A_IP, B_IP, 1000, 80)
    assert send(switch, opening, A_PORT)[0] == [B_PORT]
    assert send(switch, reply_to(opening), B_PORT)[0] == []


def test_ct_without_a_table_leaves_the_state_later_tables_see_and_ct_clear_forgets_it() -> None:
    flows = [
        Flow("classify", 100, (), (Ct(commit=True),), goto="l2"),
        Flow("l2", 100, match(ct_state=(0, CT_TRK)), (Output(1),)),  # not tracked, as OVS reports
        Flow("l2", 90, (), (Output(2),)),
    ]
    switch = SimSwitch("n1", NodeState.flat(flows))
    assert send(switch, tcp(A_IP, B_IP, 1, 2), A_PORT)[0] == [1]
    recirculated = [
        Flow("classify", 100, (), (Ct(table="l2"),)),
        Flow("l2", 100, match(ct_state=(CT_TRK, CT_TRK)), (CtClear(),), goto="output"),
        Flow("output", 100, match(ct_state=(0, CT_TRK)), (Output(3),)),
    ]
    assert send(SimSwitch("n1", NodeState.flat(recirculated)), tcp(A_IP, B_IP, 1, 2), A_PORT)[0] == [3]


def test_the_zone_comes_from_the_register_field() -> None:
    flows = [
        Flow("classify", 100, (), (SetField("reg0", 0x70007),), goto="qos"),
        Flow("qos", 100, (), (Ct(zone=NETWORK, table="l2"),)),
        Flow("l2", 100, match(ct_zone=7), (Output(1),)),
    ]
    ports, trace = send(SimSwitch("n1", NodeState.flat(flows)), tcp(A_IP, B_IP, 1, 2), A_PORT)
    assert ports == [1] and "zone 7: +new+trk" in [h.detail for h in trace.hops]


def test_the_mark_of_a_committed_connection_is_seen_after_recirculation() -> None:
    flows = [
        Flow("classify", 100, (), (Ct(table="l2"),)),
        Flow("l2", 100, match(ct_state=ct_state(new=True)), (Ct(commit=True, exec_=(SetField("ct_mark", 5),)),)),
        Flow("l2", 100, match(ct_state=ct_state(new=False), ct_mark=5), (Output(7),)),
    ]
    switch = SimSwitch("n1", NodeState.flat(flows))
    opening = tcp(A_IP, B_IP, 1, 2)
    assert send(switch, opening, A_PORT)[0] == []
    assert send(switch, reply_to(opening), B_PORT)[0] == [7]


def test_snat_and_its_reply_across_a_simulated_network() -> None:
    model = Model()
    model.add_node("node1", tunnel_ip="192.168.50.1")
    model.add_tenant("t")
    model.add_network("t", "n", encap="vxlan", segment=5001, subnet="10.1.0.0/24")
    for endpoint in ("a", "b"):
        model.add_endpoint(endpoint, network="t/n", node="node1")
    a, b = model.endpoints["a"], model.endpoints["b"]
    flows = [
        Flow("classify", 100, match(in_port=a.ofport), (Ct(commit=True, nat=Nat("src", NAT_IP)), Output(b.ofport))),
        Flow("classify", 100, match(in_port=b.ofport), (Ct(nat=Nat()), Output(a.ofport))),
    ]
    network = SimNetwork(model, {"node1": NodeState.flat(flows)})
    there = network.send("a", tcp(A_IP, B_IP, 1000, 80))
    assert there.delivered_to == ["b"] and there.delivered[0].packet.fields["ipv4_src"] == NAT_IP
    back = network.send("b", tcp(B_IP, NAT_IP, 80, 1000))
    assert back.delivered_to == ["a"]
    assert (back.delivered[0].packet.fields["ipv4_dst"], back.delivered[0].packet.fields["ipv4_src"]) == (A_IP, B_IP)


# --- conjunctive matches ---------------------------------------------------------------------------


def conj_flows(*, ordinary_priority: int | None = None) -> list[Flow]:
    """conj 7: (from A or from A+1) and (to port 80 or 443); conj_id=7 goes to port 1, the miss to port 9."""
    flows = [
        Flow("classify", 50, match(eth_type=ETH_TYPE_IP, ipv4_src=A_IP), (Conjunction(7, 1, 2),)),
        Flow("classify", 50, match(eth_type=ETH_TYPE_IP, ipv4_src=A_IP + 1), (Conjunction(7, 1, 2),)),
        Flow("classify", 50, match(ip_proto=6, tcp_dst=80), (Conjunction(7, 2, 2), Conjunction(8, 1, 2))),
        Flow("classify", 50, match(ip_proto=6, tcp_dst=443), (Conjunction(7, 2, 2),)),
        Flow("classify", 40, match(conj_id=7), (Output(1),)),
        Flow("classify", 40, match(conj_id=8), (Output(2),)),  # clause 2 of 8 never matches
        Flow("classify", 0, (), (Output(9),)),
    ]
    if ordinary_priority is not None:
        flows.append(Flow("classify", ordinary_priority, match(ipv4_dst=B_IP), (Output(3),)))
    return flows


@pytest.mark.parametrize(
    ("packet", "port"),
    [
        (tcp(A_IP, B_IP, 1, 80), 1),
        (tcp(A_IP + 1, B_IP, 1, 443), 1),
        (tcp(A_IP + 2, B_IP, 1, 80), 9),  # clause 1 unmatched: the conjunction flows do not match alone
        (tcp(A_IP, B_IP, 1, 22), 9),  # clause 2 unmatched
    ],
)
def test_a_conjunction_needs_every_clause(packet: Packet, port: int) -> None:
    assert send(SimSwitch("n1", NodeState.flat(conj_flows())), packet, A_PORT)[0] == [port]


def test_the_trace_names_the_clause_flows() -> None:
    _ports, trace = send(SimSwitch("n1", NodeState.flat(conj_flows())), tcp(A_IP, B_IP, 1, 80), A_PORT)
    detail = trace.hops[-1].detail
    assert "conjunction 7 at priority 50" in detail and "1/2 priority=50" in detail and "2/2 priority=50" in detail
    assert trace.hops[-1].flow == conj_flows()[4]


def test_an_ordinary_flow_of_higher_priority_beats_the_conjunction_and_a_lower_one_does_not() -> None:
    packet = tcp(A_IP, B_IP, 1, 80)
    assert send(SimSwitch("n1", NodeState.flat(conj_flows(ordinary_priority=60))), packet, A_PORT)[0] == [3]
    assert send(SimSwitch("n1", NodeState.flat(conj_flows(ordinary_priority=45))), packet, A_PORT)[0] == [1]


def test_clauses_at_different_priorities_do_not_combine() -> None:
    flows = conj_flows()
    flows[3] = Flow("classify", 49, flows[3].match, flows[3].actions)
    assert send(SimSwitch("n1", NodeState.flat(flows)), tcp(A_IP, B_IP, 1, 443), A_PORT)[0] == [9]


def test_a_conjunction_mixed_with_other_actions_is_refused() -> None:
    bad = Flow("classify", 50, (), (Conjunction(7, 1, 2), Output(1)))
    with pytest.raises(SimulationError, match="conjunction mixed with other actions"):
        SimSwitch("n1", NodeState.flat([bad]))
