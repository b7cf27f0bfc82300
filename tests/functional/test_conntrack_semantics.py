"""The simulator's conntrack, NAT and conjunctive matches say what OVS's say: the same flows and packets
through a real userspace br-int (`packet-out`, then which flow's counter moved) and through `SimSwitch`."""

from __future__ import annotations

import ipaddress
import re
import struct

from controller.openflow.ofctl import render_state
from controller.pipeline.ir import ETH_TYPE_IP, Conjunction, Ct, Flow, Nat, ct_state, match
from controller.pipeline.simulate import Packet, SimSwitch, Trace
from controller.pipeline.state import NodeState
from lab.ovs import OvsNode

A, B, C = 0x0A000001, 0x0A000002, 0x0A000003
UDP = {"eth_type": ETH_TYPE_IP, "ip_proto": 17}

FLOWS = [
    Flow("classify", 10, match(**UDP, ct_state=ct_state(trk=False)), (Ct(zone=1, table="port_security"),), cookie=1),
    Flow(
        "classify",
        20,
        match(**UDP, ipv4_src=C, ct_state=ct_state(trk=False)),
        (Ct(zone=2, table="port_security"),),
        cookie=2,
    ),
    Flow(
        "port_security", 10, match(**UDP, ct_state=ct_state(trk=True, new=True), ipv4_src=A), (Ct(True, 1),), cookie=3
    ),
    Flow(
        "port_security", 10, match(**UDP, ct_state=ct_state(trk=True, new=True), ipv4_src=C), (Ct(True, 2),), cookie=4
    ),
    Flow("port_security", 10, match(**UDP, ct_state=ct_state(trk=True, new=True), ipv4_src=B), cookie=5),
    Flow("port_security", 10, match(**UDP, ct_state=ct_state(trk=True, est=True, rpl=False)), cookie=6),
    Flow("port_security", 10, match(**UDP, ct_state=ct_state(trk=True, est=True, rpl=True)), cookie=7),
    Flow("port_security", 1, (), cookie=8),
]
# (source, destination, source port, destination port) and the port_security flow it must meet.
SEQUENCE = [
    ((A, B, 1000, 53), 3),  # A opens: +new, committed
    ((A, B, 1000, 53), 3),  # still +new: no reply seen yet
    ((B, A, 53, 1000), 7),  # the reply: +est+rpl
    ((A, B, 1000, 53), 6),  # now +est
    ((B, A, 54, 1000), 5),  # another tuple from B: +new
    ((C, B, 1000, 53), 4),  # C opens in zone 2
    ((B, C, 53, 1000), 5),  # B's reply is tracked in zone 1, where it is new
]


def udp_frame(src: int, dst: int, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 12, 0) + b"ping"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, *(
        ipaddress.IPv4Address(a).packed for a in (src, dst)
    ))  # fmt: skip
    total = sum(struct.unpack("!10H", ip))
    total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + ip[12:]
    return bytes.fromhex("020000000002020000000001") + struct.pack("!H", ETH_TYPE_IP) + ip + udp


def counts(node: OvsNode) -> dict[int, int]:
    dump = node.ofctl("dump-flows")
    return {int(c, 16): int(n) for c, n in re.findall(r"cookie=(0x[0-9a-f]+),.*?n_packets=(\d+)", dump)}


def test_ct_states_on_open_vswitch_and_in_the_simulator_agree(ovs_node: OvsNode) -> None:
    run_both(ovs_node, FLOWS, SEQUENCE)


NAT_IP = 0xC0A80A01
NAT_FLOWS = [
    Flow(
        "classify",
        10,
        match(**UDP, ipv4_src=A, ct_state=ct_state(trk=False)),
        (Ct(commit=True, zone=1, table="port_security", nat=Nat("src", NAT_IP, None, 5000)),),
        cookie=1,
    ),
    Flow(
        "classify",
        10,
        match(**UDP, ipv4_src=B, ct_state=ct_state(trk=False)),
        (Ct(zone=1, table="port_security", nat=Nat()),),
        cookie=2,
    ),
    Flow(
        "port_security",
        10,
        match(**UDP, ipv4_src=NAT_IP, udp_src=5000, ct_state=ct_state(trk=True, new=True, snat=True)),
        cookie=3,
    ),
    Flow(
        "port_security",
        10,
        match(**UDP, ipv4_dst=A, udp_dst=1000, ct_state=ct_state(trk=True, est=True, rpl=True, dnat=True)),
        cookie=4,
    ),
    Flow(
        "port_security",
        10,
        match(**UDP, ipv4_src=NAT_IP, udp_src=5000, ct_state=ct_state(trk=True, est=True, rpl=False, snat=True)),
        cookie=5,
    ),
    Flow("port_security", 1, (), cookie=6),
]
NAT_SEQUENCE = [
    ((A, B, 1000, 53), 3),  # SNATed to NAT_IP:5000 on commit, seen so after recirculation
    ((B, NAT_IP, 53, 5000), 4),  # the reply, un-NATed back to A:1000
    ((A, B, 1000, 53), 5),  # established, translated again
]


def run_both(ovs_node: OvsNode, flows: list[Flow], sequence: list) -> None:
    ovs_node.vsctl(
        "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "protocols=OpenFlow13",
        "fail_mode=secure",
    )  # fmt: skip
    flows_file = ovs_node.dir / "ct-flows.txt"
    flows_file.write_text(render_state(flows, [], [], names=False))
    ovs_node.ofctl("add-flows", str(flows_file))
    switch = SimSwitch("n1", NodeState.flat(flows))
    met_on_ovs, met_in_sim = [], []
    for (src, dst, sport, dport), _expected in sequence:
        before = counts(ovs_node)
        ovs_node.ofctl("packet-out", "LOCAL", "resubmit(,0)", udp_frame(src, dst, sport, dport).hex())
        after = counts(ovs_node)
        met_on_ovs.append([c for c in after if after[c] != before.get(c, 0) and c > 2])
        trace = Trace()
        fields = {**UDP, "ipv4_src": src, "ipv4_dst": dst, "udp_src": sport, "udp_dst": dport}
        switch.process(Packet(fields), 1, {}, trace)
        met_in_sim.append([h.flow.cookie for h in trace.hops if h.flow is not None and h.flow.cookie > 2])
    assert met_on_ovs == [[expected] for _packet, expected in sequence]
    assert met_in_sim == met_on_ovs


def test_nat_on_open_vswitch_and_in_the_simulator_agree(ovs_node: OvsNode) -> None:
    run_both(ovs_node, NAT_FLOWS, NAT_SEQUENCE)


CONJ_FLOWS = [
    Flow("classify", 50, match(**UDP, ipv4_src=A), (Conjunction(7, 1, 2),), cookie=1),
    Flow("classify", 50, match(**UDP, udp_dst=80), (Conjunction(7, 2, 2),), cookie=2),
    Flow("classify", 50, match(**UDP, udp_dst=22), (Conjunction(7, 2, 2),), cookie=2),
    Flow("classify", 50, match(conj_id=7, **UDP), cookie=3),
    Flow("classify", 60, match(**UDP, ipv4_src=A, udp_dst=22), cookie=4),
    Flow("classify", 0, (), cookie=5),
]
CONJ_SEQUENCE = [
    ((A, B, 1000, 80), 3),  # both clauses: the conj_id flow
    ((A, B, 1000, 22), 4),  # both clauses, but an ordinary flow of higher priority matches
    ((C, B, 1000, 80), 5),  # clause 1 unmatched: the conjunction flows do not match by themselves
]


def test_conjunctive_matches_on_open_vswitch_and_in_the_simulator_agree(ovs_node: OvsNode) -> None:
    run_both(ovs_node, CONJ_FLOWS, CONJ_SEQUENCE)
