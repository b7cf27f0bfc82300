"""The flow IR: immutable, hashable descriptions of flows, groups and meters.

Field names are OpenFlow 1.3 OXM names as os-ken spells them (`eth_dst`, `ipv4_src`, `tunnel_id`), plus
the Nicira extensions OVS adds (`reg0`..`reg15`, `tun_ipv4_dst`). Every value is an int (MACs and IPv4
addresses included), so comparing and hashing is cheap; the edges convert to text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
IP_PROTO = {"icmp": 1, "tcp": 6, "udp": 17}
BROADCAST_MAC = 0xFFFF_FFFF_FFFF
MULTICAST_BIT = 0x0100_0000_0000  # the I/G bit of the first octet


def match(**fields: int | tuple[int, int]) -> Match:
    """Build a match: `match(in_port=3, eth_dst=(0x01..., 0x01...))` — a tuple value is (value, mask)."""
    items: list[MatchItem] = [
        (name, value[0], value[1]) if isinstance(value, tuple) else (name, value, None)
        for name, value in fields.items()
    ]
    items.sort()
    return tuple(items)


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
    field: str
    value: int


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


Action = Output | OutputReg | SetField | PushVlan | PopVlan | ToGroup | DecTtl | Move


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
