"""IR -> os-ken messages and IR -> ovs-ofctl text, checked against os-ken's own parser and the real ovs-ofctl.

ovs-ofctl is part of the test environment on purpose: a test that skipped without it would prove nothing.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_parser import MsgBase, header

from controller.openflow import messages, ofctl
from controller.pipeline import cookies
from controller.pipeline.cookies import Feature
from controller.pipeline.fields import FLAG_FROM_REMOTE, FLAGS, NETWORK, OUT_PORT, TENANT
from controller.pipeline.ir import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    IP_PROTO,
    MULTICAST_BIT,
    OFPP_IN_PORT,
    OFPVID_NONE,
    OFPVID_PRESENT,
    Conjunction,
    Ct,
    CtClear,
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
from controller.pipeline.tables import PIPELINE, TABLES
from tests.unit.ct_flows import ct_flows

NET, TEN, FLG, OUT = NETWORK.register, TENANT.register, FLAGS.register, OUT_PORT.register
POD_PORT, TUNNEL_PORT, UPLINK_PORT = 1, 10, 11
POD_MAC, PEER_MAC, REMOTE_MAC, UPLINK_MAC = (
    0x02_00_00_00_01_0A,
    0x02_00_00_00_01_0B,
    0x02_00_00_00_01_0C,
    0x02_00_00_00_01_0D,
)
GW_MAC = 0x02_00_00_00_00_01
POD_IP, PEER_IP, GW_IP, SUBNET, SUBNET_MASK = 0x0A000005, 0x0A000106, 0x0A000001, 0x0A000000, 0xFFFFFF00
NODE_IP, VNI, VLAN = 0xC0A80002, 100, 100


def _c(feature: Feature, object_id: int = 1) -> int:
    return cookies.cookie(feature, object_id)


def representative_flows() -> list[Flow]:
    """One or more flows per table, together using every declared match field and every action kind."""
    to_port = (SetField(NET, 1), SetField(TEN, 7))
    flows = [
        Flow("classify", 100, match(in_port=POD_PORT), to_port, goto="port_security", cookie=_c(Feature.PORT)),
        Flow(
            "classify",
            100,
            match(in_port=TUNNEL_PORT, tunnel_id=VNI),
            (*to_port, SetField(FLG, FLAG_FROM_REMOTE)),
            goto="l2",
            cookie=_c(Feature.SEGMENT),
        ),
        Flow(
            "classify",
            100,
            match(in_port=UPLINK_PORT, vlan_vid=OFPVID_PRESENT | VLAN),
            (PopVlan(), *to_port, SetField(FLG, FLAG_FROM_REMOTE)),
            goto="l2",
            cookie=_c(Feature.SEGMENT),
        ),
        Flow("classify", 90, match(in_port=UPLINK_PORT, vlan_vid=OFPVID_NONE), cookie=_c(Feature.SEGMENT)),
        Flow(
            "port_security",
            100,
            match(in_port=POD_PORT, eth_src=POD_MAC, eth_type=ETH_TYPE_IP, ipv4_src=POD_IP),
            goto="arp_responder",
            cookie=_c(Feature.PORT),
        ),
        Flow(
            "port_security",
            100,
            match(in_port=POD_PORT, eth_src=POD_MAC, eth_type=ETH_TYPE_ARP, arp_spa=POD_IP, arp_sha=POD_MAC),
            goto="arp_responder",
            cookie=_c(Feature.PORT),
        ),
        Flow(
            "arp_responder",
            100,
            match(**{NET: 1}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=GW_IP),
            (
                Move("eth_src", "eth_dst"),
                SetField("eth_src", GW_MAC),
                SetField("arp_op", ARP_REPLY),
                Move("arp_sha", "arp_tha"),
                Move("arp_spa", "arp_tpa"),
                SetField("arp_sha", GW_MAC),
                SetField("arp_spa", GW_IP),
                Output(OFPP_IN_PORT),
            ),
            cookie=_c(Feature.GATEWAY),
        ),
        Flow(
            "arp_responder",
            90,
            match(**{NET: 1}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REPLY),
            (SetField("eth_dst", BROADCAST_MAC), SetField("arp_tha", 0), SetField("arp_tpa", 0)),
            goto="qos",
            cookie=_c(Feature.ARP),
        ),
        Flow("qos", 100, match(in_port=POD_PORT, **{NET: 1}), meter=1, goto="egress_policy", cookie=_c(Feature.METER)),
        Flow(
            "egress_policy",
            100,
            match(
                **{NET: (1, 0xFFFF)},
                **{TEN: 7},
                eth_type=ETH_TYPE_IP,
                ipv4_src=(SUBNET, SUBNET_MASK),
                ipv4_dst=PEER_IP,
                ip_proto=IP_PROTO["tcp"],
                tcp_dst=80,
            ),
            goto="l3_gateway",
            cookie=_c(Feature.PORT),
        ),
        Flow(
            "egress_policy",
            100,
            match(**{NET: 1}, eth_type=ETH_TYPE_IP, ip_proto=IP_PROTO["udp"], udp_dst=53),
            cookie=_c(Feature.PORT),
        ),
        Flow(
            "l3_gateway",
            100,
            match(**{NET: 1}, eth_dst=GW_MAC, eth_type=ETH_TYPE_IP),
            goto="l3_route",
            cookie=_c(Feature.GATEWAY),
        ),
        Flow(
            "l3_route",
            100,
            match(**{TEN: 7}, eth_type=ETH_TYPE_IP, ipv4_dst=PEER_IP),
            (SetField("eth_src", GW_MAC), SetField("eth_dst", PEER_MAC), SetField(NET, 2), DecTtl()),
            goto="l2",
            cookie=_c(Feature.ROUTES),
        ),
        Flow(
            "l2",
            100,
            match(**{NET: 1}, eth_dst=POD_MAC),
            (SetField(OUT, POD_PORT),),
            goto="ingress_policy",
            cookie=_c(Feature.L2),
        ),
        Flow(
            "l2",
            100,
            match(**{NET: 1}, eth_dst=REMOTE_MAC),
            (SetField("tunnel_id", VNI), SetField("tun_ipv4_dst", NODE_IP), Output(TUNNEL_PORT)),
            cookie=_c(Feature.L2),
        ),
        Flow(
            "l2",
            100,
            match(**{NET: 1}, eth_dst=UPLINK_MAC),
            (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | VLAN), Output(UPLINK_PORT)),
            cookie=_c(Feature.L2),
        ),
        Flow(
            "l2",
            90,
            match(**{NET: 1}, **{FLG: (0, FLAG_FROM_REMOTE)}, eth_dst=(MULTICAST_BIT, MULTICAST_BIT)),
            (ToGroup(1),),
            cookie=_c(Feature.SEGMENT),
        ),
        Flow(
            "ingress_policy",
            100,
            match(
                **{NET: 1, TEN: 7, OUT: POD_PORT},
                eth_type=ETH_TYPE_IP,
                ipv4_src=PEER_IP,
                ipv4_dst=(SUBNET, SUBNET_MASK),
                ip_proto=IP_PROTO["tcp"],
                tcp_dst=22,
            ),
            cookie=_c(Feature.PORT),
        ),
        Flow(
            "ingress_policy",
            100,
            match(**{NET: 1}, eth_type=ETH_TYPE_IP, ip_proto=IP_PROTO["udp"], udp_dst=53),
            goto="output",
            cookie=_c(Feature.PORT),
        ),
        Flow("output", 1, (), (OutputReg(OUT),), cookie=_c(Feature.PIPELINE)),
    ]
    return flows + PIPELINE.miss_flows(_c(Feature.PIPELINE, 0))


FLOWS = representative_flows() + ct_flows()
GROUPS = [
    Group(
        1,
        (
            (Output(POD_PORT),),
            (SetField("tunnel_id", VNI), SetField("tun_ipv4_dst", NODE_IP), Output(TUNNEL_PORT)),
            (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | VLAN), Output(UPLINK_PORT)),
        ),
    ),
    Group(2, ((Output(POD_PORT),), (Output(3),))),
]
METERS = [Meter(1, 10_000, 1_000), Meter(2, 500, 50)]
COMMANDS: tuple[messages.Command, ...] = ("add", "modify", "delete")


def _ovs_ofctl(*args: str) -> str:
    done = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ovs-ofctl {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def _decoded(output: str) -> list[str]:
    """ovs-ofctl's printed messages, one string each, with the header and xid stripped.

    Group and meter mods print over two lines; the continuation lines are joined back on.
    """
    found: list[str] = []
    for line in output.splitlines():
        if line.startswith("OFPT_"):
            found.append(re.sub(r"^OFPT_\w+ \(OF1\.3\) \(xid=0x[0-9a-f]+\):", "", line).strip())
        elif found:
            found[-1] = f"{found[-1]} {line.strip()}".strip()
    return found


def _ofp_parse(msgs: list[MsgBase], tmp_path: Path) -> list[str]:
    """What ovs-ofctl decodes from os-ken's bytes."""
    dp = messages.OfflineDatapath()
    path = tmp_path / "messages.bin"
    with path.open("wb") as out:
        for msg in msgs:
            dp.send_msg(msg)
            out.write(msg.buf)
    decoded = _decoded(_ovs_ofctl("ofp-parse", str(path)))
    assert not any("***" in text or "error" in text.lower() for text in decoded), decoded
    return decoded


def _parse_back(msg: MsgBase) -> parser.OFPFlowMod:
    """Serialize a flow mod and decode it again with os-ken's own parser."""
    msg.serialize()
    version, msg_type, msg_len, xid = header(msg.buf)
    assert (version, msg_type) == (ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD)
    return parser.OFPFlowMod.parser(messages.OfflineDatapath(), version, msg_type, msg_len, xid, bytes(msg.buf))


# --- the representative set itself ---


def test_representative_flows_fit_the_pipeline() -> None:
    for flow in FLOWS:
        PIPELINE.verify(flow)


def test_representative_flows_cover_every_declared_field_and_action() -> None:
    matched = {name for flow in FLOWS for name, _value, _mask in flow.match}
    assert matched == set().union(*(t.matches for t in TABLES))
    written = {a.field for f in FLOWS for a in f.actions if isinstance(a, SetField)}
    written |= {a.dst for f in FLOWS for a in f.actions if isinstance(a, Move)}
    written |= {e.field for f in FLOWS for a in f.actions if isinstance(a, Ct) for e in a.exec_}
    assert written == set().union(*(t.sets for t in TABLES))
    kinds = {type(a) for f in FLOWS for a in f.actions}
    assert kinds == {Output, OutputReg, SetField, PushVlan, PopVlan, ToGroup, DecTtl, Move, Ct, CtClear, Conjunction}
    assert any(f.meter is not None for f in FLOWS)
    assert any(not f.actions and f.goto is None for f in FLOWS)  # an explicit drop


# --- os-ken messages ---


@pytest.mark.parametrize("command", COMMANDS)
def test_flow_mods_serialize_and_parse_back(command: messages.Command) -> None:
    dp = messages.OfflineDatapath()
    for flow in FLOWS:
        msg = messages.flow_mod(dp, flow, command=command, round_=3)
        back = _parse_back(msg)
        assert isinstance(msg.buf, bytearray | bytes) and len(msg.buf) == back.msg_len
        assert back.table_id == PIPELINE.table_id(flow.table)
        assert back.priority == flow.priority
        assert back.cookie == cookies.with_round(flow.cookie, 3)
        assert back.command == {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT}.get(
            command, ofp.OFPFC_DELETE_STRICT
        )
        assert dict(back.match.items()) == messages.match_kwargs(flow.match)


def test_flow_mod_instructions_parse_back_in_openflow_order() -> None:
    dp = messages.OfflineDatapath()
    for flow in FLOWS:
        back = _parse_back(messages.flow_mod(dp, flow))
        kinds = [type(i) for i in back.instructions]
        expected = []
        if flow.meter is not None:
            expected.append(parser.OFPInstructionMeter)
        if flow.actions:
            expected.append(parser.OFPInstructionActions)
        if flow.goto is not None:
            expected.append(parser.OFPInstructionGotoTable)
        assert kinds == expected, flow
        for inst in back.instructions:
            if isinstance(inst, parser.OFPInstructionActions):
                assert inst.type == ofp.OFPIT_APPLY_ACTIONS
                assert len(inst.actions) == len(flow.actions)
            elif isinstance(inst, parser.OFPInstructionGotoTable):
                assert flow.goto is not None and inst.table_id == PIPELINE.table_id(flow.goto)
            else:
                assert inst.meter_id == flow.meter


def test_match_values_are_what_os_ken_expects() -> None:
    kwargs = messages.match_kwargs(
        match(eth_dst=(MULTICAST_BIT, MULTICAST_BIT), ipv4_src=(SUBNET, SUBNET_MASK), reg0=1)
    )
    assert kwargs == {
        "eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00"),
        "ipv4_src": ("10.0.0.0", "255.255.255.0"),
        "reg0": 1,
    }


def test_move_copies_the_whole_field() -> None:
    dp = messages.OfflineDatapath()
    assert messages.action(dp, Move("eth_src", "eth_dst")).n_bits == 48
    assert messages.action(dp, Move("arp_spa", "arp_tpa")).n_bits == 32
    assert messages.action(dp, Move("reg0", "reg1")).n_bits == 32
    with pytest.raises(ValueError, match=r"eth_src \(48 bits\) -> reg0 \(32 bits\)"):
        messages.action(dp, Move("eth_src", "reg0"))
    with pytest.raises(ValueError, match="vlan_vid"):
        messages.action(dp, Move("vlan_vid", "reg0"))


def test_unknown_command_names_itself() -> None:
    with pytest.raises(ValueError, match="'replace'"):
        messages.flow_mod(messages.OfflineDatapath(), FLOWS[0], command="replace")  # type: ignore[arg-type]


def test_delete_by_cookie_spans_all_tables() -> None:
    mask = cookies.ROUND_MASK | cookies.FEATURE_MASK
    back = _parse_back(
        messages.delete_by_cookie(messages.OfflineDatapath(), cookies.with_round(_c(Feature.L2), 2), mask)
    )
    assert (back.command, back.table_id) == (ofp.OFPFC_DELETE, ofp.OFPTT_ALL)
    assert (back.cookie, back.cookie_mask) == (cookies.with_round(_c(Feature.L2), 2), mask)
    assert (back.out_port, back.out_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert not back.match.items()


def test_offline_datapath_numbers_messages() -> None:
    dp = messages.OfflineDatapath(dpid=0x42)
    sent = [messages.meter_mod(dp, m) for m in METERS]
    for msg in sent:
        dp.send_msg(msg)
    assert [m.xid for m in dp.sent] == [1, 2] and dp.id == 0x42
    assert all(bytes(m.buf[4:8]) == m.xid.to_bytes(4, "big") for m in dp.sent)


# --- ovs-ofctl text, checked by the real ovs-ofctl ---


def test_numeric_text_is_accepted_by_ovs_ofctl(tmp_path: Path) -> None:
    path = tmp_path / "flows.txt"
    path.write_text(ofctl.render_state(FLOWS, [], [], names=False))
    decoded = _decoded(_ovs_ofctl("parse-flows", str(path)))
    assert len(decoded) == len(FLOWS)
    assert all(text.startswith("ADD ") for text in decoded)


def test_ovs_ofctl_reads_the_same_flows_from_text_and_from_os_ken(tmp_path: Path) -> None:
    path = tmp_path / "flows.txt"
    path.write_text(ofctl.render_state(FLOWS, [], [], names=False, round_=5))
    from_text = _decoded(_ovs_ofctl("parse-flows", str(path)))
    dp = messages.OfflineDatapath()
    from_os_ken = _ofp_parse([messages.flow_mod(dp, f, round_=5) for f in FLOWS], tmp_path)
    assert sorted(from_text) == sorted(from_os_ken)


def test_os_ken_deletes_decode_in_ovs(tmp_path: Path) -> None:
    dp = messages.OfflineDatapath()
    msgs = [messages.flow_mod(dp, f, command=c) for f in FLOWS[:3] for c in ("modify", "delete")]
    msgs.append(messages.delete_by_cookie(dp, _c(Feature.L2), cookies.FEATURE_MASK | cookies.OBJECT_MASK))
    decoded = _ofp_parse(msgs, tmp_path)
    assert [t.split()[0] for t in decoded] == ["MOD_STRICT", "DEL_STRICT"] * 3 + ["DEL"]
    assert "table:255 cookie:0x7000000000001/0xffffffffffffff" in decoded[-1]


def test_groups_parse_and_agree_with_os_ken(tmp_path: Path) -> None:
    from_text = [_decoded(_ovs_ofctl("parse-group", ofctl.group_text(g)))[0] for g in GROUPS]
    dp = messages.OfflineDatapath()
    from_os_ken = _ofp_parse([messages.group_mod(dp, g) for g in GROUPS], tmp_path)
    assert from_text == from_os_ken
    assert from_os_ken[0].startswith("ADD group_id=1,type=all,bucket=actions=output:1,bucket=actions=")
    decoded = _ofp_parse([messages.group_mod(dp, GROUPS[0], command=c) for c in ("modify", "delete")], tmp_path)
    assert decoded == [from_os_ken[0].replace("ADD", "MOD", 1), "DEL group_id=1,type=all"]


def test_meter_text_matches_what_ovs_decodes_from_os_ken(tmp_path: Path) -> None:
    # ovs-ofctl has no offline meter parser, so compare the text with its decoding of os-ken's meter mods.
    dp = messages.OfflineDatapath()
    decoded = _ofp_parse([messages.meter_mod(dp, m) for m in METERS], tmp_path)
    expected = [f"ADD {ofctl.meter_text(m)}" for m in METERS]
    # ovs prints "ADD meter=1 kbps burst bands=" and the band on its own line.
    assert [
        "ADD " + re.sub(r"\s+", ",", text.removeprefix("ADD ").replace("bands= ", "bands=")) for text in decoded
    ] == expected
    assert ofctl.meter_text(METERS[0]) == "meter=1,kbps,burst,bands=type=drop,rate=10000,burst_size=1000"
    assert _ofp_parse([messages.meter_mod(dp, METERS[0], command="delete")], tmp_path) == ["DEL meter=1 bands="]


# --- the text itself ---


def test_flow_text_with_names() -> None:
    flow = Flow(
        "l2", 100, match(reg0=1, eth_dst=POD_MAC), (SetField(OUT, 5),), goto="ingress_policy", cookie=_c(Feature.L2)
    )
    assert ofctl.flow_text(flow) == (
        "cookie=0x7000000000001,table=l2,priority=100,reg0=0x1,eth_dst=02:00:00:00:01:0a"
        " actions=set_field:0x5->reg3,goto_table:ingress_policy"
    )
    assert ofctl.flow_text(flow, names=False, round_=2).startswith("cookie=0x207000000000001,table=7,")


def test_vlan_vid_match_text() -> None:
    assert ofctl.match_text(match(vlan_vid=OFPVID_NONE)) == "vlan_tci=0x0000/0x1fff"
    assert ofctl.match_text(match(vlan_vid=OFPVID_PRESENT | 100)) == "dl_vlan=100"
    assert ofctl.match_text(match(vlan_vid=(OFPVID_PRESENT, OFPVID_PRESENT))) == "vlan_tci=0x1000/0x1000"


def test_instruction_text() -> None:
    metered = Flow("qos", 100, match(in_port=1), meter=3, goto="egress_policy")
    assert ofctl.flow_text(metered).endswith(" actions=meter:3,goto_table:egress_policy")
    assert ofctl.flow_text(Flow("classify", 0, ())) == "cookie=0x0,table=classify,priority=0 actions=drop"
    assert ofctl.action_text(Output(OFPP_IN_PORT)) == "output:in_port"
    assert ofctl.action_text(OutputReg("reg3")) == "output:NXM_NX_REG3[]"
    assert ofctl.action_text(Move("arp_sha", "arp_tha")) == "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]"
    assert ofctl.action_text(SetField("tun_ipv4_dst", NODE_IP)) == "set_field:192.168.0.2->tun_dst"
    assert (
        ofctl.group_text(Group(4, ((), (Output(2),))))
        == "group_id=4,type=all,bucket=actions=drop,bucket=actions=output:2"
    )


def found(pattern: str, line: str) -> str:
    """The first group of `pattern` in `line`, which must match."""
    m = re.search(pattern, line)
    assert m is not None, (pattern, line)
    return m.group(1)


def test_render_state_order_is_stable() -> None:
    shuffled = FLOWS[:]
    random.Random(7).shuffle(shuffled)
    text = ofctl.render_state(FLOWS, GROUPS, METERS)
    assert ofctl.render_state(shuffled, GROUPS[::-1], METERS[::-1]) == text
    lines = text.splitlines()
    assert lines[0].startswith("meter=1,") and lines[1].startswith("meter=2,")
    assert lines[2].startswith("group_id=1,") and lines[3].startswith("group_id=2,")
    flow_lines = lines[4:]
    assert len(flow_lines) == len(FLOWS)
    order = [(PIPELINE.table_id(f.table), -f.priority) for f in FLOWS]
    tables = [found(r"table=(\w+)", line) for line in flow_lines]
    priorities = [int(found(r"priority=(\d+)", line)) for line in flow_lines]
    assert [(PIPELINE.table_id(t), -p) for t, p in zip(tables, priorities, strict=True)] == sorted(order)
