"""A flow dump checked against the desired flows by their bytes: a reconnect decodes only what differs.

A switch holding Tenet's flows reports each one as the bytes Tenet's encoder writes: the match in the same
OXM order, the same instructions (OVS reports a Nicira reg_move's fields in their NXM form, so the expected
bytes are written that way too), and the cookie with its round. So each flow-stats entry is looked up by
(table, priority, match bytes) among the desired flows and compared with the expected cookie and
instruction bytes; counters, durations and flags are not compared (the decoding reader ignores them too).
An entry that is the same byte for byte is that desired flow, installed; any other entry (another round,
other actions, a timeout, a flow Tenet did not write, a shape the encoder would not produce) goes through
`FlowStatsReader` as before, and the IR diff decides about it. So the result is what decoding every entry
would give, less the decoding of flows already right (about 80% of a reconnect's work for a correct switch).

The expected bytes of a section's flows are kept while the section object lives (the compiler keeps an
unchanged section's object), so a second reconnect encodes only sections compiled since. A dump far
smaller than the desired state (a switch that lost its flows) is decoded entry by entry instead, as that
costs less, and the expected bytes are worked out in the background for the next reconnect.
"""

from __future__ import annotations

import struct
import threading
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from controller.openflow import encode
from controller.openflow.flow_stats import FlowStatsReader
from controller.pipeline.cookies import ROUND_MASK, ROUND_SHIFT
from controller.pipeline.ir import Flow, Move
from controller.pipeline.state import NodeState, Section
from controller.pipeline.tables import PIPELINE

if TYPE_CHECKING:
    from controller.app.reconcile import Installed

_ENTRY = struct.Struct("!HBxIIHHHH4xQ")  # ofp_flow_stats up to the cookie (counters after it are not read)
_MATCH_AT = 48  # the match's offset in an ofp_flow_stats entry
_MOVE_FIELDS = slice(16, 24)  # a Nicira reg_move's src and dst OXM headers


@dataclass
class Split:
    """A dump split by `compare`: desired flows found byte for byte, and every other entry decoded as
    `FlowStatsReader.entries` decodes it ((flow, round), or os-ken's stats for a foreign flow)."""

    verified: list[Flow] = field(default_factory=list)
    other: list[Any] = field(default_factory=list)


Key = tuple[int, int, bytes]  # table id, priority, match bytes (with padding)
Wanted = dict[Key, tuple[Flow, bytes]]  # -> the desired flow and its instruction bytes
_by_section: weakref.WeakKeyDictionary[Section, Wanted] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
ENTRY_BYTES = 128  # about the size of a flow-stats entry, to guess how many entries a dump holds


def compare(bodies: list[tuple[bytes, int, int]], desired: NodeState, *, round_: int, reader: FlowStatsReader) -> Split:
    """Split flow-stats reply bodies ((buffer, start, end) of each) against the `desired` flows of round
    `round_`; raises what `FlowStatsReader` raises on a malformed entry."""
    reported = sum(end - start for _, start, end in bodies) // ENTRY_BYTES
    if reported * 4 < desired.flow_count():  # mostly gone: decoding what is left costs less than encoding all
        prepare_later(desired)
        return Split(other=[entry for buf, start, end in bodies for entry in reader.entries(buf, start, end)])
    wanted: Wanted = {}
    for section in desired.sections.values():
        wanted.update(_expected(section))
    split = Split()
    verified, other = split.verified, split.other
    unpack, round_bits = _ENTRY.unpack_from, (round_ & 0xFF) << ROUND_SHIFT  # as cookies.with_round
    for buf, offset, end in bodies:
        while offset < end:
            length, table_id, _, _, priority, idle, hard, _, cookie = unpack(buf, offset)
            match_at = offset + _MATCH_AT
            match_length = int.from_bytes(buf[match_at + 2 : match_at + 4], "big")
            instructions_at = match_at + match_length + (-match_length % 8)
            hit = wanted.get((table_id, priority, buf[match_at:instructions_at]))
            if (
                hit is not None
                and not idle
                and not hard
                and cookie == round_bits | (hit[0].cookie & ~ROUND_MASK)
                and buf[instructions_at : offset + length] == hit[1]
            ):
                verified.append(hit[0])
            else:
                other.extend(reader.entries(buf, offset, offset + length))
            offset += length
    return split


def resolve(installed: Installed, desired: NodeState, *, round_: int) -> list[Any]:
    """Read `installed.raw_flows` against `desired`: flows found byte for byte go to `installed.verified`,
    every other entry is decoded into `installed.flows` or `installed.foreign_flows`. Returns the foreign
    flows found here (os-ken's stats objects)."""
    split = compare(installed.raw_flows, desired, round_=round_, reader=FlowStatsReader())
    installed.raw_flows = []
    installed.verified.extend(split.verified)
    foreign = [entry for entry in split.other if not isinstance(entry, tuple)]
    installed.flows.extend(entry for entry in split.other if isinstance(entry, tuple))
    installed.foreign_flows.extend(foreign)
    return foreign


def _expected(section: Section) -> Wanted:
    # The compiler keeps a section's object while its content stays: its expected bytes are kept with it.
    with _lock:
        known = _by_section.get(section)
    if known is None:
        known = {key: (flow, instructions) for flow in section.flows for key, instructions in [expected_bytes(flow)]}
        with _lock:
            _by_section[section] = known
    return known


def prepare_later(desired: NodeState) -> None:
    """Work out the expected bytes of `desired` in a thread of its own, for the next reconnect to compare
    with at once; for when this reconnect did not (the switch had lost its flows)."""

    def prepare() -> None:
        for section in list(desired.sections.values()):
            _expected(section)

    threading.Thread(target=prepare, name="dump-compare-prepare", daemon=True).start()


def expected_bytes(flow: Flow) -> tuple[Key, bytes]:
    """(table id, priority, match bytes) and instruction bytes of `flow` as a switch reports it."""
    match = encode.match_bytes(flow.match)
    instructions = encode._instructions(flow.actions, flow.goto, flow.meter)
    for action in flow.actions:
        if isinstance(action, Move):
            instructions = instructions.replace(encode._action(action), _reported_move(action))
    return (PIPELINE.table_id(flow.table), flow.priority, match), instructions


@lru_cache(maxsize=256)
def _reported_move(action: Move) -> bytes:
    """A reg_move as OVS reports it: each field that has an NXM form (eth_src_nxm, ...) in that form."""
    raw = bytearray(encode._action(action))
    headers = b"".join(_nxm_header(name) for name in (action.src, action.dst))
    raw[_MOVE_FIELDS] = headers
    return bytes(raw)


def _nxm_header(name: str) -> bytes:
    buf = bytearray()
    try:
        header = ofp.oxm_from_user_header(f"{name}_nxm")
    except KeyError:
        header = ofp.oxm_from_user_header(name)
    ofp.oxm_serialize_header(header, buf, 0)
    return bytes(buf[:4])
