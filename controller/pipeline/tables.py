"""The br-int pipeline, declared in order in one place.

Each table names the fields its flows may match, the fields they may set, where they may go next and what
happens on a miss. Table ids follow declaration order. `PIPELINE.verify(flow)` rejects a flow that breaks
its table's declaration, so a wiring mistake fails a unit test instead of a switch.

Registers are declared by field name (`network`, `from_remote`, see controller.pipeline.fields), which grants
that bit range of the register: a masked match or set-field must stay inside the declared bits, and an
unmasked one (the whole register) is allowed only when the table declares every field of that register.
A table that may send packets through conntrack lists `Ct` in its actions and the later tables a
`ct(table=...)` may continue in (`ct_tables`); `Conjunction` is an action kind like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.pipeline.fields import BY_NAME, REGISTER_BITS, defined_bits
from controller.pipeline.ir import (
    Conjunction,
    Ct,
    CtClear,
    DecTtl,
    Flow,
    Move,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
)

_REG = re.compile(r"reg\d+")
_ALL_BITS = (1 << REGISTER_BITS) - 1


class PipelineError(ValueError):
    """A flow that does not fit the table it is in."""


@dataclass(frozen=True)
class Table:
    name: str
    job: str
    matches: frozenset[str]
    sets: frozenset[str] = frozenset()
    actions: frozenset[type] = frozenset()  # action kinds besides SetField
    next_tables: tuple[str, ...] = ()
    miss_goto: str | None = None  # None: a miss drops
    miss_reason: str = ""
    ct_tables: tuple[str, ...] = ()  # where a Ct of this table may continue (ct(table=...))
    match_bits: tuple[tuple[str, int], ...] = ()  # register -> bits it may match, from `matches`
    set_bits: tuple[tuple[str, int], ...] = ()  # register -> bits it may set, from `sets`


def _names(declared: str) -> tuple[frozenset[str], tuple[tuple[str, int], ...]]:
    """Field names and register bits of a declaration: register fields by name, raw `regN` as all 32 bits."""
    names: set[str] = set()
    bits: dict[str, int] = {}
    for name in declared.split():
        if name in BY_NAME:
            reg = BY_NAME[name]
            names.add(reg.register)
            bits[reg.register] = bits.get(reg.register, 0) | reg.mask
        else:
            names.add(name)
            if _REG.fullmatch(name):
                bits[name] = _ALL_BITS
    return frozenset(names), tuple(sorted(bits.items()))


def _table(
    name: str,
    job: str,
    *,
    matches: str,
    sets: str = "",
    actions: tuple[type, ...] = (),
    next_tables: str = "",
    miss_goto: str | None = None,
    miss_reason: str = "",
    ct_tables: str = "",
) -> Table:
    match_names, match_bits = _names(matches)
    set_names, set_bits = _names(sets)
    return Table(
        name,
        job,
        match_names,
        set_names,
        frozenset(actions),
        tuple(next_tables.split()),
        miss_goto,
        miss_reason,
        tuple(ct_tables.split()),
        match_bits,
        set_bits,
    )


# Policy tables: the packet's addresses and ports, and conntrack's verdict on it.
_POLICY_MATCHES = (
    "eth_type ipv4_src ipv4_dst ip_proto tcp_src tcp_dst udp_src udp_dst sctp_src sctp_dst"
    " ct_state ct_zone ct_mark ct_label conj_id"
)

TABLES: tuple[Table, ...] = (
    _table(
        "classify",
        "in_port (or tunnel VNI, or VLAN id on an uplink) -> network and tenant",
        matches="in_port vlan_vid tunnel_id eth_dst eth_type ipv4_dst",
        sets="network tenant flags eth_dst",
        actions=(PopVlan, Ct),
        next_tables="port_security l2",
        miss_reason="classify: the port or segment belongs to no network here",
        ct_tables="l3_gateway",  # a reply to a network's transit address, un-SNATed (features/gateway.py)
    ),
    _table(
        "port_security",
        "a pod sends only from its own MAC and IP, ARP included",
        matches="in_port eth_src eth_type ipv4_src arp_spa arp_sha",
        next_tables="arp_responder",
        miss_reason="port security: source MAC or IP is not the port's own",
    ),
    _table(
        "arp_responder",
        "ARP requests for endpoints and the gateway answered in flows",
        matches="network eth_type arp_op arp_tpa",
        sets="eth_src eth_dst arp_op arp_sha arp_spa arp_tha arp_tpa",
        actions=(Move, Output),
        next_tables="qos",
        miss_goto="qos",
    ),
    _table(
        "qos",
        "meter the sending endpoint's traffic (its egress meter)",
        matches="in_port network",
        next_tables="egress_policy",
        miss_goto="egress_policy",
    ),
    _table(
        "egress_policy",
        "the sender's policy rules: untracked IP through conntrack and back here; established and related "
        "pass; a new connection is committed if allowed",
        matches=f"network tenant {_POLICY_MATCHES}",
        sets="egress_verdict egress_rule ct_mark ct_label",
        actions=(Ct, CtClear, Conjunction),
        next_tables="l3_gateway",
        miss_goto="l3_gateway",
        ct_tables="egress_policy l3_gateway",
    ),
    _table(
        "l3_gateway",
        "traffic to the network's gateway MAC is routed; an un-SNATed reply only if conntrack knew it",
        matches="network eth_dst eth_type ct_state ct_zone",
        next_tables="l3_route l2",
        miss_goto="l2",
    ),
    _table(
        "l3_route",
        "host routes within the tenant: rewrite MACs, decrement TTL, switch network",
        matches="tenant eth_type ipv4_dst",
        sets="eth_src eth_dst network",
        actions=(DecTtl,),
        next_tables="l2 egress_gateway",
        miss_reason="l3: no route to that address in this tenant",
    ),
    _table(
        "l2",
        "(network, destination MAC) -> local port, remote node or uplink; broadcast to the network's group",
        matches="network from_remote eth_dst",
        sets="out_port to_gateway tunnel_id tun_ipv4_dst vlan_vid",
        actions=(PushVlan, Output, ToGroup),
        next_tables="ingress_policy",
        miss_reason="l2: no such destination MAC in this network",
    ),
    _table(
        "ingress_policy",
        "the receiver's policy rules: untracked IP through conntrack and back here; established and related "
        "pass; a new connection is committed if allowed",
        matches=f"network tenant out_port from_gateway {_POLICY_MATCHES}",
        sets="ingress_verdict ingress_rule ct_mark ct_label",
        actions=(Ct, CtClear, Conjunction),
        next_tables="output",
        miss_goto="output",
        ct_tables="ingress_policy output",
    ),
    _table(
        "output",
        "deliver to the port l2 chose, through the receiving endpoint's ingress meter if it has one",
        matches="out_port",
        actions=(OutputReg,),
        miss_reason="output: no port",
    ),
    # Egress of networks with nat_outgoing through the node's gateway port (features/gateway.py).
    _table(
        "egress_gateway",
        "a tenant's traffic for outside the cluster: its node ports in; cluster, transit and node addresses "
        "refused; else SNAT",
        matches="network eth_type ipv4_dst ip_proto tcp_dst udp_dst",
        actions=(Ct,),
        miss_reason="gateway: the network does not NAT outgoing traffic",
        ct_tables="egress_snat",
    ),
    _table(
        "egress_snat",
        "a new connection is committed with SNAT to the network's transit address, in its own zone",
        matches="network eth_type ct_state",
        actions=(Ct,),
        next_tables="egress_out",
        miss_reason="gateway: neither a new nor an established connection",
        ct_tables="egress_out",
    ),
    _table(
        "egress_out",
        "up the node's gateway port",
        matches="",
        actions=(Output,),
        miss_reason="gateway: no gateway port on this node",
    ),
)


class Pipeline:
    def __init__(self, tables: tuple[Table, ...]) -> None:
        self.tables = tables
        self.by_name = {t.name: t for t in tables}
        self.ids = {t.name: i for i, t in enumerate(tables)}
        self.names = {i: t.name for i, t in enumerate(tables)}
        for table in tables:
            for target in (*table.next_tables, *table.ct_tables, *([table.miss_goto] if table.miss_goto else [])):
                # A ct may recirculate into its own table: the packet comes back tracked (+trk), so the flow
                # that sent it through conntrack (-trk) no longer matches; anything else only goes forward.
                back = self.ids.get(target, -1) < self.ids[table.name]
                if back or (target == table.name and target not in table.ct_tables):
                    raise PipelineError(f"table {table.name}: may only go forward, not to {target!r}")

    def table_id(self, name: str) -> int:
        return self.ids[name]

    def verify(self, flow: Flow) -> Flow:
        """Return the flow unchanged if it fits its table's declaration; raise PipelineError if not."""
        table = self.by_name.get(flow.table)
        if table is None:
            raise PipelineError(f"flow in unknown table {flow.table!r}")
        for name, value, mask in flow.match:
            if name not in table.matches:
                raise PipelineError(f"table {table.name} does not match on {name!r}: {flow}")
            if mask == 0:  # OVS drops such a field from the flow it stores: it would never equal what we sent
                raise PipelineError(f"table {table.name}: {name!r} with mask 0 matches anything; leave it out: {flow}")
            if _REG.fullmatch(name):
                _check_bits(table, "match", dict(table.match_bits), name, value, mask, flow)
        for action in flow.actions:
            if isinstance(action, SetField):
                if action.field not in table.sets:
                    raise PipelineError(f"table {table.name} does not set {action.field!r}: {flow}")
                if _REG.fullmatch(action.field):
                    _check_bits(table, "set", dict(table.set_bits), action.field, action.value, action.mask, flow)
            elif isinstance(action, Ct):
                self._verify_ct(table, action, flow)
            elif isinstance(action, Move):
                if Move not in table.actions or action.dst not in table.sets:
                    raise PipelineError(f"table {table.name} does not move into {action.dst!r}: {flow}")
            elif type(action) not in table.actions:
                raise PipelineError(f"table {table.name} does not allow {type(action).__name__}: {flow}")
        if any(isinstance(a, Conjunction) for a in flow.actions) and (
            flow.goto is not None or not all(isinstance(a, Conjunction) for a in flow.actions)
        ):
            raise PipelineError(f"table {table.name}: a conjunction flow has only conjunction actions: {flow}")
        if flow.goto is not None and flow.goto not in table.next_tables:
            raise PipelineError(f"table {table.name} may not go to {flow.goto!r}: {flow}")
        return flow

    def _verify_ct(self, table: Table, ct: Ct, flow: Flow) -> None:
        if Ct not in table.actions:
            raise PipelineError(f"table {table.name} does not allow Ct: {flow}")
        if ct.table is not None and ct.table not in table.ct_tables:
            raise PipelineError(f"table {table.name}: ct may not continue in {ct.table!r}: {flow}")
        if not isinstance(ct.zone, int):
            _check_bits(table, "match", dict(table.match_bits), ct.zone.register, 0, ct.zone.mask, flow)
        for action in ct.exec_:
            if action.field not in table.sets:
                raise PipelineError(f"table {table.name} does not set {action.field!r} (ct exec): {flow}")

    def miss_flows(self, cookie: int) -> list[Flow]:
        """Priority-0 flows making each table's miss explicit: go on, or drop."""
        return [Flow(t.name, 0, (), goto=t.miss_goto, cookie=cookie) for t in self.tables]


def _check_bits(
    table: Table, verb: str, declared: dict[str, int], register: str, value: int, mask: int | None, flow: Flow
) -> None:
    """A register access must stay inside the table's declared bits (see the module doc)."""
    allowed = declared.get(register, 0)
    touched = value | (defined_bits(register) if mask is None else mask)
    if touched & ~allowed:
        raise PipelineError(
            f"table {table.name} may {verb} only bits {allowed:#x} of {register}, not {touched & ~allowed:#x}: {flow}"
        )


PIPELINE = Pipeline(TABLES)
