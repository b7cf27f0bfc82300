"""os-ken messages read back from a switch -> IR, so what a switch holds can be diffed against the compiler.

Flow stats carry the cookie with its round; `decode_flow` splits it off and returns it beside the flow.
Anything Tenet never installs (an action kind it does not use, a table beyond the pipeline) is reported
as `Foreign`, so reconcile deletes it rather than misreading it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from os_ken.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser

from controller.openflow.ofctl import IPV4_FIELDS, MAC_FIELDS
from controller.pipeline import cookies
from controller.pipeline.ir import (
    Action,
    DecTtl,
    Flow,
    Group,
    Match,
    Meter,
    Move,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
)
from controller.pipeline.tables import PIPELINE

parser = ofproto_v1_3_parser


class Foreign(ValueError):
    """Something on the switch that Tenet's IR cannot express: not ours."""


def int_value(field: str, value: Any) -> int:
    if field in MAC_FIELDS:
        return int(str(value).replace(":", ""), 16)
    if field in IPV4_FIELDS:
        return int(ipaddress.IPv4Address(value))
    return int(value)


def decode_match(match: ofproto_v1_3_parser.OFPMatch) -> Match:
    items: list[tuple[str, int, int | None]] = []
    for field, value in match._fields2:
        if isinstance(value, tuple):
            items.append((field, int_value(field, value[0]), int_value(field, value[1])))
        else:
            items.append((field, int_value(field, value), None))
    items.sort()
    return tuple(items)


def decode_action(action: Any) -> Action:
    if isinstance(action, parser.OFPActionOutput):
        return Output(action.port)
    if isinstance(action, parser.OFPActionSetField):
        return SetField(action.key, int_value(action.key, action.value))
    if isinstance(action, parser.OFPActionPushVlan):
        return PushVlan(action.ethertype)
    if isinstance(action, parser.OFPActionPopVlan):
        return PopVlan()
    if isinstance(action, parser.OFPActionGroup):
        return ToGroup(action.group_id)
    if isinstance(action, parser.OFPActionDecNwTtl):
        return DecTtl()
    if isinstance(action, parser.NXActionRegMove) and action.src_ofs == 0 and action.dst_ofs == 0:
        # OVS reports moved fields in their NXM form, which os-ken names e.g. "eth_src_nxm".
        return Move(action.src_field.removesuffix("_nxm"), action.dst_field.removesuffix("_nxm"))
    if isinstance(action, parser.NXActionOutputReg) and action.ofs_nbits == nicira_ext.ofs_nbits(0, 31):
        return OutputReg(action.src)
    raise Foreign(f"action {action!r}")


def decode_flow(stats: Any) -> tuple[Flow, int]:
    """(flow without round, round) of one OFPFlowStats; Foreign if Tenet would not have written it."""
    table = PIPELINE.names.get(stats.table_id)
    if table is None:
        raise Foreign(f"table {stats.table_id}")
    actions: tuple[Action, ...] = ()
    goto = meter = None
    for instruction in stats.instructions:
        if isinstance(instruction, parser.OFPInstructionActions):
            if instruction.type != ofproto_v1_3.OFPIT_APPLY_ACTIONS:
                raise Foreign(f"instruction {instruction!r}")
            actions = tuple(decode_action(a) for a in instruction.actions)
        elif isinstance(instruction, parser.OFPInstructionGotoTable):
            goto = PIPELINE.names.get(instruction.table_id)
            if goto is None:
                raise Foreign(f"goto table {instruction.table_id}")
        elif isinstance(instruction, parser.OFPInstructionMeter):
            meter = instruction.meter_id
        else:
            raise Foreign(f"instruction {instruction!r}")
    round_ = stats.cookie >> cookies.ROUND_SHIFT
    flow = Flow(
        table, stats.priority, decode_match(stats.match), actions, goto, meter, stats.cookie & ~cookies.ROUND_MASK
    )
    return flow, round_


def decode_group(stats: Any) -> Group:
    if stats.type != ofproto_v1_3.OFPGT_ALL:
        raise Foreign(f"group {stats.group_id} of type {stats.type}")
    buckets = tuple(tuple(decode_action(a) for a in bucket.actions) for bucket in stats.buckets)
    return Group(stats.group_id, buckets)


def decode_meter(stats: Any) -> Meter:
    bands = stats.bands
    wanted = ofproto_v1_3.OFPMF_KBPS | ofproto_v1_3.OFPMF_BURST
    if stats.flags != wanted or len(bands) != 1 or not isinstance(bands[0], parser.OFPMeterBandDrop):
        raise Foreign(f"meter {stats.meter_id}")
    return Meter(stats.meter_id, bands[0].rate, bands[0].burst_size)
