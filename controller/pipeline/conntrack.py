"""A connection tracker for the simulated switch, with the semantics OVS's conntrack gives a flow.

Connections are keyed by (zone, 5-tuple): the same tuple in two zones is two unrelated connections. A
packet sent through `ct` gets ct_state:

- `+trk+inv` if it cannot be tracked (not IPv4, or no addresses);
- `+trk+new` for a tuple with no committed connection, and for further packets of the original direction
  until a reply has been seen (OVS 3.1's userspace conntrack does so, as tests/functional/
  test_conntrack_semantics.py checks against a real br-int; so does the kernel's);
- `+trk+est` for the original direction after a reply, `+trk+est+rpl` for every reply-direction packet;
- `+snat`/`+dnat` when NAT rewrote this packet (a reply of a SNATed connection is un-NATed as `+dnat`).

`commit` stores a new connection (with its ct_mark/ct_label from `exec`); `nat(src=...)`/`nat(dst=...)`
with commit binds a translation for a new connection (the lowest address of the range, and the lowest free
port of the port range, or the original port); any `nat` on a packet of a NATed connection applies the
binding, forwards or in reverse. Ports are those of TCP, UDP and SCTP; other protocols track with ports 0,
except ICMP, keyed as Linux's conntrack (which OVS's userspace conntrack follows) keys it:

- a query (echo, timestamp, information, address mask request) is a connection keyed by its type and its
  identifier (`icmp_id`; a packet without `icmp_type` is an echo request): its reply direction is the
  matching reply type with the same identifier, so a request the other way is a connection of its own;
- an error (destination unreachable, source quench, redirect, time exceeded, parameter problem) is
  `+trk+rel` (and `+rpl` when it travels in the connection's reply direction) when the header it embeds
  (`ICMP_INNER`: the 5-tuple of the packet that caused it as that packet had it, in `Tuple5` order) is
  of a tracked connection; it never commits a connection of its own, and its embedded header is not NATed;
- anything else (a reply with no connection, an error about no connection) is `+trk+inv`.

Source: ovs-fields(7) "Connection Tracking Fields", ovs-actions(7) "The ct action"; Linux
net/netfilter/nf_conntrack_proto_icmp.c (icmp_pkt_to_tuple, icmp_invert_tuple, icmp_error_message).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.pipeline.ir import (
    CT_DNAT,
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_REL,
    CT_RPL,
    CT_SNAT,
    CT_TRK,
    ETH_TYPE_IP,
    Ct,
    SetField,
)

Tuple5 = tuple[int, int, int, int, int]  # ip_proto, src, dst, src port, dst port (ICMP: id, type)
PORT_FIELDS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst"), 132: ("sctp_src", "sctp_dst")}
ICMP = 1
ECHO_REQUEST = 8
# ICMP query types and their replies (RFC 792, RFC 950): request -> reply.
ICMP_QUERIES = {8: 0, 13: 14, 15: 16, 17: 18}
ICMP_REPLIES = {reply: request for request, reply in ICMP_QUERIES.items()}
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})  # unreachable, source quench, redirect, time exceeded, parameter
# An ICMP error's embedded header, as packet fields (simulator only; OpenFlow matches none of them).
ICMP_INNER = ("icmp_inner_proto", "icmp_inner_src", "icmp_inner_dst", "icmp_inner_sport", "icmp_inner_dport")


@dataclass
class Connection:
    original: Tuple5  # as the first packet had it, before NAT
    reply: Tuple5  # what a reply looks like on the wire, after NAT
    nat: str | None = None  # "src" or "dst": the translation bound at commit
    mark: int = 0
    label: int = 0
    seen_reply: bool = False


@dataclass
class CtResult:
    state: int
    zone: int
    mark: int = 0
    label: int = 0


def five_tuple(fields: dict[str, int]) -> Tuple5 | None:
    """The packet's 5-tuple, or None if conntrack cannot track it. ICMP: (1, src, dst, icmp_id, icmp_type)."""
    if fields.get("eth_type") != ETH_TYPE_IP or "ipv4_src" not in fields or "ipv4_dst" not in fields:
        return None
    proto = fields.get("ip_proto", 0)
    if proto == ICMP:
        icmp_type = fields.get("icmp_type", ECHO_REQUEST)
        return (ICMP, fields["ipv4_src"], fields["ipv4_dst"], fields.get("icmp_id", 0), icmp_type)
    src_port, dst_port = PORT_FIELDS.get(proto, ("", ""))
    return (proto, fields["ipv4_src"], fields["ipv4_dst"], fields.get(src_port, 0), fields.get(dst_port, 0))


def _reverse(t: Tuple5) -> Tuple5:
    if t[0] == ICMP:  # the reply of a query: the reply type, the same identifier
        return (ICMP, t[2], t[1], t[3], ICMP_QUERIES.get(t[4], ICMP_REPLIES.get(t[4], t[4])))
    return (t[0], t[2], t[1], t[4], t[3])


def _write(fields: dict[str, int], t: Tuple5) -> None:
    fields["ipv4_src"], fields["ipv4_dst"] = t[1], t[2]
    if t[0] in PORT_FIELDS:
        src_port, dst_port = PORT_FIELDS[t[0]]
        fields[src_port], fields[dst_port] = t[3], t[4]


def _masked(old: int, action: SetField) -> int:
    return action.value if action.mask is None else (old & ~action.mask) | action.value


class Conntrack:
    """One switch's connection table, kept across packets."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, Tuple5], tuple[Connection, bool]] = {}  # -> (connection, is reply)

    def __len__(self) -> int:
        return len({id(conn) for conn, _ in self.table.values()})

    def run(self, ct: Ct, zone: int, fields: dict[str, int]) -> CtResult:
        """Track (and maybe commit and NAT) a packet given by its header `fields`, rewritten in place by NAT."""
        tuple_ = five_tuple(fields)
        if tuple_ is None:
            return CtResult(CT_TRK | CT_INV, zone)
        if tuple_[0] == ICMP and tuple_[4] in ICMP_ERRORS:
            return self._related(zone, fields)
        found = self.table.get((zone, tuple_))
        if found is None:
            if tuple_[0] == ICMP and tuple_[4] not in ICMP_QUERIES:
                return CtResult(CT_TRK | CT_INV, zone)  # a reply (or an unknown type) with no connection
            return self._new(ct, zone, tuple_, fields)
        conn, is_reply = found
        state = CT_TRK
        if is_reply:
            conn.seen_reply = True
            state |= CT_EST | CT_RPL
        else:
            state |= CT_EST if conn.seen_reply else CT_NEW
        if ct.nat is not None and conn.nat is not None:
            if is_reply:
                _write(fields, _reverse(conn.original))
                state |= CT_DNAT if conn.nat == "src" else CT_SNAT
            else:
                _write(fields, _reverse(conn.reply))
                state |= CT_SNAT if conn.nat == "src" else CT_DNAT
        if ct.commit:
            self._exec(conn, ct)
        return CtResult(state, zone, conn.mark, conn.label)

    def _related(self, zone: int, fields: dict[str, int]) -> CtResult:
        """An ICMP error: related to the connection of the header it embeds, else invalid."""
        inner = tuple(fields.get(name) for name in ICMP_INNER)
        found = None if None in inner else self.table.get((zone, inner))  # type: ignore[arg-type]
        if found is None:
            return CtResult(CT_TRK | CT_INV, zone)
        conn, inner_is_reply = found
        # An error about a packet of the original direction travels in the reply direction, and vice versa.
        state = CT_TRK | CT_REL | (0 if inner_is_reply else CT_RPL)
        return CtResult(state, zone, conn.mark, conn.label)

    def _new(self, ct: Ct, zone: int, original: Tuple5, fields: dict[str, int]) -> CtResult:
        state = CT_TRK | CT_NEW
        if not ct.commit:
            return CtResult(state, zone)
        translated, kind = original, None
        if ct.nat is not None and ct.nat.kind is not None:
            kind = ct.nat.kind
            translated = self._bind(zone, original, ct)
            _write(fields, translated)
            state |= CT_SNAT if kind == "src" else CT_DNAT
        conn = Connection(original, _reverse(translated), kind)
        self._exec(conn, ct)
        self.table[(zone, original)] = (conn, False)
        self.table[(zone, conn.reply)] = (conn, True)
        return CtResult(state, zone, conn.mark, conn.label)

    def _bind(self, zone: int, original: Tuple5, ct: Ct) -> Tuple5:
        """The translated tuple: the range's first address, and its first port whose reply tuple is free."""
        nat = ct.nat
        assert nat is not None and nat.addr_min is not None
        proto, src, dst, sport, dport = original
        ports = (
            [None] if nat.port_min is None or proto == ICMP else range(nat.port_min, (nat.port_max or nat.port_min) + 1)
        )
        for port in ports:
            if nat.kind == "src":
                candidate = (proto, nat.addr_min, dst, sport if port is None else port, dport)
            else:
                candidate = (proto, src, nat.addr_min, sport, dport if port is None else port)
            if (zone, _reverse(candidate)) not in self.table:
                return candidate
        raise RuntimeError(f"nat({nat.kind}): every port of {nat.port_min}..{nat.port_max} is taken in zone {zone}")

    @staticmethod
    def _exec(conn: Connection, ct: Ct) -> None:
        for action in ct.exec_:
            if action.field == "ct_mark":
                conn.mark = _masked(conn.mark, action)
            else:
                conn.label = _masked(conn.label, action)
