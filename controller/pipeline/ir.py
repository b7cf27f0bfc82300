"""The flow IR: immutable, hashable descriptions of flows, groups and meters.

Field names are OpenFlow 1.3 OXM names as os-ken spells them (`eth_dst`, `ipv4_src`, `tunnel_id`), plus
the Nicira extensions OVS adds (`reg0`..`reg15`, `tun_ipv4_dst`). Every value is an int (MACs and IPv4
addresses included), so comparing and hashing is cheap; the edges convert to text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from controller.pipeline.fields import RegField

# A match is a sorted tuple of (field, value, mask); mask None means exact.
MatchItem = tuple[str, int, int | None]
Match = tuple[MatchItem, ...]

OFPP_IN_PORT = 0xFFFFFFF8
OFPVID_PRESENT = 0x1000
OFPVID_NONE = 0x0000
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100
ARP_REQUEST, ARP_REPLY = 1, 2
IP_PROTO = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132}
BROADCAST_MAC = 0xFFFF_FFFF_FFFF
MULTICAST_BIT = 0x0100_0000_0000  # the I/G bit of the first octet

# ct_state bits (OVS's NXM_NX_CT_STATE, ovs-fields(7)): what conntrack said of the packet.
CT_STATE_BITS = {
    "new": 0x01,
    "est": 0x02,
    "rel": 0x04,
    "rpl": 0x08,
    "inv": 0x10,
    "trk": 0x20,
    "snat": 0x40,
    "dnat": 0x80,
}
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CT_SNAT, CT_DNAT = 0x40, 0x80
CT_FIELDS = frozenset({"ct_mark", "ct_label"})  # what a Ct's exec may set


def ct_state(**bits: bool) -> tuple[int, int]:
    """A masked ct_state match: `ct_state(trk=True, new=True, inv=False)` is OVS's `+trk+new-inv`.

    Raises ValueError for a name that is not a ct_state bit (new est rel rpl inv trk snat dnat).
    """
    value = mask = 0
    for name, on in bits.items():
        bit = CT_STATE_BITS.get(name)
        if bit is None:
            raise ValueError(f"ct_state: unknown bit {name!r}; expected one of {', '.join(CT_STATE_BITS)}")
        mask |= bit
        value |= bit if on else 0
    return value, mask


def match(**fields: int | tuple[int, int]) -> Match:
    """Build a match: `match(in_port=3, eth_dst=(0x01..., 0x01...))` — a tuple value is (value, mask)."""
    items: list[MatchItem] = [
        (name, value[0], value[1]) if isinstance(value, tuple) else (name, value, None)
        for name, value in fields.items()
    ]
    items.sort()
    return tuple(items)


def port_range(low: int, high: int) -> list[tuple[int, int]]:
    """(value, mask) pairs for masked tcp_dst/udp_dst/sctp_dst matches covering ports low..high exactly.

    The fewest aligned power-of-two blocks, as OVS's ovs-fields(7) suggests for ranges. Raises ValueError
    unless 0 <= low <= high <= 65535.
    """
    if not 0 <= low <= high <= 0xFFFF:
        raise ValueError(f"port range {low}-{high}: expected 0 <= low <= high <= 65535")
    blocks = []
    while low <= high:
        size = low & -low or 1 << 16
        while size > high - low + 1:
            size >>= 1
        blocks.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return blocks


def match_fields(m: Match) -> dict[str, tuple[int, int | None]]:
    return {name: (value, mask) for name, value, mask in m}


@dataclass(frozen=True, slots=True)
class Output:
    port: int


@dataclass(frozen=True, slots=True)
class OutputReg:
    """Output to the port number held in a register (Nicira output_reg)."""

    field: str


@dataclass(frozen=True, slots=True)
class SetField:
    """Set a field; with a mask only the mask's bits change (`set_field:value/mask->field` in ovs-ofctl).

    For a register the value is given in place (already shifted to its bits), like a masked match.
    """

    field: str
    value: int
    mask: int | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.value & ~self.mask:
            raise ValueError(f"set_field {self.field}: value {self.value:#x} has bits outside mask {self.mask:#x}")


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = ETH_TYPE_VLAN


@dataclass(frozen=True, slots=True)
class PopVlan:
    pass


@dataclass(frozen=True, slots=True)
class ToGroup:
    group_id: int


@dataclass(frozen=True, slots=True)
class DecTtl:
    pass


@dataclass(frozen=True, slots=True)
class Move:
    """Copy one whole field into another of the same width (Nicira reg_move)."""

    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class Nat:
    """NAT inside a Ct (OVS `nat(...)`): kind "src" or "dst" with an address (and port) range; kind None
    un-NATs a packet of an already NATed connection (OVS `nat` with no arguments).

    Addresses are IPv4 ints; `addr_max`/`port_max` None means a single value. Raises ValueError for a range
    given with kind None, an empty range, or ports without an address.
    """

    kind: Literal["src", "dst"] | None = None
    addr_min: int | None = None
    addr_max: int | None = None
    port_min: int | None = None
    port_max: int | None = None
    persistent: bool = False
    random: bool = False  # port choice: random rather than a hash of the 5-tuple

    def __post_init__(self) -> None:
        if self.kind not in ("src", "dst", None):
            raise ValueError(f"nat kind {self.kind!r}: expected 'src', 'dst' or None")
        ranged = (self.addr_min, self.addr_max, self.port_min, self.port_max)
        if self.kind is None and (any(v is not None for v in ranged) or self.persistent or self.random):
            raise ValueError("nat with no kind (un-NAT) takes no range or flags")
        if self.kind is not None and self.addr_min is None:
            raise ValueError(f"nat({self.kind}): an address is required")
        if self.addr_max is not None and self.addr_max < (self.addr_min or 0):
            raise ValueError("nat: addr_max below addr_min")
        if self.port_max is not None and (self.port_min is None or self.port_max < self.port_min):
            raise ValueError("nat: port_max needs a port_min at or below it")
        if self.port_min is not None and not 0 < self.port_min <= 0xFFFF:
            raise ValueError(f"nat: port {self.port_min} is outside 1..65535")


@dataclass(frozen=True, slots=True)
class Ct:
    """Send the packet through conntrack (OVS `ct(...)`, Nicira NXAST_CT).

    `zone` is a 16-bit number or a register field (`fields.CT_ZONE`) holding it. With `table` the packet
    continues, with its ct_state filled in, in that (later) table: the rest of the current action list and
    its goto do not apply to it (recirculation). `commit` stores the connection; `nat` translates it;
    `exec_` sets ct_mark/ct_label on the committed connection (only with commit). Raises ValueError on a
    zone outside 0..65535, an exec action other than SetField of ct_mark/ct_label, or exec without commit.
    """

    commit: bool = False
    zone: int | RegField = 0
    table: str | None = None
    nat: Nat | None = None
    exec_: tuple[SetField, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.zone, int) and not 0 <= self.zone <= 0xFFFF:
            raise ValueError(f"ct zone {self.zone}: outside 0..65535")
        if not isinstance(self.zone, int) and self.zone.bits > 16:
            raise ValueError(f"ct zone field {self.zone}: wider than 16 bits")
        for action in self.exec_:
            if not isinstance(action, SetField) or action.field not in CT_FIELDS:
                raise ValueError(f"ct exec: only set_field of ct_mark or ct_label, not {action!r}")
        if self.exec_ and not self.commit:
            raise ValueError("ct exec: setting ct_mark or ct_label needs commit")


@dataclass(frozen=True, slots=True)
class CtClear:
    """Forget the packet's conntrack state (OVS `ct_clear`): ct_state and friends read 0 again."""


@dataclass(frozen=True, slots=True)
class Conjunction:
    """Clause `clause` of `n_clauses` of conjunctive match `conj_id` (OVS `conjunction(id,k/n)`).

    A flow with this action never matches a packet itself: when, at one priority, a flow of every clause
    1..n matches, the packet takes the flow matching `conj_id=N` instead (ovs-fields(7), "Conjunctive
    Match Fields"). Raises ValueError unless 1 <= clause <= n_clauses, 2 <= n_clauses <= 64 (OVS limits) and
    conj_id fits 32 bits.
    """

    conj_id: int
    clause: int
    n_clauses: int
    # hashed once: a policy clause flow's conjunctions are counted and hashed at every change of the flow
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if not (1 <= self.clause <= self.n_clauses and 2 <= self.n_clauses <= 64):
            raise ValueError(
                f"conjunction {self.conj_id}: clause {self.clause}/{self.n_clauses} is not k/n with 1<=k<=n, 2<=n<=64"
            )
        if not 0 <= self.conj_id < 1 << 32:
            raise ValueError(f"conjunction id {self.conj_id}: does not fit in 32 bits")
        object.__setattr__(self, "_hash", hash((self.conj_id, self.clause, self.n_clauses)))

    def __hash__(self) -> int:
        return self._hash


Action = Output | OutputReg | SetField | PushVlan | PopVlan | ToGroup | DecTtl | Move | Ct | CtClear | Conjunction


@dataclass(frozen=True, eq=False)
class Flow:
    """One flow entry. `cookie` carries feature | object id; the cookie round is added when sending."""

    table: str
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: str | None = None
    meter: int | None = None
    cookie: int = 0
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        key = (self.table, self.priority, self.match, self.actions, self.goto, self.meter, self.cookie)
        object.__setattr__(self, "_hash", hash(key))

    @property
    def key(self) -> tuple[str, int, Match]:
        """What identifies a flow in its switch: table, priority and match."""
        return (self.table, self.priority, self.match)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Flow) or self._hash != other._hash:
            return False
        return (self.table, self.priority, self.match, self.actions, self.goto, self.meter, self.cookie) == (
            other.table,
            other.priority,
            other.match,
            other.actions,
            other.goto,
            other.meter,
            other.cookie,
        )


Bucket = tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """An OpenFlow group of type ALL: every bucket gets a copy of the packet."""

    group_id: int
    buckets: tuple[Bucket, ...]


@dataclass(frozen=True, slots=True)
class Meter:
    """A drop-band meter in kbit/s with a burst in kbit."""

    meter_id: int
    rate_kbps: int
    burst_kb: int
