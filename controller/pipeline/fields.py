"""Register layout on br-int: every field a named bit range of a Nicira register, with named flag values.

Registers are zeroed for every packet that enters the bridge, including packets from the tunnel, so a
field carries nothing from one switch to the next. A packet that recirculates through conntrack
(`ct(table=...)`) keeps its registers.

    register  bits     field            set by                                  read by
    reg0      0..15    network          classify; l3_route on a routed packet   most tables; conntrack_zone
    reg0      16..31   (free)
    reg1      0..23    tenant           classify (never rewritten)              l3_route, policy tables
    reg1      24..31   (free)
    reg2      0        from_remote      classify                                l2 (flood locally only)
    reg2      1        from_gateway     classify (the node gateway port)        ingress policy (own host), SNAT
    reg2      2        to_gateway       l2 / l3 (bound for the gateway port)    no table yet (reserved)
    reg2      3        snat_needed      egress classification                   the SNAT stage
    reg2      4..5     egress_verdict   egress policy (allow / deny)            later tables, metrics
    reg2      6..7     ingress_verdict  ingress policy (allow / deny)           output, metrics
    reg2      8..31    (free)
    reg3      0..15    out_port         l2                                      ingress policy, output
    reg3      16..31   (free)
    reg4      0..31    egress_rule      egress policy: the conj_id that decided  audit, metrics
    reg5      0..31    ingress_rule     ingress policy: the conj_id that decided audit, metrics
    reg6..15           (free)

The conntrack zone is the network id (`CT_ZONE`, reg0[0..15]): network ids are 16 bits like a zone, while
tenant ids are 24 bits and do not fit. Networks of one tenant with overlapping addresses therefore never
share connection state.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.pipeline.ir import SetField

REGISTER_BITS = 32


@dataclass(frozen=True, slots=True, eq=False)
class RegField:
    """A named bit range `register[start..end]` (both inclusive, like OVS's `NXM_NX_REG0[0..15]`).

    Two fields over the same bits compare equal (a switch knows only the bits), so an IR action naming one
    equals the same action read back from a switch. Raises ValueError for a range outside the register.
    """

    name: str
    register: str  # the Nicira register holding it, e.g. "reg0"
    start: int
    end: int
    doc: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < REGISTER_BITS:
            raise ValueError(f"field {self.name}: bits {self.start}..{self.end} are outside a 32-bit register")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegField):
            return NotImplemented
        return (self.register, self.start, self.end) == (other.register, other.start, other.end)

    def __hash__(self) -> int:
        return hash((self.register, self.start, self.end))

    @property
    def bits(self) -> int:
        """Width in bits."""
        return self.end - self.start + 1

    @property
    def mask(self) -> int:
        """The range as a mask on the whole register."""
        return ((1 << self.bits) - 1) << self.start

    @property
    def whole(self) -> bool:
        """True when the field is the whole register, so it is matched and set without a mask."""
        return self.bits == REGISTER_BITS

    def _shift(self, value: int) -> int:
        if not 0 <= value < 1 << self.bits:
            raise ValueError(f"field {self.name}: value {value} does not fit in {self.bits} bits")
        return value << self.start

    def match(self, value: int) -> dict[str, tuple[int, int] | int]:
        """`ir.match` keyword arguments matching the field's value: `match(**NETWORK.match(5))`."""
        shifted = self._shift(value)
        return {self.register: shifted if self.whole else (shifted, self.mask)}

    def set(self, value: int) -> SetField:
        """The action setting just this range to `value` (a masked set-field unless it is the whole register)."""
        shifted = self._shift(value)
        return SetField(self.register, shifted) if self.whole else SetField(self.register, shifted, self.mask)

    def __str__(self) -> str:
        return f"{self.name} ({self.register}[{self.start}..{self.end}])"


@dataclass(frozen=True, slots=True)
class RegMark:
    """A named value of a field, e.g. a flag bit set to 1. Raises ValueError if the value does not fit."""

    field: RegField
    value: int

    def __post_init__(self) -> None:
        self.field._shift(self.value)

    def match(self) -> dict[str, tuple[int, int] | int]:
        """`ir.match` keyword arguments for packets carrying this mark."""
        return self.field.match(self.value)

    def set(self) -> SetField:
        """The action putting this mark on a packet (only the field's bits change)."""
        return self.field.set(self.value)


def _field(name: str, register: str, start: int, end: int, doc: str) -> RegField:
    return RegField(name, register, start, end, doc)


NETWORK = _field(
    "network",
    "reg0",
    0,
    15,
    "Network id. Set by classify, rewritten by l3_route; read by arp_responder, qos, policy, l3 and l2.",
)
CT_ZONE = _field(
    "conntrack_zone",
    "reg0",
    0,
    15,
    "The conntrack zone: the network id (same bits as `network`, set with it); read by ct(zone=...).",
)
TENANT = _field(
    "tenant", "reg1", 0, 23, "Tenant id. Set by classify, never rewritten; read by l3_route and the policy tables."
)
FLAGS = _field(
    "flags",
    "reg2",
    0,
    31,
    "The whole flag word. Written at once (unmasked) only by classify, on entry; read through its bits.",
)
FROM_REMOTE = _field(
    "from_remote",
    "reg2",
    0,
    0,
    "Came from another node (tunnel, uplink, fabric link). Set by classify; read by l2 (flood locally only).",
)
FROM_GATEWAY = _field(
    "from_gateway",
    "reg2",
    1,
    1,
    "Came in on the node gateway port. Set by classify; read by ingress_policy (the node's own host stack is"
    " always allowed, features/gateway.py) and the SNAT stage.",
)
TO_GATEWAY = _field(
    "to_gateway",
    "reg2",
    2,
    2,
    "Leaves through the node gateway port. Set by l3/l2; read by the policy and SNAT stages.",
)
SNAT_NEEDED = _field(
    "snat_needed",
    "reg2",
    3,
    3,
    "Leaves the cluster and needs SNAT. Set by egress classification; read by the SNAT stage.",
)
EGRESS_VERDICT = _field(
    "egress_verdict",
    "reg2",
    4,
    5,
    "The sender's policy verdict (EGRESS_ALLOW/EGRESS_DENY). Set by egress_policy; read by later tables.",
)
INGRESS_VERDICT = _field(
    "ingress_verdict",
    "reg2",
    6,
    7,
    "The receiver's policy verdict (INGRESS_ALLOW/INGRESS_DENY). Set by ingress_policy; read by output.",
)
OUT_PORT = _field(
    "out_port",
    "reg3",
    0,
    15,
    "The local ofport. Set by l2; read by ingress_policy (whose port) and output (output_reg).",
)
EGRESS_RULE = _field(
    "egress_rule",
    "reg4",
    0,
    31,
    "conj_id of the egress rule that decided. Set by egress_policy; read by audit and metrics flows.",
)
INGRESS_RULE = _field(
    "ingress_rule",
    "reg5",
    0,
    31,
    "conj_id of the ingress rule that decided. Set by ingress_policy; read by audit and metrics flows.",
)

FLAG_FROM_REMOTE = FROM_REMOTE.mask  # the bit of reg2, for flows that write the flag word whole

FROM_REMOTE_MARK = RegMark(FROM_REMOTE, 1)
FROM_GATEWAY_MARK = RegMark(FROM_GATEWAY, 1)
TO_GATEWAY_MARK = RegMark(TO_GATEWAY, 1)
SNAT_NEEDED_MARK = RegMark(SNAT_NEEDED, 1)
EGRESS_ALLOW = RegMark(EGRESS_VERDICT, 1)
EGRESS_DENY = RegMark(EGRESS_VERDICT, 2)
INGRESS_ALLOW = RegMark(INGRESS_VERDICT, 1)
INGRESS_DENY = RegMark(INGRESS_VERDICT, 2)

ALL_FIELDS = (
    NETWORK,
    CT_ZONE,
    TENANT,
    FLAGS,
    FROM_REMOTE,
    FROM_GATEWAY,
    TO_GATEWAY,
    SNAT_NEEDED,
    EGRESS_VERDICT,
    INGRESS_VERDICT,
    OUT_PORT,
    EGRESS_RULE,
    INGRESS_RULE,
)
BY_NAME = {f.name: f for f in ALL_FIELDS}


def field_at(register: str, start: int, end: int) -> RegField:
    """The named field over exactly these bits (the first declared wins, CT_ZONE before NETWORK), or an
    unnamed one `regN[start..end]`."""
    for f in (CT_ZONE, *ALL_FIELDS):
        if (f.register, f.start, f.end) == (register, start, end):
            return f
    return RegField(f"{register}[{start}..{end}]", register, start, end)


def defined_bits(register: str) -> int:
    """Every bit of `register` some field uses: an unmasked write of it must own all of them."""
    bits = 0
    for f in ALL_FIELDS:
        if f.register == register:
            bits |= f.mask
    return bits


def enter_network(network_id: int, tenant_id: int, *, from_remote: bool) -> tuple[SetField, ...]:
    """The register writes that put a packet into its network and tenant, as classify does."""
    writes = (SetField(NETWORK.register, network_id), SetField(TENANT.register, tenant_id))
    return (*writes, SetField(FLAGS.register, FLAG_FROM_REMOTE)) if from_remote else writes
