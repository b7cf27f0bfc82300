"""IR -> os-ken OpenFlow 1.3 messages (flow, group and meter mods).

Every function takes the datapath the message is for, because os-ken binds a message to one; pass an
`OfflineDatapath` to build and serialize messages without a switch.
"""

from __future__ import annotations

from typing import Any, Literal

from os_ken.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser
from os_ken.ofproto.ofproto_parser import MsgBase

from controller.openflow.ofctl import move_bits, user_value
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

Command = Literal["add", "modify", "delete"]

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
        case SetField(field=field, value=value):
            return parser.OFPActionSetField(**{field: user_value(field, value)})
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
    raise TypeError(f"unknown action {act!r}")


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
