"""The fast flow-stats reader says what os-ken's parser and `decode.decode_flow` say, for every entry."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.openflow import decode, flow_stats, messages
from controller.openflow.encode import flow_mod_bytes, match_bytes
from controller.openflow.messages import OfflineDatapath
from controller.pipeline.compile import Compiler
from controller.pipeline.ir import Flow, Group, Move, Output, match
from tests.unit.topologies import SHAPES, example

ENTRY = struct.Struct("!HBxIIHHHH4xQQQ")
FLOW_MOD_HEAD = 48  # ofp_header + ofp_flow_mod up to the match


def entry(table_id: int, priority: int, cookie: int, match_and_instructions: bytes, *, idle: int = 0) -> bytes:
    """An ofp_flow_stats entry as a switch sends it, with some counters to show they are ignored."""
    length = ENTRY.size + len(match_and_instructions)
    return ENTRY.pack(length, table_id, 17, 5000, priority, idle, 0, 0, cookie, 1234, 99999) + match_and_instructions


def entry_of(flow: Flow, round_: int) -> bytes:
    mod = flow_mod_bytes(flow, command="add", round_=round_)
    table_id, priority = mod[24], int.from_bytes(mod[30:32], "big")
    return entry(table_id, priority, int.from_bytes(mod[8:16], "big"), bytes(mod[FLOW_MOD_HEAD:]))


def slow(body: bytes) -> list[object]:
    """What os-ken's parser and decode_flow make of a body: (flow, round), or the stats for a foreign flow."""
    out: list[object] = []
    offset = 0
    while offset < len(body):
        stats = parser.OFPFlowStats.parser(body, offset)
        try:
            out.append(decode.decode_flow(stats))
        except decode.Foreign:
            out.append(("foreign", stats.table_id, stats.priority))
        offset += stats.length
    return out


def fast(body: bytes) -> list:
    out = []
    for item in flow_stats.FlowStatsReader().entries(body, 0, len(body)):
        out.append(item if isinstance(item, tuple) else ("foreign", item.table_id, item.priority))
    return out


@pytest.mark.parametrize("shape", ["example", "vlan-ring", "vlan-uplinks", "vxlan-only"])
def test_every_compiled_flow_reads_back_as_itself(shape: str) -> None:
    model = example() if shape == "example" else SHAPES[shape](2)
    for state in Compiler(model).compile_all().values():
        flows = list(state.flows())
        body = b"".join(entry_of(flow, 7) for flow in flows)
        assert fast(body) == [(flow, 7) for flow in flows] == slow(body)


def test_moves_as_open_vswitch_reports_them_in_nxm_form() -> None:
    dp = OfflineDatapath()
    actions = [parser.NXActionRegMove(src_field="eth_src_nxm", dst_field="eth_dst_nxm", n_bits=48)]
    buf = bytearray()
    inst = parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)
    inst.serialize(buf, 0)
    body = entry(2, 100, 3, match_bytes(match(eth_type=0x806)) + bytes(buf))
    assert dp.ofproto is ofp
    assert fast(body) == slow(body)
    assert fast(body)[0][0].actions == (Move("eth_src", "eth_dst"),)


def foreign_entries() -> bytes:
    plain = match_bytes(match(in_port=5))
    write_actions = bytearray()
    parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [parser.OFPActionOutput(1)]).serialize(write_actions, 0)
    copy_ttl = bytearray()
    parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionCopyTtlIn()]).serialize(copy_ttl, 0)
    return b"".join(
        [
            entry(200, 10, 0, plain),  # a table beyond the pipeline
            entry(0, 10, 0, plain + bytes(write_actions)),
            entry(0, 11, 0, plain + bytes(copy_ttl)),
            entry(0, 12, 5, plain, idle=30),  # read by os-ken's path, which ignores timeouts
        ]
    )


def test_shapes_it_cannot_read_fall_back_to_the_full_decoder() -> None:
    body = foreign_entries()
    assert fast(body) == slow(body)
    assert [item[0] for item in fast(body)][:3] == ["foreign"] * 3


def test_a_raw_body_still_iterates_as_osken_objects() -> None:
    flows = list(Compiler(example()).compile_all()["node1"].flows())[:20]
    body = b"".join(entry_of(flow, 1) for flow in flows)
    raw = flow_stats.RawBody(parser.OFPFlowStats, b"x" * 16 + body, 16, 16 + len(body))
    assert [decode.decode_flow(stats) for stats in raw] == [(flow, 1) for flow in flows]
    assert list(raw.flows(flow_stats.FlowStatsReader())) == [(flow, 1) for flow in flows]


def test_osken_hands_over_flow_stats_replies_unparsed() -> None:
    from os_ken.ofproto import ofproto_parser

    flows = list(Compiler(example()).compile_all()["node1"].flows())
    body = b"".join(entry_of(flow, 3) for flow in flows[:50])
    head = struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 16 + len(body), 42, ofp.OFPMP_FLOW, 1)
    dp = OfflineDatapath()
    flow_stats.keep_stats_raw()
    msg = ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(head + body), 42, head + body)
    assert isinstance(msg, parser.OFPFlowStatsReply) and (msg.xid, msg.flags) == (42, 1)
    assert isinstance(msg.body, flow_stats.RawBody)
    assert list(msg.body.flows(flow_stats.FlowStatsReader())) == [(flow, 3) for flow in flows[:50]]
    # other multipart replies are parsed as before
    meters = struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 16, 43, ofp.OFPMP_METER_CONFIG, 0)
    assert ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 16, 43, meters).body == []


def group_entry(group: Group, kind: int = ofp.OFPGT_ALL) -> bytes:
    """An ofp_group_desc_stats entry: the buckets are the same bytes a group-mod carries."""
    mod = messages.group_mod(OfflineDatapath(), group, command="add")
    mod.serialize()
    buckets = bytes(mod.buf[16:])
    return struct.pack("!HBxI", 8 + len(buckets), kind, group.group_id) + buckets


def test_every_compiled_group_reads_back_as_itself() -> None:
    groups: list[Group] = []
    for shape in ["vlan-ring", "vlan-uplinks", "vxlan-only"]:
        for state in Compiler(SHAPES[shape](3)).compile_all().values():
            groups += state.groups().values()
    groups += Compiler(example()).compile_all()["node1"].groups().values()
    assert groups, "the shapes have flood groups"
    body = b"".join(group_entry(group) for group in groups)
    raw = flow_stats.RawBody(parser.OFPGroupDescStats, body, 0, len(body))
    assert list(raw.groups(flow_stats.FlowStatsReader())) == groups == [decode.decode_group(g) for g in raw]


def test_a_group_of_another_type_is_foreign() -> None:
    group = Group(5, ((Output(1),), (Output(2),)))
    body = group_entry(group, ofp.OFPGT_SELECT) + group_entry(group)
    read = list(flow_stats.FlowStatsReader().groups(body, 0, len(body)))
    assert isinstance(read[0], parser.OFPGroupDescStats) and read[0].group_id == 5
    assert read[1] == group
