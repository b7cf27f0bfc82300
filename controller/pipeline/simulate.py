"""A simulated OpenFlow 1.3 switch and a simulated network of them, to prove compiled state right.

The switch applies flows the way OpenFlow 1.3 says: the highest-priority match in a table wins, apply-actions
run in order (an output sends a copy of the packet as it is at that point), goto continues in a later
table, a miss with no flow drops. Registers start at zero on every switch. A group of type ALL runs every
bucket on its own copy. Output to the port a packet came in on is suppressed unless it is OFPP_IN_PORT.
Meters count packets (they never drop here).

The network joins the switches the way the lab does: a flow-based VXLAN port reaching the node whose
tunnel IP is `tun_ipv4_dst`, uplinks on one physical L2 switch that floods (the worst case for loops),
and fabric links between node ports (a link the model holds down carries nothing).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.pipeline.ir import (
    OFPP_IN_PORT,
    OFPVID_PRESENT,
    Action,
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
from topology.model import TUNNEL_OFPORT, UPLINK_OFPORT, Model

MAX_EVENTS = 10_000  # more switch visits than this for one packet is a forwarding loop
TUNNEL_FIELDS = ("tunnel_id", "tun_ipv4_dst")


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

    def copy(self) -> _Context:
        return _Context(self.packet.copy(), self.in_port, dict(self.regs), dict(self.tunnel))

    def value(self, name: str) -> int | None:
        if name == "in_port":
            return self.in_port
        if name.startswith("reg"):
            return self.regs.get(name, 0)
        if name == "vlan_vid":
            return OFPVID_PRESENT | self.packet.vlans[0] if self.packet.vlans else 0
        if name in TUNNEL_FIELDS:
            return self.tunnel.get(name, 0)
        return self.packet.fields.get(name)


class SimSwitch:
    def __init__(self, name: str, state: NodeState) -> None:
        self.name = name
        self.tables: dict[str, list[Flow]] = {t.name: [] for t in PIPELINE.tables}
        for flow in state.flows():
            self.tables[flow.table].append(flow)
        for flows in self.tables.values():
            flows.sort(key=lambda f: -f.priority)
        self.groups = state.groups()
        self.meters = state.meters()

    def process(
        self, packet: Packet, in_port: int, tunnel: dict[str, int], trace: Trace
    ) -> list[tuple[int, Packet, dict[str, int]]]:
        """Run one packet through the pipeline; return its (port, packet, tunnel metadata) outputs."""
        outputs: list[tuple[int, Packet, dict[str, int]]] = []
        ctx = _Context(packet.copy(), in_port, {}, dict(tunnel))
        table: str | None = PIPELINE.tables[0].name
        while table is not None:
            flow = self._lookup(table, ctx)
            if flow is None:
                trace.hops.append(Hop(self.name, table, "miss: no flow"))
                trace.drops.append(f"{self.name}: {PIPELINE.by_name[table].miss_reason or table + ': miss'}")
                return outputs
            trace.hops.append(Hop(self.name, table, describe(flow), flow))
            if flow.meter is not None:
                if flow.meter not in self.meters:
                    raise SimulationError(f"{self.name}: flow uses meter {flow.meter}, which does not exist")
                trace.meters[(self.name, flow.meter)] += 1
            if not self._run(flow.actions, ctx, outputs, trace):
                return outputs
            if flow.goto is None and not flow.actions and flow.priority == 0:
                trace.drops.append(f"{self.name}: {PIPELINE.by_name[table].miss_reason or table + ': dropped'}")
            table = flow.goto
        return outputs

    def _lookup(self, table: str, ctx: _Context) -> Flow | None:
        best: Flow | None = None
        for flow in self.tables[table]:
            if best is not None and flow.priority < best.priority:
                break
            if matches(flow, ctx):
                if best is not None:
                    raise SimulationError(f"{self.name}: table {table}: two flows of priority {flow.priority} match")
                best = flow
        return best

    def _run(self, actions: tuple[Action, ...], ctx: _Context, outputs: list, trace: Trace) -> bool:
        """Apply actions in order; False when the packet was dropped on the way (TTL expired)."""
        for action in actions:
            if isinstance(action, Output | OutputReg):
                port = action.port if isinstance(action, Output) else ctx.regs.get(action.field, 0)
                self._emit(port, ctx, outputs, trace)
            elif isinstance(action, SetField):
                set_field(ctx, action.field, action.value)
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
                    self._run(bucket, ctx.copy(), outputs, trace)
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


def set_field(ctx: _Context, name: str, value: int) -> None:
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


def describe(flow: Flow) -> str:
    """A short text of a flow for traces; the full text lives in controller.openflow.ofctl."""
    parts = [f"{name}={value:#x}" + (f"/{mask:#x}" if mask is not None else "") for name, value, mask in flow.match]
    actions = [type(a).__name__ for a in flow.actions]
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
        trace = Trace()
        queue = deque([(endpoint.node, endpoint.ofport, packet, {})])
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
