"""IR -> os-ken OpenFlow 1.3 messages (flow, group and meter mods, and the conntrack zone flush).

Every function takes the datapath the message is for, because os-ken binds a message to one; pass an
`OfflineDatapath` to build and serialize messages without a switch.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

from os_ken.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser
from os_ken.ofproto.ofproto_parser import MsgBase

from controller.openflow.ofctl import ipv4_text, move_bits, user_value
from controller.pipeline import cookies
from controller.pipeline.ir import (
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

Command = Literal["add", "modify", "delete"]

# NXAST_NAT flags (OVS include/openflow/nicira-ext.h, enum nx_nat_flags); os-ken has no names for them.
NX_NAT_F_SRC, NX_NAT_F_DST, NX_NAT_F_PERSISTENT, NX_NAT_F_PROTO_HASH, NX_NAT_F_PROTO_RANDOM = 1, 2, 4, 8, 16
# Nicira extension message flushing one conntrack zone (OVS include/openflow/nicira-ext.h): experimenter
# NX_VENDOR_ID, subtype NXT_CT_FLUSH_ZONE, body struct nx_zone_id { uint8_t zero[6]; ovs_be16 zone_id; }.
NX_VENDOR_ID = 0x00002320
NXT_CT_FLUSH_ZONE = 29  # OVS lib/ofp-msgs.h "NXT 1.0+ (29)"; `ovs-ofctl ofp-print` decodes it

_FLOW_COMMANDS = {
    "add": ofproto_v1_3.OFPFC_ADD,
    "modify": ofproto_v1_3.OFPFC_MODIFY_STRICT,
    "delete": ofproto_v1_3.OFPFC_DELETE_STRICT,
}
_GROUP_COMMANDS = {
    "add": ofproto_v1_3.OFPGC_ADD,
    "modify": ofproto_v1_3.OFPGC_MODIFY,
    "delete": ofproto_v1_3.OFPGC_DELETE,
}
_METER_COMMANDS = {
    "add": ofproto_v1_3.OFPMC_ADD,
    "modify": ofproto_v1_3.OFPMC_MODIFY,
    "delete": ofproto_v1_3.OFPMC_DELETE,
}


class OfflineDatapath:
    """Enough of an os-ken datapath to build and serialize OpenFlow 1.3 messages with no switch behind it.

    `send_msg` serializes like os-ken's `Datapath.send_msg` and keeps the message in `sent`.
    """

    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser

    def __init__(self, dpid: int = 1) -> None:
        self.id = dpid
        self.xid = 0
        self.sent: list[MsgBase] = []

    def set_xid(self, msg: MsgBase) -> int:
        self.xid = (self.xid + 1) & self.ofproto.MAX_XID
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg: MsgBase) -> bool:
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        self.sent.append(msg)
        return True


def _command(table: dict[str, int], command: str) -> int:
    try:
        return table[command]
    except KeyError:
        raise ValueError(f"command {command!r}: expected one of {', '.join(table)}") from None


def match_kwargs(match: Match) -> dict[str, Any]:
    """OFPMatch keyword arguments: value, or (value, mask) when masked."""
    kwargs: dict[str, Any] = {}
    for field, value, mask in match:
        if mask is None:
            kwargs[field] = user_value(field, value)
        else:
            kwargs[field] = (user_value(field, value), user_value(field, mask))
    return kwargs


def action(dp: Any, act: Action) -> Any:
    """One IR action as an os-ken action object."""
    parser = dp.ofproto_parser
    match act:
        case Output(port=port):
            return parser.OFPActionOutput(port)
        case OutputReg(field=field):
            return parser.NXActionOutputReg(ofs_nbits=nicira_ext.ofs_nbits(0, 31), src=field, max_len=0)
        case SetField(field=field, value=value, mask=None):
            return parser.OFPActionSetField(**{field: user_value(field, value)})
        case SetField(field=field, value=value, mask=int(mask)):
            # OpenFlow 1.3 has no masked set-field; OVS takes (and reports back) Nicira reg_load of the bits.
            start, end = mask_range(field, mask)
            return parser.NXActionRegLoad(nicira_ext.ofs_nbits(start, end), field, value >> start)
        case PushVlan(ethertype=ethertype):
            return parser.OFPActionPushVlan(ethertype)
        case PopVlan():
            return parser.OFPActionPopVlan()
        case ToGroup(group_id=group_id):
            return parser.OFPActionGroup(group_id)
        case DecTtl():
            return parser.OFPActionDecNwTtl()
        case Move(src=src, dst=dst):
            return parser.NXActionRegMove(src_field=src, dst_field=dst, n_bits=move_bits(act), src_ofs=0, dst_ofs=0)
        case Ct():
            return _ct(dp, act)
        case CtClear():
            return parser.NXActionCTClear()
        case Conjunction(conj_id=conj_id, clause=clause, n_clauses=n_clauses):
            return parser.NXActionConjunction(clause=clause - 1, n_clauses=n_clauses, id_=conj_id)  # wire: 0-based
    raise TypeError(f"unknown action {act!r}")


def mask_range(field: str, mask: int) -> tuple[int, int]:
    """(start, end) bits of a contiguous mask; ValueError naming the field if the bits have a gap."""
    start = (mask & -mask).bit_length() - 1
    end = mask.bit_length() - 1
    if mask <= 0 or mask != ((1 << (end - start + 1)) - 1) << start:
        raise ValueError(f"set_field {field}: mask {mask:#x} is not one contiguous range of bits")
    return start, end


class PaddedNXActionNAT(ofproto_v1_3_parser.NXActionNAT):
    """os-ken's NXActionNAT, padded to 8 bytes as OpenFlow requires.

    os-ken 4.x sets the length of a NAT action with a port range (or any other 4-byte remainder) to the
    next multiple of 8 but does not write the padding, so its bytes run 4 short and the next action is read
    from the wrong place (OVS rejects it, os-ken's own parser misreads it). Same bytes otherwise.
    """

    def serialize_body(self) -> bytearray:
        data = super().serialize_body()
        header = ofproto_v1_3.OFP_ACTION_EXPERIMENTER_HEADER_SIZE + 2  # experimenter header, then subtype
        return data + bytes(-(header + len(data)) % 8)


def _nat(dp: Any, nat: Nat) -> Any:
    flags = {"src": NX_NAT_F_SRC, "dst": NX_NAT_F_DST, None: 0}[nat.kind]
    flags |= (NX_NAT_F_PERSISTENT if nat.persistent else 0) | (NX_NAT_F_PROTO_RANDOM if nat.random else 0)
    return PaddedNXActionNAT(
        flags,
        range_ipv4_min="" if nat.addr_min is None else ipv4_text(nat.addr_min),
        range_ipv4_max="" if nat.addr_max is None else ipv4_text(nat.addr_max),
        range_proto_min=nat.port_min,
        range_proto_max=nat.port_max,
    )


def _ct(dp: Any, ct: Ct) -> Any:
    nested = [] if ct.nat is None else [_nat(dp, ct.nat)]
    nested += [action(dp, a) for a in ct.exec_]
    if isinstance(ct.zone, int):
        zone_src, zone_ofs_nbits = "", ct.zone
    else:
        zone_src, zone_ofs_nbits = ct.zone.register, nicira_ext.ofs_nbits(ct.zone.start, ct.zone.end)
    return dp.ofproto_parser.NXActionCT(
        flags=nicira_ext.NX_CT_F_COMMIT if ct.commit else 0,
        zone_src=zone_src,
        zone_ofs_nbits=zone_ofs_nbits,
        recirc_table=nicira_ext.NX_CT_RECIRC_NONE if ct.table is None else PIPELINE.table_id(ct.table),
        alg=0,
        actions=nested,
    )


def instructions(dp: Any, flow: Flow) -> list[Any]:
    """Instructions in the order OpenFlow applies them: meter, apply-actions, goto."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    result: list[Any] = []
    if flow.meter is not None:
        result.append(parser.OFPInstructionMeter(flow.meter, ofp.OFPIT_METER))
    if flow.actions:
        result.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [action(dp, a) for a in flow.actions]))
    if flow.goto is not None:
        result.append(parser.OFPInstructionGotoTable(PIPELINE.table_id(flow.goto)))
    return result


def flow_mod(dp: Any, flow: Flow, *, command: Command = "add", round_: int = 0) -> MsgBase:
    """Add, modify (strict) or delete (strict) one flow; the cookie carries the round."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(
        dp,
        cookie=cookies.with_round(flow.cookie, round_),
        table_id=PIPELINE.table_id(flow.table),
        command=_command(_FLOW_COMMANDS, command),
        priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,  # ANY: a strict delete must not filter on output port or group
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(**match_kwargs(flow.match)),
        instructions=[] if command == "delete" else instructions(dp, flow),
    )


def delete_by_cookie(dp: Any, cookie: int, mask: int) -> MsgBase:
    """Delete every flow, in every table, whose cookie matches `cookie` under `mask`."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    return parser.OFPFlowMod(
        dp,
        cookie=cookie,
        cookie_mask=mask,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(),
    )


def group_mod(dp: Any, group: Group, *, command: Command = "add") -> MsgBase:
    """Add, modify or delete a group of type ALL, one bucket per copy of the packet."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    buckets = (
        [] if command == "delete" else [parser.OFPBucket(actions=[action(dp, a) for a in b]) for b in group.buckets]
    )
    return parser.OFPGroupMod(
        dp, command=_command(_GROUP_COMMANDS, command), type_=ofp.OFPGT_ALL, group_id=group.group_id, buckets=buckets
    )


def meter_mod(dp: Any, meter: Meter, *, command: Command = "add") -> MsgBase:
    """Add, modify or delete a kbit/s meter with one drop band."""
    ofp, parser = dp.ofproto, dp.ofproto_parser
    bands = [] if command == "delete" else [parser.OFPMeterBandDrop(rate=meter.rate_kbps, burst_size=meter.burst_kb)]
    return parser.OFPMeterMod(
        dp,
        command=_command(_METER_COMMANDS, command),
        flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST,
        meter_id=meter.meter_id,
        bands=bands,
    )


def ct_flush_zone(dp: Any, zone: int) -> MsgBase:
    """NXT_CT_FLUSH_ZONE: the switch drops every conntrack entry of `zone` (0..65535); os-ken has no class
    for it, so it goes as a plain experimenter message with the nx_zone_id body (6 zero bytes, zone)."""
    if not 0 <= zone <= 0xFFFF:
        raise ValueError(f"conntrack zone {zone} is not in 0..65535")
    body = struct.pack("!6xH", zone)
    return ofproto_v1_3_parser.OFPExperimenter(dp, experimenter=NX_VENDOR_ID, exp_type=NXT_CT_FLUSH_ZONE, data=body)
