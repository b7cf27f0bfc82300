"""Flow-stats replies read straight from their bytes into IR: the reading side of a reconcile.

os-ken parses every flow of a multipart reply into objects (matches through netaddr, one class per
action), about 80 us a flow: 4 s of a 50,000-flow reconnect. Tenet writes a small set of shapes, so this
reads those shapes from the wire directly: each OXM TLV and each instruction block is decoded once and
cached by its bytes, since a node's flows share most of them. An entry in any other shape is handed to
os-ken's parser and `decode.decode_flow`, so the result is always what the slow path would say; the tests
check both paths agree on every flow the compiler writes and on what OVS reports back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from os_ken.lib import type_desc
from os_ken.ofproto import nicira_ext, ofproto_common, ofproto_v1_3, ofproto_v1_3_parser

from controller.openflow import decode
from controller.pipeline import cookies
from controller.pipeline.ir import (
    Action,
    Conjunction,
    CtClear,
    DecTtl,
    Flow,
    Group,
    Match,
    MatchItem,
    Move,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
)
from controller.pipeline.tables import PIPELINE

_ENTRY = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to the match
_MATCH_HEAD = struct.Struct("!HH")
_TYPE_LENGTH = struct.Struct("!HH")
_GROUP = struct.Struct("!HBxI")  # ofp_group_desc_stats before its buckets
_BUCKET_SIZE = 16  # ofp_bucket before its actions
_NICIRA = ofproto_common.NX_EXPERIMENTER_ID
_OUTPUT_REG_NBITS = nicira_ext.ofs_nbits(0, 31)


class _Unreadable(Exception):
    """A shape the fast reader does not know: os-ken reads this entry instead."""


def _field_names() -> dict[int, str]:
    """OXM number (class << 7 | field) -> os-ken's name, for fields whose value is a plain integer."""
    names = {}
    for oxm in ofproto_v1_3.oxm_types:
        plain = isinstance(oxm.type, type_desc.IntDescr) or oxm.type in (type_desc.MacAddr, type_desc.IPv4Addr)
        if plain and not isinstance(oxm.num, tuple):
            names[oxm.num] = oxm.name
    return names


_FIELDS = _field_names()


def _tlv(buf: bytes, offset: int) -> tuple[int, str, int, int | None]:
    """One OXM TLV at `offset`: (its length, field name, value, mask or None)."""
    header = int.from_bytes(buf[offset : offset + 4], "big")
    name = _FIELDS.get(header >> 9)
    if name is None:
        raise _Unreadable(f"OXM header {header:#x}")
    length = header & 0xFF
    body = buf[offset + 4 : offset + 4 + length]
    if header & 0x100:
        half = length // 2
        return 4 + length, name, int.from_bytes(body[:half], "big"), int.from_bytes(body[half:], "big")
    return 4 + length, name, int.from_bytes(body, "big"), None


class FlowStatsReader:
    """Decodes flow-stats entries; keeps its caches across replies (one reader per dump is fine too)."""

    def __init__(self) -> None:
        self._items: dict[bytes, MatchItem] = {}
        self._instructions: dict[bytes, tuple[tuple[Action, ...], str | None, int | None]] = {}
        self._actions: dict[bytes, Action] = {}

    def entries(self, buf: bytes, offset: int, end: int) -> Iterator[tuple[Flow, int] | Any]:
        """Each entry of a reply body as (flow, round), or as os-ken's OFPFlowStats if Tenet cannot read it.

        An os-ken object is returned for entries `decode.decode_flow` calls Foreign; the caller decides.
        """
        view = memoryview(buf)
        while offset < end:
            length = int.from_bytes(view[offset : offset + 2], "big")
            try:
                yield self.flow(view, offset, length)
            except _Unreadable:
                stats = ofproto_v1_3_parser.OFPFlowStats.parser(bytes(buf), offset)
                try:
                    yield decode.decode_flow(stats)
                except decode.Foreign:
                    yield stats
            offset += length

    def flow(self, view: memoryview, offset: int, length: int) -> tuple[Flow, int]:
        _, table_id, _, _, priority, idle, hard, _, cookie, _, _ = _ENTRY.unpack_from(view, offset)
        table = PIPELINE.names.get(table_id)
        if table is None or idle or hard:
            raise _Unreadable(f"table {table_id}")
        match_at = offset + _ENTRY.size
        match_type, match_length = _MATCH_HEAD.unpack_from(view, match_at)
        if match_type != ofproto_v1_3.OFPMT_OXM:
            raise _Unreadable("match type")
        match = self._match(view, match_at + 4, match_at + match_length)
        instructions_at = match_at + match_length + (-match_length % 8)
        raw = bytes(view[instructions_at : offset + length])
        decoded = self._instructions.get(raw)
        if decoded is None:
            decoded = self._instructions[raw] = self._instruction_block(raw)
        actions, goto, meter = decoded
        flow = Flow(table, priority, match, actions, goto, meter, cookie & ~cookies.ROUND_MASK)
        return flow, cookie >> cookies.ROUND_SHIFT

    def groups(self, buf: bytes, offset: int, end: int) -> Iterator[Group | Any]:
        """Each entry of a group-desc reply body as a Group, or as os-ken's stats if Tenet cannot read it."""
        while offset < end:
            length, kind, group_id = _GROUP.unpack_from(buf, offset)
            try:
                if kind != ofproto_v1_3.OFPGT_ALL:
                    raise _Unreadable(f"group type {kind}")
                yield Group(group_id, tuple(self._buckets(buf, offset + _GROUP.size, offset + length)))
            except _Unreadable:
                stats = ofproto_v1_3_parser.OFPGroupDescStats.parser(buf, offset)
                try:
                    yield decode.decode_group(stats)
                except decode.Foreign:
                    yield stats
            offset += length

    def _buckets(self, buf: bytes, offset: int, end: int) -> Iterator[tuple[Action, ...]]:
        while offset < end:
            length = int.from_bytes(buf[offset : offset + 2], "big")
            yield self._action_list(buf, offset + _BUCKET_SIZE, offset + length)
            offset += length

    def _instruction_block(self, buf: bytes) -> tuple[tuple[Action, ...], str | None, int | None]:
        actions: tuple[Action, ...] = ()
        goto = meter = None
        offset = 0
        while offset < len(buf):
            kind, length = _TYPE_LENGTH.unpack_from(buf, offset)
            if kind == ofproto_v1_3.OFPIT_APPLY_ACTIONS:
                actions = self._action_list(buf, offset + 8, offset + length)
            elif kind == ofproto_v1_3.OFPIT_GOTO_TABLE:
                goto = PIPELINE.names.get(buf[offset + 4])
                if goto is None:
                    raise _Unreadable("goto table")
            elif kind == ofproto_v1_3.OFPIT_METER:
                meter = int.from_bytes(buf[offset + 4 : offset + 8], "big")
            else:
                raise _Unreadable(f"instruction {kind}")
            offset += length
        return actions, goto, meter

    def _action_list(self, buf: bytes, offset: int, end: int) -> tuple[Action, ...]:
        actions = []
        cache = self._actions
        while offset < end:
            kind, length = _TYPE_LENGTH.unpack_from(buf, offset)
            raw = buf[offset : offset + length]
            action = cache.get(raw)
            if action is None:
                try:
                    action = cache[raw] = _action(raw, 0, kind, length)
                except ValueError as e:  # a value the IR refuses (conjunction 0/0, ...): not Tenet's
                    raise _Unreadable(str(e)) from None
            actions.append(action)
            offset += length
        return tuple(actions)

    def _match(self, view: memoryview, offset: int, end: int) -> Match:
        items = []
        cache = self._items
        while offset < end:
            size = 4 + view[offset + 3]
            raw = bytes(view[offset : offset + size])
            item = cache.get(raw)
            if item is None:
                _, name, value, mask = _tlv(raw, 0)
                item = cache[raw] = (name, value, mask)
            items.append(item)
            offset += size
        items.sort()
        return tuple(items)


def _action(buf: bytes, at: int, kind: int, length: int) -> Action:
    if kind == ofproto_v1_3.OFPAT_OUTPUT:
        return Output(int.from_bytes(buf[at + 4 : at + 8], "big"))
    if kind == ofproto_v1_3.OFPAT_SET_FIELD:
        _, name, value, mask = _tlv(buf, at + 4)
        if mask is not None:
            raise _Unreadable("masked set_field")
        return SetField(name, value)
    if kind == ofproto_v1_3.OFPAT_PUSH_VLAN:
        return PushVlan(int.from_bytes(buf[at + 4 : at + 6], "big"))
    if kind == ofproto_v1_3.OFPAT_POP_VLAN:
        return PopVlan()
    if kind == ofproto_v1_3.OFPAT_GROUP:
        return ToGroup(int.from_bytes(buf[at + 4 : at + 8], "big"))
    if kind == ofproto_v1_3.OFPAT_DEC_NW_TTL:
        return DecTtl()
    if kind == ofproto_v1_3.OFPAT_EXPERIMENTER and int.from_bytes(buf[at + 4 : at + 8], "big") == _NICIRA:
        return _nicira_action(buf, at, int.from_bytes(buf[at + 8 : at + 10], "big"))
    raise _Unreadable(f"action {kind}")


def _nicira_action(buf: bytes, at: int, subtype: int) -> Action:
    if subtype == nicira_ext.NXAST_REG_MOVE:
        _, src_ofs, dst_ofs, src, dst = struct.unpack_from("!HHHII", buf, at + 10)
        src_name, dst_name = _FIELDS.get(src >> 9), _FIELDS.get(dst >> 9)
        if src_ofs or dst_ofs or src_name is None or dst_name is None:
            raise _Unreadable("reg_move")
        # OVS reports moved fields in their NXM form, which os-ken names e.g. "eth_src_nxm".
        return Move(src_name.removesuffix("_nxm"), dst_name.removesuffix("_nxm"))
    if subtype == nicira_ext.NXAST_OUTPUT_REG:
        ofs_nbits, src = struct.unpack_from("!HI", buf, at + 10)
        name = _FIELDS.get(src >> 9)
        if ofs_nbits != _OUTPUT_REG_NBITS or name is None:
            raise _Unreadable("output_reg")
        return OutputReg(name)
    if subtype == nicira_ext.NXAST_REG_LOAD:
        ofs_nbits, dst, value = struct.unpack_from("!HIQ", buf, at + 10)
        name = _FIELDS.get(dst >> 9)
        if name is None:
            raise _Unreadable("reg_load")
        start, n_bits = ofs_nbits >> 6, (ofs_nbits & 0x3F) + 1
        return SetField(name, value << start, ((1 << n_bits) - 1) << start)
    if subtype == nicira_ext.NXAST_CONJUNCTION:
        clause, n_clauses, conj_id = struct.unpack_from("!BBI", buf, at + 10)
        return Conjunction(conj_id, clause + 1, n_clauses)  # the wire's clause is 0-based
    if subtype == nicira_ext.NXAST_CT_CLEAR:
        return CtClear()
    if subtype == nicira_ext.NXAST_CT:
        # A ct nests NAT and set-field actions; a node has few distinct ones and the caller caches each by
        # its bytes, so os-ken reads this one action and decode.py turns it into the IR, as the slow path does.
        length = int.from_bytes(buf[at + 2 : at + 4], "big")
        try:
            return decode.decode_action(ofproto_v1_3_parser.OFPAction.parser(bytes(buf[at : at + length]), 0))
        except decode.Foreign as e:
            raise _Unreadable(str(e)) from None
    raise _Unreadable(f"Nicira action {subtype}")


class RawBody:
    """A flow-stats or group-desc reply body kept as bytes; iterating it gives os-ken's objects as before."""

    def __init__(self, entry_cls: Any, buf: bytes, offset: int, end: int) -> None:
        self.entry_cls, self.buf, self.offset, self.end = entry_cls, buf, offset, end

    def __iter__(self) -> Iterator[Any]:
        offset = self.offset
        while offset < self.end:
            stats = self.entry_cls.parser(self.buf, offset)
            yield stats
            offset += stats.length

    def flows(self, reader: FlowStatsReader) -> Iterator[tuple[Flow, int] | Any]:
        return reader.entries(self.buf, self.offset, self.end)

    def groups(self, reader: FlowStatsReader) -> Iterator[Group | Any]:
        return reader.groups(self.buf, self.offset, self.end)


_RAW_KINDS = {
    ofproto_v1_3.OFPMP_FLOW: (ofproto_v1_3_parser.OFPFlowStatsReply, ofproto_v1_3_parser.OFPFlowStats),
    ofproto_v1_3.OFPMP_GROUP_DESC: (ofproto_v1_3_parser.OFPGroupDescStatsReply, ofproto_v1_3_parser.OFPGroupDescStats),
}
_parse_multipart_reply = ofproto_v1_3_parser._MSG_PARSERS[ofproto_v1_3.OFPT_MULTIPART_REPLY]


def _parse_keeping_bodies_raw(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
    kind, flags = struct.unpack_from(ofproto_v1_3.OFP_MULTIPART_REPLY_PACK_STR, buf, ofproto_v1_3.OFP_HEADER_SIZE)
    if kind not in _RAW_KINDS:
        return _parse_multipart_reply(datapath, version, msg_type, msg_len, xid, buf)
    reply_cls, entry_cls = _RAW_KINDS[kind]
    msg = ofproto_v1_3_parser.MsgBase.parser.__func__(reply_cls, datapath, version, msg_type, msg_len, xid, buf)
    msg.type, msg.flags = kind, flags
    msg.body = RawBody(entry_cls, bytes(msg.buf), ofproto_v1_3.OFP_MULTIPART_REPLY_SIZE, msg_len)
    return msg


def keep_stats_raw() -> None:
    """Make os-ken leave flow-stats and group-desc bodies as bytes for `FlowStatsReader` (see the module doc)."""
    ofproto_v1_3_parser._MSG_PARSERS[ofproto_v1_3.OFPT_MULTIPART_REPLY] = _parse_keeping_bodies_raw
