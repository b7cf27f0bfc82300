"""The br-int pipeline, declared in order in one place.

Each table names the fields its flows may match, the fields they may set, where they may go next and what
happens on a miss. Table ids follow declaration order. `PIPELINE.verify(flow)` rejects a flow that breaks
its table's declaration, so a wiring mistake fails a unit test instead of a switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.pipeline.fields import FLAGS, NETWORK, OUT_PORT, TENANT
from controller.pipeline.ir import DecTtl, Flow, Move, Output, OutputReg, PopVlan, PushVlan, SetField, ToGroup


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
) -> Table:
    return Table(
        name,
        job,
        frozenset(matches.split()),
        frozenset(sets.split()),
        frozenset(actions),
        tuple(next_tables.split()),
        miss_goto,
        miss_reason,
    )


net, ten, flg, out = NETWORK.register, TENANT.register, FLAGS.register, OUT_PORT.register

TABLES: tuple[Table, ...] = (
    _table(
        "classify",
        "in_port (or tunnel VNI, or VLAN id on an uplink) -> network and tenant",
        matches="in_port vlan_vid tunnel_id eth_dst",
        sets=f"{net} {ten} {flg}",
        actions=(PopVlan,),
        next_tables="port_security l2",
        miss_reason="classify: the port or segment belongs to no network here",
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
        matches=f"{net} eth_type arp_op arp_tpa",
        sets="eth_src eth_dst arp_op arp_sha arp_spa arp_tha arp_tpa",
        actions=(Move, Output),
        next_tables="qos",
        miss_goto="qos",
    ),
    _table(
        "qos",
        "meter the sending endpoint's traffic (its egress meter)",
        matches=f"in_port {net}",
        next_tables="egress_policy",
        miss_goto="egress_policy",
    ),
    _table(
        "egress_policy",
        "the sender's policy rules",
        matches=f"{net} {ten} eth_type ipv4_src ipv4_dst ip_proto tcp_dst udp_dst",
        next_tables="l3_gateway",
        miss_goto="l3_gateway",
    ),
    _table(
        "l3_gateway",
        "traffic to the network's gateway MAC is routed",
        matches=f"{net} eth_dst eth_type",
        next_tables="l3_route l2",
        miss_goto="l2",
    ),
    _table(
        "l3_route",
        "host routes within the tenant: rewrite MACs, decrement TTL, switch network",
        matches=f"{ten} eth_type ipv4_dst",
        sets=f"eth_src eth_dst {net}",
        actions=(DecTtl,),
        next_tables="l2",
        miss_reason="l3: no route to that address in this tenant",
    ),
    _table(
        "l2",
        "(network, destination MAC) -> local port, remote node or uplink; broadcast to the network's group",
        matches=f"{net} {flg} eth_dst",
        sets=f"{out} tunnel_id tun_ipv4_dst vlan_vid",
        actions=(PushVlan, Output, ToGroup),
        next_tables="ingress_policy",
        miss_reason="l2: no such destination MAC in this network",
    ),
    _table(
        "ingress_policy",
        "the receiver's policy rules",
        matches=f"{net} {ten} {out} eth_type ipv4_src ipv4_dst ip_proto tcp_dst udp_dst",
        next_tables="output",
        miss_goto="output",
    ),
    _table(
        "output",
        "deliver to the port l2 chose, through the receiving endpoint's ingress meter if it has one",
        matches=out,
        actions=(OutputReg,),
        miss_reason="output: no port",
    ),
)


class Pipeline:
    def __init__(self, tables: tuple[Table, ...]) -> None:
        self.tables = tables
        self.by_name = {t.name: t for t in tables}
        self.ids = {t.name: i for i, t in enumerate(tables)}
        self.names = {i: t.name for i, t in enumerate(tables)}
        for table in tables:
            for target in (*table.next_tables, *([table.miss_goto] if table.miss_goto else [])):
                if self.ids.get(target, -1) <= self.ids[table.name]:
                    raise PipelineError(f"table {table.name}: may only go forward, not to {target!r}")

    def table_id(self, name: str) -> int:
        return self.ids[name]

    def verify(self, flow: Flow) -> Flow:
        """Return the flow unchanged if it fits its table's declaration; raise PipelineError if not."""
        table = self.by_name.get(flow.table)
        if table is None:
            raise PipelineError(f"flow in unknown table {flow.table!r}")
        for name, _value, _mask in flow.match:
            if name not in table.matches:
                raise PipelineError(f"table {table.name} does not match on {name!r}: {flow}")
        for action in flow.actions:
            if isinstance(action, SetField):
                if action.field not in table.sets:
                    raise PipelineError(f"table {table.name} does not set {action.field!r}: {flow}")
            elif isinstance(action, Move):
                if Move not in table.actions or action.dst not in table.sets:
                    raise PipelineError(f"table {table.name} does not move into {action.dst!r}: {flow}")
            elif type(action) not in table.actions:
                raise PipelineError(f"table {table.name} does not allow {type(action).__name__}: {flow}")
        if flow.goto is not None and flow.goto not in table.next_tables:
            raise PipelineError(f"table {table.name} may not go to {flow.goto!r}: {flow}")
        return flow

    def miss_flows(self, cookie: int) -> list[Flow]:
        """Priority-0 flows making each table's miss explicit: go on, or drop."""
        return [Flow(t.name, 0, (), goto=t.miss_goto, cookie=cookie) for t in self.tables]


PIPELINE = Pipeline(TABLES)
