"""A simulated OpenFlow 1.3 switch and a simulated network of them, to prove compiled state right.

The switch applies flows the way OpenFlow 1.3 says: the highest-priority match in a table wins, apply-actions
run in order (an output sends a copy of the packet as it is at that point), goto continues in a later
table, a miss with no flow drops. Registers start at zero on every switch. A group of type ALL runs every
bucket on its own copy. Output to the port a packet came in on is suppressed unless it is OFPP_IN_PORT.
Meters count packets (they never drop here).

Conntrack follows OVS (see controller.pipeline.conntrack): each switch keeps its connections across packets,
so a packet and then its reply can be sent through one SimNetwork. `ct(table=T)` continues at T with the
packet's ct_state, ct_zone, ct_mark and ct_label filled in, and the rest of the flow's actions and its goto
do not apply (recirculation); a `ct` without a table commits and NATs but leaves the ct fields the later
tables see as they were, as OVS does. Conjunctive matches follow ovs-fields(7): a flow of `conjunction`
actions never matches by itself; when, at one priority, some flow of every clause 1..n of id N matches,
the highest-priority flow matching `conj_id=N` is taken, unless an ordinary flow of higher priority matches.

The network joins the switches the way the lab does: a flow-based VXLAN port reaching the node whose
tunnel IP is `tun_ipv4_dst`, uplinks on one physical L2 switch that floods (the worst case for loops),
and fabric links between node ports (a link the model holds down carries nothing).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.pipeline.conntrack import Conntrack
from controller.pipeline.ir import (
    CT_STATE_BITS,
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
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
from controller.pipeline.state import NodeState
from controller.pipeline.tables import PIPELINE
from topology.graph import FABRIC
from topology.model import GATEWAY_OFPORT, TUNNEL_OFPORT, UPLINK_OFPORT, Model

MAX_EVENTS = 10_000  # more switch visits than this for one packet is a forwarding loop
TUNNEL_FIELDS = ("tunnel_id", "tun_ipv4_dst")
CT_MATCH_FIELDS = ("ct_state", "ct_zone", "ct_mark", "ct_label")


class SimulationError(RuntimeError):
    """The state is not a valid switch state (for example two flows of one priority both match)."""


@dataclass
class Packet:
    """Header fields by IR name (ints), with the VLAN stack kept apart, outermost tag first."""

    fields: dict[str, int]
    vlans: tuple[int, ...] = ()

    def copy(self) -> Packet:
        return Packet(dict(self.fields), self.vlans)


@dataclass
class Hop:
    node: str
    table: str  # a pipeline table, or "wire" between switches
    detail: str
    flow: Flow | None = None  # the flow that matched, if any


@dataclass
class Delivery:
    endpoint: str
    node: str
    packet: Packet


@dataclass
class Trace:
    hops: list[Hop] = field(default_factory=list)
    delivered: list[Delivery] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    meters: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def verdict(self) -> str:
        return "delivered" if self.delivered else "dropped"

    @property
    def delivered_to(self) -> list[str]:
        return [d.endpoint for d in self.delivered]

    @property
    def reason(self) -> str:
        return self.drops[0] if self.drops else "no copy left any switch"


@dataclass
class _Context:
    """Per-copy pipeline state: the packet, where it came in, registers and tunnel metadata."""

    packet: Packet
    in_port: int
    regs: dict[str, int] = field(default_factory=dict)
    tunnel: dict[str, int] = field(default_factory=dict)
    ct: dict[str, int] = field(default_factory=dict)  # ct_state, ct_zone, ct_mark, ct_label
    conj_id: int = 0

    def copy(self) -> _Context:
        return _Context(self.packet.copy(), self.in_port, dict(self.regs), dict(self.tunnel), dict(self.ct))

    def value(self, name: str) -> int | None:
        if name == "in_port":
            return self.in_port
        if name.startswith("reg"):
            return self.regs.get(name, 0)
        if name == "vlan_vid":
            return OFPVID_PRESENT | self.packet.vlans[0] if self.packet.vlans else 0
        if name in TUNNEL_FIELDS:
            return self.tunnel.get(name, 0)
        if name in CT_MATCH_FIELDS:
            return self.ct.get(name, 0)
        if name == "conj_id":
            return self.conj_id
        return self.packet.fields.get(name)


class SimSwitch:
    def __init__(self, name: str, state: NodeState) -> None:
        self.name = name
        self.tables: dict[str, list[Flow]] = {t.name: [] for t in PIPELINE.tables}
        self.clauses: dict[str, list[Flow]] = {t.name: [] for t in PIPELINE.tables}  # conjunction flows
        for flow in state.flows():
            if any(isinstance(a, Conjunction) for a in flow.actions):
                if flow.goto is not None or not all(isinstance(a, Conjunction) for a in flow.actions):
                    raise SimulationError(f"{name}: conjunction mixed with other actions: {describe(flow)}")
                self.clauses[flow.table].append(flow)
            else:
                self.tables[flow.table].append(flow)
        for flows in (*self.tables.values(), *self.clauses.values()):
            flows.sort(key=lambda f: -f.priority)
        self.groups = state.groups()
        self.meters = state.meters()
        self.conntrack = Conntrack()

    def process(
        self, packet: Packet, in_port: int, tunnel: dict[str, int], trace: Trace
    ) -> list[tuple[int, Packet, dict[str, int]]]:
        """Run one packet through the pipeline; return its (port, packet, tunnel metadata) outputs."""
        outputs: list[tuple[int, Packet, dict[str, int]]] = []
        ctx = _Context(packet.copy(), in_port, {}, dict(tunnel))
        table: str | None = PIPELINE.tables[0].name
        while table is not None:
            flow, via = self._lookup(table, ctx)
            if flow is None:
                trace.hops.append(Hop(self.name, table, "miss: no flow"))
                trace.drops.append(f"{self.name}: {PIPELINE.by_name[table].miss_reason or table + ': miss'}")
                return outputs
            trace.hops.append(Hop(self.name, table, describe(flow) + via, flow))
            if flow.meter is not None:
                if flow.meter not in self.meters:
                    raise SimulationError(f"{self.name}: flow uses meter {flow.meter}, which does not exist")
                trace.meters[(self.name, flow.meter)] += 1
            went_on = self._run(flow.actions, ctx, outputs, trace)
            if went_on is False:
                return outputs
            if isinstance(went_on, str):  # recirculated by ct(table=...)
                table = went_on
                continue
            if flow.goto is None and not flow.actions and flow.priority == 0:
                trace.drops.append(f"{self.name}: {PIPELINE.by_name[table].miss_reason or table + ': dropped'}")
            table = flow.goto
        return outputs

    def _lookup(self, table: str, ctx: _Context) -> tuple[Flow | None, str]:
        """The flow a packet takes in `table`, and how (the clauses of a conjunctive match) for the trace."""
        hard = self._ordinary(table, ctx)
        if not self.clauses[table]:
            return hard, ""
        floor = -1 if hard is None else hard.priority
        matched: dict[tuple[int, int, int], dict[int, list[Flow]]] = {}  # (priority, id, n) -> clause -> flows
        for flow in self.clauses[table]:
            if flow.priority < floor:
                break
            if matches(flow, ctx):
                for conj in flow.actions:
                    assert isinstance(conj, Conjunction)
                    key = (flow.priority, conj.conj_id, conj.n_clauses)
                    matched.setdefault(key, {}).setdefault(conj.clause, []).append(flow)
        for (priority, conj_id, n_clauses), by_clause in sorted(matched.items(), key=lambda kv: (-kv[0][0], kv[0][1:])):
            if len(by_clause) != n_clauses:
                continue
            ctx.conj_id = conj_id
            found = self._ordinary(table, ctx, conj_only=True)
            ctx.conj_id = 0
            if found is not None:
                clauses = "; ".join(f"{k}/{n_clauses} {describe(f)}" for k in sorted(by_clause) for f in by_clause[k])
                return found, f" (conjunction {conj_id} at priority {priority}: {clauses})"
        return hard, ""

    def _ordinary(self, table: str, ctx: _Context, *, conj_only: bool = False) -> Flow | None:
        best: Flow | None = None
        for flow in self.tables[table]:
            if best is not None and flow.priority < best.priority:
                break
            if conj_only and not any(name == "conj_id" for name, _v, _m in flow.match):
                continue
            if matches(flow, ctx):
                if best is not None:
                    raise SimulationError(f"{self.name}: table {table}: two flows of priority {flow.priority} match")
                best = flow
        return best

    def _ct(self, ct: Ct, ctx: _Context, trace: Trace) -> str | None:
        """Run a packet through conntrack; the table it continues in, if the ct recirculates."""
        zone = (
            ct.zone if isinstance(ct.zone, int) else (ctx.regs.get(ct.zone.register, 0) & ct.zone.mask) >> ct.zone.start
        )
        result = self.conntrack.run(ct, zone, ctx.packet.fields)
        state = "".join(f"+{n}" for n, b in CT_STATE_BITS.items() if result.state & b)
        trace.hops.append(Hop(self.name, "conntrack", f"zone {zone}: {state}" + (" commit" if ct.commit else "")))
        if ct.table is None:
            return None
        ctx.ct = {"ct_state": result.state, "ct_zone": result.zone, "ct_mark": result.mark, "ct_label": result.label}
        return ct.table

    def _run(self, actions: tuple[Action, ...], ctx: _Context, outputs: list, trace: Trace) -> bool | str:
        """Apply actions in order; False when the packet was dropped on the way (TTL expired), the table name
        when a ct recirculates it there (the remaining actions do not apply)."""
        for action in actions:
            if isinstance(action, Output | OutputReg):
                port = action.port if isinstance(action, Output) else ctx.regs.get(action.field, 0)
                self._emit(port, ctx, outputs, trace)
            elif isinstance(action, SetField):
                set_field(ctx, action.field, action.value, action.mask)
            elif isinstance(action, Move):
                set_field(ctx, action.dst, ctx.value(action.src) or 0)
            elif isinstance(action, PushVlan):
                ctx.packet.vlans = (0, *ctx.packet.vlans)
            elif isinstance(action, PopVlan):
                ctx.packet.vlans = ctx.packet.vlans[1:]
            elif isinstance(action, DecTtl):
                ttl = ctx.packet.fields.get("ip_ttl", 64) - 1
                if ttl <= 0:
                    trace.drops.append(f"{self.name}: TTL expired")
                    return False
                ctx.packet.fields["ip_ttl"] = ttl
            elif isinstance(action, ToGroup):
                group = self.groups.get(action.group_id)
                if group is None:
                    raise SimulationError(f"{self.name}: flow uses group {action.group_id}, which does not exist")
                for bucket in group.buckets:
                    if isinstance(self._run(bucket, ctx.copy(), outputs, trace), str):
                        raise SimulationError(f"{self.name}: group {action.group_id}: ct(table=...) in a bucket")
            elif isinstance(action, Ct):
                recirculate = self._ct(action, ctx, trace)
                if recirculate is not None:
                    return recirculate
            elif isinstance(action, CtClear):
                ctx.ct = {}
        return True

    def _emit(self, port: int, ctx: _Context, outputs: list, trace: Trace) -> None:
        if port == OFPP_IN_PORT:
            port = ctx.in_port
        elif port == ctx.in_port:
            return  # OpenFlow never sends a packet back out its ingress port unless asked with IN_PORT
        outputs.append((port, ctx.packet.copy(), dict(ctx.tunnel)))


def matches(flow: Flow, ctx: _Context) -> bool:
    for name, value, mask in flow.match:
        have = ctx.value(name)
        if have is None:
            return False
        if mask is None:
            if have != value:
                return False
        elif have & mask != value & mask:
            return False
    return True


def set_field(ctx: _Context, name: str, value: int, mask: int | None = None) -> None:
    if mask is not None:
        old = ctx.value(name) or 0
        value = (old & ~mask) | value
    if name.startswith("reg"):
        ctx.regs[name] = value
    elif name == "vlan_vid":
        if not ctx.packet.vlans:
            raise SimulationError("set vlan_vid on an untagged packet")
        ctx.packet.vlans = (value & 0xFFF, *ctx.packet.vlans[1:])
    elif name in TUNNEL_FIELDS:
        ctx.tunnel[name] = value
    else:
        ctx.packet.fields[name] = value


def _action_name(action: Action) -> str:
    if isinstance(action, Conjunction):
        return f"conjunction({action.conj_id},{action.clause}/{action.n_clauses})"
    if isinstance(action, Ct):
        return "ct(" + ",".join(["commit"] * action.commit + [f"table={action.table}"] * bool(action.table)) + ")"
    return type(action).__name__


def describe(flow: Flow) -> str:
    """A short text of a flow for traces; the full text lives in controller.openflow.ofctl."""
    parts = [f"{name}={value:#x}" + (f"/{mask:#x}" if mask is not None else "") for name, value, mask in flow.match]
    actions = [_action_name(a) for a in flow.actions]
    if flow.meter is not None:
        actions.insert(0, f"meter:{flow.meter}")
    if flow.goto:
        actions.append(f"goto:{flow.goto}")
    return f"priority={flow.priority} {','.join(parts) or '*'} -> {','.join(actions) or 'drop'}"


class SimNetwork:
    """All nodes' switches, wired by tunnels, the uplink L2 switch and fabric links."""

    def __init__(self, model: Model, states: Mapping[str, NodeState]) -> None:
        self.model = model
        self.switches = {name: SimSwitch(name, state) for name, state in states.items()}
        self.endpoint_at = {(e.node, e.ofport): e.id for e in model.endpoints.values()}
        self.node_by_ip = {int(n.tunnel_ip): n.name for n in model.nodes.values()}
        self.uplinked = sorted(n.name for n in model.nodes.values() if n.uplink)
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        self.down: set[tuple[str, int]] = set()
        for link in model.links:
            a_port, b_port = model.link_ports(link.a)[link.a_port], model.link_ports(link.b)[link.b_port]
            if not model.link_up(link):
                self.down |= {(link.a, a_port), (link.b, b_port)}
                continue
            self.links[(link.a, a_port)] = (link.b, b_port)
            self.links[(link.b, b_port)] = (link.a, a_port)

    def send(self, endpoint_id: str, packet: Packet) -> Trace:
        """Inject a packet as sent by an endpoint and follow every copy until it is delivered or dropped."""
        endpoint = self.model.endpoint(endpoint_id)
        return self.send_from(endpoint.node, endpoint.ofport, packet)

    def send_from(self, node: str, in_port: int, packet: Packet) -> Trace:
        """Inject a packet arriving on a node's port (an endpoint's, or GATEWAY_OFPORT: from the host stack).
        A packet leaving by a node's gateway port is delivered to `gateway_endpoint(node)`."""
        trace = Trace()
        queue: deque[tuple[str, int, Packet, dict[str, int]]] = deque([(node, in_port, packet, {})])
        events = 0
        while queue:
            node, in_port, pkt, tunnel = queue.popleft()
            events += 1
            if events > MAX_EVENTS:
                trace.drops.append(f"loop: more than {MAX_EVENTS} switch visits")
                break
            for port, out, meta in self.switches[node].process(pkt, in_port, tunnel, trace):
                queue.extend(self._wire(node, port, out, meta, trace))
        return trace

    def _wire(self, node: str, port: int, packet: Packet, tunnel: dict[str, int], trace: Trace) -> list:
        """Where a packet sent out of `node`'s `port` arrives: (node, in_port, packet, tunnel) list."""
        if (node, port) in self.endpoint_at:
            trace.delivered.append(Delivery(self.endpoint_at[(node, port)], node, packet))
            return []
        if port == GATEWAY_OFPORT:
            trace.delivered.append(Delivery(gateway_endpoint(node), node, packet))
            return []
        if port == TUNNEL_OFPORT:
            remote = self.node_by_ip.get(tunnel.get("tun_ipv4_dst", -1))
            if remote is None or remote not in self.switches:
                trace.drops.append(f"{node}: tunnel to an unknown node")
                return []
            trace.hops.append(Hop(node, "wire", f"vxlan vni {tunnel.get('tunnel_id', 0)} to {remote}"))
            return [(remote, TUNNEL_OFPORT, packet, {"tunnel_id": tunnel.get("tunnel_id", 0)})]
        if port == UPLINK_OFPORT and node in self.uplinked:
            trace.hops.append(Hop(node, "wire", f"uplink to the {FABRIC} (floods to every other uplink)"))
            return [(other, UPLINK_OFPORT, packet, {}) for other in self.uplinked if other != node]
        if (node, port) in self.links:
            peer, peer_port = self.links[(node, port)]
            trace.hops.append(Hop(node, "wire", f"link port {port} to {peer} port {peer_port}"))
            return [(peer, peer_port, packet, {})]
        if (node, port) in self.down:
            trace.drops.append(f"{node}: output to link port {port}, which is down")
            return []
        trace.drops.append(f"{node}: output to port {port}, where nothing is attached")
        return []


def gateway_endpoint(node: str) -> str:
    """What the simulator calls a node's host stack, behind its gateway port, in `Trace.delivered_to`."""
    return f"{node}:host"
