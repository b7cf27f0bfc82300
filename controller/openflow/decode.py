"""os-ken messages read back from a switch -> IR, so what a switch holds can be diffed against the compiler.

Flow stats carry the cookie with its round; `decode_flow` splits it off and returns it beside the flow.
Anything Tenet never installs (an action kind it does not use, a table beyond the pipeline) is reported
as `Foreign`, so reconcile deletes it rather than misreading it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from os_ken.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser

from controller.openflow.ofctl import IPV4_FIELDS, MAC_FIELDS
from controller.pipeline import cookies
from controller.pipeline.fields import field_at
from controller.pipeline.ir import (
    CT_FIELDS,
    Action,
    Conjunction,
    Ct,
    CtClear,
    DecTtl,
    Flow,
    Group,
    Match,
    Meter,
    Move,
    Nat,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
)
from controller.pipeline.tables import PIPELINE

parser = ofproto_v1_3_parser
# NXAST_NAT flags (OVS include/openflow/nicira-ext.h): src, dst, persistent, proto_hash, proto_random.
_NAT_SRC, _NAT_DST, _NAT_PERSISTENT, _NAT_RANDOM = 1, 2, 4, 16
_NAT_KNOWN = _NAT_SRC | _NAT_DST | _NAT_PERSISTENT | _NAT_RANDOM


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
    if isinstance(action, parser.NXActionRegLoad):
        start, n_bits = action.ofs_nbits >> 6, (action.ofs_nbits & 0x3F) + 1
        return SetField(action.dst, action.value << start, ((1 << n_bits) - 1) << start)
    if isinstance(action, parser.NXActionCT):
        return decode_ct(action)
    if isinstance(action, parser.NXActionCTClear):
        return CtClear()
    if isinstance(action, parser.NXActionConjunction):
        try:
            return Conjunction(action.id, action.clause + 1, action.n_clauses)  # the wire's clause is 0-based
        except ValueError as e:
            raise Foreign(f"conjunction {action!r}: {e}") from None
    raise Foreign(f"action {action!r}")


def decode_nat(nat: Any) -> Nat:
    """An os-ken NXActionNAT as a Nat; Foreign for IPv6 ranges or flags Tenet never writes."""
    if nat.flags & ~_NAT_KNOWN or nat.range_ipv6_min or nat.range_ipv6_max:
        raise Foreign(f"nat {nat!r}")
    kind: Literal["src", "dst"] | None = "src" if nat.flags & _NAT_SRC else "dst" if nat.flags & _NAT_DST else None
    try:
        return Nat(
            kind,
            int(ipaddress.IPv4Address(nat.range_ipv4_min)) if nat.range_ipv4_min else None,
            int(ipaddress.IPv4Address(nat.range_ipv4_max)) if nat.range_ipv4_max else None,
            nat.range_proto_min,
            nat.range_proto_max,
            persistent=bool(nat.flags & _NAT_PERSISTENT),
            random=bool(nat.flags & _NAT_RANDOM),
        )
    except ValueError as e:
        raise Foreign(f"nat {nat!r}: {e}") from None


def decode_ct(ct: Any) -> Ct:
    """An os-ken NXActionCT as a Ct; Foreign for force, ALGs, unknown tables or other nested actions."""
    if ct.flags & ~nicira_ext.NX_CT_F_COMMIT or ct.alg:
        raise Foreign(f"ct {ct!r}")
    table = None
    if ct.recirc_table != nicira_ext.NX_CT_RECIRC_NONE:
        table = PIPELINE.names.get(ct.recirc_table)
        if table is None:
            raise Foreign(f"ct to table {ct.recirc_table}")
    nested = list(ct.actions)
    nat = decode_nat(nested.pop(0)) if nested and isinstance(nested[0], parser.NXActionNAT) else None
    exec_ = tuple(decode_action(a) for a in nested)
    if not all(isinstance(a, SetField) and a.field in CT_FIELDS for a in exec_):
        raise Foreign(f"ct exec {exec_!r}")
    if ct.zone_src:
        start, end = ct.zone_ofs_nbits >> 6, (ct.zone_ofs_nbits >> 6) + (ct.zone_ofs_nbits & 0x3F)
        zone: Any = field_at(ct.zone_src, start, end)
    else:
        zone = ct.zone_ofs_nbits
    try:
        return Ct(bool(ct.flags & nicira_ext.NX_CT_F_COMMIT), zone, table, nat, exec_)  # type: ignore[arg-type]
    except ValueError as e:
        raise Foreign(f"ct {ct!r}: {e}") from None


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
