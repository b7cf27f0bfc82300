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
binding, forwards or in reverse. Ports are those of TCP, UDP and SCTP; other protocols track with ports 0.
Source: ovs-fields(7) "Connection Tracking Fields", ovs-actions(7) "The ct action".
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.pipeline.ir import CT_DNAT, CT_EST, CT_INV, CT_NEW, CT_RPL, CT_SNAT, CT_TRK, ETH_TYPE_IP, Ct, SetField

Tuple5 = tuple[int, int, int, int, int]  # ip_proto, src, dst, src port, dst port
PORT_FIELDS = {6: ("tcp_src", "tcp_dst"), 17: ("udp_src", "udp_dst"), 132: ("sctp_src", "sctp_dst")}


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
    """The packet's 5-tuple, or None if conntrack cannot track it."""
    if fields.get("eth_type") != ETH_TYPE_IP or "ipv4_src" not in fields or "ipv4_dst" not in fields:
        return None
    proto = fields.get("ip_proto", 0)
    src_port, dst_port = PORT_FIELDS.get(proto, ("", ""))
    return (proto, fields["ipv4_src"], fields["ipv4_dst"], fields.get(src_port, 0), fields.get(dst_port, 0))


def _reverse(t: Tuple5) -> Tuple5:
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
        found = self.table.get((zone, tuple_))
        if found is None:
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
        ports = [None] if nat.port_min is None else range(nat.port_min, (nat.port_max or nat.port_min) + 1)
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
