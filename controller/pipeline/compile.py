"""From the model to each node's desired br-int state, and from a model change to per-node change sets.

What a node needs:
- the pipeline's miss flows and delivery (every node);
- for each local endpoint, its port section: classify, port security, meter;
- for each network it hosts: the ARP responder and the gateway;
- for each network it carries (hosts it, or is a transit switch of its VLAN fabric): the segment section,
  classifying tunnel or VLAN traffic into the network and flooding through the network's groups;
- for each network of a tenant it has endpoints of: unicast L2 toward all the network's endpoints and host
  routes to them, since routing between a tenant's networks is done by the sending node.

Sections identical on many nodes (the routes of a network, the L2 view of a node that hosts none of a
VXLAN network's endpoints) are built once and shared, and a change recomputes only the sections of the
objects it touched, on the nodes that hold them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features import arp, base, l2, l3, port_security, qos, vlan, vxlan
from controller.pipeline.ir import Bucket, Flow
from controller.pipeline.state import ChangeSet, NodeState, Section, diff, diff_sections
from topology.graph import Fabric
from topology.model import TUNNEL_OFPORT, Encap, Endpoint, Model, Network, Touched

Slots = dict[int, "Section | None"]  # section cookie -> its new content, None: remove it
Replacements = dict[str, list[Slots]]  # node -> what to replace there

NETWORK_FEATURES = (Feature.SEGMENT, Feature.L2, Feature.ARP, Feature.GATEWAY, Feature.ROUTES)
EMPTY_CHANGES = ChangeSet()
BASE_SECTION = Section(base.PIPELINE_COOKIE, base.base_flows())


class Compiler:
    """Keeps every node's desired state and updates it from model changes.

    Call `update(touched)` after each model change, with the `Touched` the model returned.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.states: dict[str, NodeState] = {}
        self._fabric = Fabric.from_model(model)
        self._shared: dict[str, dict[tuple[Feature, str | None], Any]] = {}  # by network key
        self._remote_flows: dict[tuple[str, int], tuple[Endpoint, Flow]] = {}
        self._vxlan_buckets: dict[tuple[int, str], Bucket] = {}
        self._endpoint_flows: dict[tuple[str, Feature], tuple[Endpoint, Flow]] = {}
        self._local_flows: dict[str, tuple[Endpoint, Flow]] = {}
        self._carrier_sets: dict[str, frozenset[str]] = {}
        self._segments: dict[tuple[str, str], tuple[tuple, Section]] = {}
        self._network_nodes: dict[str, set[str]] = {}  # network key -> nodes holding any of its sections
        self._network_ids: dict[str, int] = {}
        self._tenant_audience: dict[str, frozenset[str]] = {}
        self._ports: dict[str, tuple[str, int]] = {}  # endpoint id -> (node, port section cookie)
        self._meters: dict[str, set[int]] = {}  # node -> meter section cookies there

    # --- full compile --------------------------------------------------------------------------

    def compile_all(self) -> dict[str, NodeState]:
        """Compile every node from scratch (caches from earlier calls are dropped)."""
        with gc_paused():
            return self._compile_all()

    def _compile_all(self) -> dict[str, NodeState]:
        self._reset()
        states: dict[str, NodeState] = {name: self._node_base(name) for name in self.model.nodes}
        for key, network in self.model.networks.items():
            nodes = self._audience(network)
            self._network_nodes[key] = nodes
            self._network_ids[key] = network.id
            for name in nodes:
                states[name].sections.update(self._network_sections(network, name))
        for tenant, counter in self.model.tenant_nodes.items():
            self._tenant_audience[tenant] = frozenset(counter)
        self.states = states
        return states

    def compile_node(self, name: str) -> NodeState:
        """One node's desired state, compiling only what that node needs if nothing was compiled yet."""
        if name not in self.states:
            state = self._node_base(name)
            for network in self._relevant_networks(name):
                state.sections.update(self._network_sections(network, name))
            return state
        return self.states[name]

    def _relevant_networks(self, name: str) -> list[Network]:
        """Networks with a section on this node: its tenants' networks, and VLAN networks it carries."""
        found = {
            key: network
            for tenant, nodes in self.model.tenant_nodes.items()
            if name in nodes
            for key, network in self.model.networks_by_tenant[tenant].items()
        }
        if self.model.links:
            for key, network in self.model.networks.items():
                if key not in found and network.encap is Encap.VLAN and name in self._carriers(network):
                    found[key] = network
        return [network for network in found.values() if self.model.hosts[network.key]]

    def _reset(self) -> None:
        self._fabric = Fabric.from_model(self.model)
        self._shared.clear()
        self._remote_flows.clear()
        self._vxlan_buckets.clear()
        self._endpoint_flows.clear()
        self._local_flows.clear()
        self._carrier_sets.clear()
        self._segments.clear()
        self._network_nodes.clear()
        self._network_ids.clear()
        self._tenant_audience.clear()
        self._ports.clear()
        self._meters.clear()

    def _node_base(self, name: str) -> NodeState:
        state = NodeState({BASE_SECTION.cookie: BASE_SECTION})
        for endpoint in self.model.endpoints_by_node[name].values():
            section = self._port_section(endpoint)
            state.sections[section.cookie] = section
            self._ports[endpoint.id] = (name, section.cookie)
        meters = self._meter_sections(name)
        state.sections.update(meters)
        self._meters[name] = set(meters)
        return state

    # --- incremental ---------------------------------------------------------------------------

    def update(self, touched: Touched) -> dict[str, ChangeSet]:
        """Recompute what `touched` affects; return the change set of every node that changed."""
        if touched.everything or not self.states:
            old = self.states
            new = self.compile_all()
            changes = {name: diff(state, old.get(name, NodeState())) for name, state in new.items()}
            changes.update({name: diff(NodeState(), state) for name, state in old.items() if name not in new})
            return {name: cs for name, cs in changes.items() if cs}
        replacements: Replacements = {}
        for key in self._expand_tenants(touched.networks):
            self._replace_network(key, replacements)
        meter_nodes = set(touched.nodes)
        for endpoint_id in touched.endpoints:
            self._replace_port(endpoint_id, replacements, meter_nodes)
        for name in meter_nodes:
            self._replace_meters(name, replacements)
        return self._apply(replacements)

    def _expand_tenants(self, keys: Iterable[str]) -> set[str]:
        """Networks to recompute: the touched ones, plus all of a tenant's whose set of nodes changed."""
        result = set(keys)
        for key in list(result):
            tenant = key.split("/", 1)[0]
            nodes = frozenset(self.model.tenant_nodes.get(tenant, ()))
            if nodes != self._tenant_audience.get(tenant, frozenset()):
                self._tenant_audience[tenant] = nodes
                result.update(self.model.networks_by_tenant.get(tenant, ()))
        return result

    def _replace_network(self, key: str, replacements: Replacements) -> None:
        self._shared.pop(key, None)
        self._carrier_sets.pop(key, None)
        network = self.model.networks.get(key)
        old_id = self._network_ids.pop(key, None)
        old_nodes = self._network_nodes.pop(key, set())
        new_nodes = self._audience(network) if network else set()
        cleared: Slots = {cookie(f, old_id): None for f in NETWORK_FEATURES} if old_id is not None else {}
        router_slots: Slots | None = None  # one dict for every node that only routes into the network
        router_view = None if network is None or self._per_node_views(network) else self._router_view(network)
        for name in old_nodes | new_nodes:
            if network is None or name not in new_nodes:
                slots = cleared
            else:
                sections = self._network_sections(network, name)
                if sections is router_view:
                    if router_slots is None:
                        router_slots = {**cleared, **sections}
                    slots = router_slots
                else:
                    slots = {**cleared, **sections}
            replacements.setdefault(name, []).append(slots)
        if network is not None:
            self._network_nodes[key] = new_nodes
            self._network_ids[key] = network.id

    def _replace_port(self, endpoint_id: str, replacements: Replacements, meter_nodes: set[str]) -> None:
        previous = self._ports.pop(endpoint_id, None)
        if previous is not None:
            replacements.setdefault(previous[0], []).append({previous[1]: None})
            meter_nodes.add(previous[0])
        endpoint = self.model.endpoints.get(endpoint_id)
        if endpoint is not None:
            section = self._port_section(endpoint)
            replacements.setdefault(endpoint.node, []).append({section.cookie: section})
            self._ports[endpoint_id] = (endpoint.node, section.cookie)
            meter_nodes.add(endpoint.node)

    def _replace_meters(self, name: str, replacements: Replacements) -> None:
        if name not in self.model.nodes:
            return
        new = self._meter_sections(name)
        slots: Slots = dict.fromkeys(self._meters.get(name, set()) - new.keys())
        slots.update(new)
        replacements.setdefault(name, []).append(slots)
        self._meters[name] = set(new)

    def _apply(self, replacements: Replacements) -> dict[str, ChangeSet]:
        """Install the replacement sections in each node's state and return each node's change set.

        Many nodes receive the very same replacement for the very same sections (every node that only
        routes into a network): its change set is computed once and handed to all of them.
        """
        changes: dict[str, ChangeSet] = {}
        pair_changes: dict[tuple[int, int], ChangeSet] = {}
        slot_changes: dict[int, tuple[tuple[Section | None, ...], ChangeSet]] = {}
        combined: dict[tuple[int, ...], ChangeSet] = {}
        for name, slot_list in replacements.items():
            sections = self.states.setdefault(name, NodeState()).sections
            parts = []
            for slots in slot_list:
                olds = tuple(sections.get(slot) for slot in slots)
                known = slot_changes.get(id(slots))
                if known is not None and all(a is b for a, b in zip(known[0], olds, strict=True)):
                    part = known[1]
                else:
                    part = ChangeSet.combine(
                        pair_diff(pair_changes, new, old) for new, old in zip(slots.values(), olds, strict=True)
                    )
                    slot_changes[id(slots)] = (olds, part)
                if part:
                    parts.append(part)
                for slot, new in slots.items():
                    if new is not None:
                        sections[slot] = new
                    else:
                        sections.pop(slot, None)
            if parts:
                key = tuple(map(id, parts))
                if key not in combined:
                    combined[key] = parts[0] if len(parts) == 1 else ChangeSet.combine(parts)
                changes[name] = combined[key]
        return changes

    # --- sections ------------------------------------------------------------------------------

    def _audience(self, network: Network) -> set[str]:
        """Nodes that need any section of this network."""
        hosts = self.model.hosts[network.key]
        if not hosts:
            return set()
        return set(self._carriers(network)) | set(self.model.tenant_nodes[network.tenant])

    def _carriers(self, network: Network) -> frozenset[str]:
        carriers = self._carrier_sets.get(network.key)
        if carriers is None:
            hosts = self.model.hosts[network.key]
            if network.encap is Encap.VXLAN or not self.model.links:
                carriers = frozenset(hosts)  # a full mesh of tunnels, or one physical switch: no transit
            else:
                # Transit switches: on the flood tree between hosts, and on the paths routed traffic takes
                # from any node of the tenant to the hosts.
                carriers = self._fabric.carriers({*hosts, *self.model.tenant_nodes[network.tenant]})
            self._carrier_sets[network.key] = carriers
        return carriers

    def _network_sections(self, network: Network, name: str) -> dict[int, Section]:
        hosts = self.model.hosts[network.key]
        if name not in hosts and name not in self._carriers(network) and not self._per_node_views(network):
            return self._router_view(network)
        sections: list[Section] = []
        if name in self._carriers(network):
            sections.append(self._segment_section(network, name))
        sections.append(self._l2_section(network, name))
        if name in hosts:
            sections.append(self._shared_section(network, Feature.ARP))
            sections.append(self._shared_section(network, Feature.GATEWAY))
        if name in self.model.tenant_nodes[network.tenant]:
            sections.append(self._shared_section(network, Feature.ROUTES))
        return {s.cookie: s for s in sections}

    def _per_node_views(self, network: Network) -> bool:
        """A VLAN network's way to the hosts depends on the node (its uplink, its fabric links); a VXLAN
        network's is the same flow-based tunnel port everywhere, so its non-hosts share one view."""
        return network.encap is Encap.VLAN

    def _router_view(self, network: Network) -> dict[int, Section]:
        """What a node that only routes into the network holds (most nodes of a large tenant): built once."""
        shared = self._shared.setdefault(network.key, {})
        view = shared.get((Feature.ROUTES, "router-view"))
        if view is None:
            sections = (self._l2_section(network, None), self._shared_section(network, Feature.ROUTES))
            view = shared[(Feature.ROUTES, "router-view")] = {s.cookie: s for s in sections}
        return view

    def _shared_section(self, network: Network, feature: Feature) -> Section:
        shared = self._shared.setdefault(network.key, {})
        section = shared.get((feature, None))
        if section is None:
            section = shared[(feature, None)] = self._build_shared(network, feature)
        return section

    def _build_shared(self, network: Network, feature: Feature) -> Section:
        c = cookie(feature, network.id)
        if feature is Feature.GATEWAY:
            return Section(c, (arp.gateway_answer(network, cookie=c), l3.to_gateway(network, cookie=c)))
        endpoints = self.model.endpoints_by_network[network.key].values()
        return Section(c, tuple(self._endpoint_flow(e, network, feature) for e in endpoints))

    def _endpoint_flow(self, endpoint: Endpoint, network: Network, feature: Feature) -> Flow:
        """An endpoint's ARP answer or host route, built once per version of the endpoint."""
        cached = self._endpoint_flows.get((endpoint.id, feature))
        if cached is not None and cached[0] is endpoint:
            return cached[1]
        c = cookie(feature, network.id)
        if feature is Feature.ARP:
            flow = arp.endpoint_answer(endpoint, network, cookie=c)
        else:
            flow = l3.host_route(endpoint, network, self.model.tenants[network.tenant].id, cookie=c)
        self._endpoint_flows[(endpoint.id, feature)] = (endpoint, flow)
        return flow

    def _l2_section(self, network: Network, name: str | None) -> Section:
        # A node with no endpoint of a VXLAN network sees every endpoint as remote, through the same
        # tunnel port: that view is built once and shared; a host's view swaps in its local endpoints.
        per_node = name is not None and (name in self.model.hosts[network.key] or self._per_node_views(network))
        shared = self._shared.setdefault(network.key, {})
        key = (Feature.L2, name if per_node else None)
        section = shared.get(key)
        if section is None:
            endpoints = self.model.endpoints_by_network[network.key].values()
            if per_node and network.encap is Encap.VXLAN:
                remote = self._l2_section(network, None).flows  # in the same endpoint order
                flows = [
                    self._local_flow(e, network) if e.node == name else f
                    for e, f in zip(endpoints, remote, strict=True)
                ]
            else:
                flows = [
                    self._local_flow(e, network) if e.node == name else self._remote_flow(e, network, name)
                    for e in endpoints
                ]
            section = shared[key] = Section(cookie(Feature.L2, network.id), tuple(f for f in flows if f))
        return section

    def _local_flow(self, endpoint: Endpoint, network: Network) -> Flow:
        cached = self._local_flows.get(endpoint.id)
        if cached is None or cached[0] is not endpoint:
            cached = self._local_flows[endpoint.id] = (
                endpoint,
                l2.local(endpoint, network, cookie=cookie(Feature.L2, network.id)),
            )
        return cached[1]

    def _remote_flow(self, endpoint: Endpoint, network: Network, name: str) -> Flow | None:
        # The flow depends on the endpoint and on the port it leaves by: the tunnel, or a fabric port.
        port = TUNNEL_OFPORT if network.encap is Encap.VXLAN else self._fabric.next_hop_port(name, endpoint.node)
        if port is None:
            return None  # no path on the VLAN fabric
        cached = self._remote_flows.get((endpoint.id, port))
        if cached is not None and cached[0] is endpoint:
            return cached[1]
        bucket = self._vxlan_bucket(network, endpoint.node) if port == TUNNEL_OFPORT else vlan.to_port(network, port)
        flow = l2.remote(endpoint, network, bucket, cookie=cookie(Feature.L2, network.id))
        self._remote_flows[(endpoint.id, port)] = (endpoint, flow)
        return flow

    def _vxlan_bucket(self, network: Network, target: str) -> Bucket:
        bucket = self._vxlan_buckets.get((network.id, target))
        if bucket is None:
            bucket = vxlan.to_node(network, self.model.nodes[target].tunnel_ip)
            self._vxlan_buckets[(network.id, target)] = bucket
        return bucket

    def _segment_section(self, network: Network, name: str) -> Section:
        # Only the network's hosts and carriers and this node's own ports of it shape the section.
        signature = (
            frozenset(self.model.hosts[network.key]),
            self._carriers(network),
            sorted(e.ofport for e in self.model.endpoints_by_node[name].values() if e.network == network.key),
        )
        cached = self._segments.get((network.key, name))
        if cached is not None and cached[0] == signature:
            return cached[1]
        section = self._build_segment(network, name, signature[2])
        self._segments[(network.key, name)] = (signature, section)
        return section

    def _build_segment(self, network: Network, name: str, local_ports: list[int]) -> Section:
        c = cookie(Feature.SEGMENT, network.id)
        tenant_id = self.model.tenants[network.tenant].id
        hosts = self.model.hosts[network.key]
        if network.encap is Encap.VXLAN:
            classify = [vxlan.classify(network, tenant_id, cookie=c)]
            everywhere = [bucket for host, bucket in self._flood_targets(network) if host != name]
            onward: list[Bucket] = []
        else:
            tree_ports = self._fabric.tree_ports(name)
            classify = [
                vlan.classify(network, tenant_id, port, cookie=c, unicast_only=port not in tree_ports)
                for port in sorted(self._fabric.fabric_ports(name))
            ]
            everywhere = onward = [vlan.to_port(network, p) for p in self._fabric.flood_ports(name, hosts)]
        flood_flows, groups = l2.flood(network, local_ports, everywhere, onward, cookie=c)
        return Section(c, (*classify, *flood_flows), groups)

    def _flood_targets(self, network: Network) -> list[tuple[str, Bucket]]:
        """Every host of a VXLAN network with the tunnel bucket reaching it, by tunnel IP: built once."""
        shared = self._shared.setdefault(network.key, {})
        targets = shared.get((Feature.SEGMENT, "targets"))
        if targets is None:
            hosts = sorted(self.model.hosts[network.key], key=lambda h: int(self.model.nodes[h].tunnel_ip))
            targets = shared[(Feature.SEGMENT, "targets")] = [(h, self._vxlan_bucket(network, h)) for h in hosts]
        return targets

    def _port_section(self, endpoint: Endpoint) -> Section:
        c = cookie(Feature.PORT, endpoint.num)
        network = self.model.networks[endpoint.network]
        tenant_id = self.model.tenants[endpoint.tenant].id
        flows = [port_security.classify_port(endpoint, network, tenant_id, cookie=c)]
        flows.extend(port_security.port_security(endpoint, cookie=c))
        attachment = self.model.qos_for(endpoint)
        if attachment is not None:
            flows.append(qos.meter_port(endpoint, attachment, cookie=c))
        return Section(c, tuple(flows))

    def _meter_sections(self, name: str) -> dict[int, Section]:
        sections: dict[int, Section] = {}
        for endpoint in self.model.endpoints_by_node[name].values():
            attachment = self.model.qos_for(endpoint)
            if attachment is not None:
                c = cookie(Feature.METER, attachment.meter_id)
                if c not in sections:
                    profile = self.model.qos_profiles[attachment.profile]
                    sections[c] = Section(c, meters=(qos.meter(attachment, profile),))
        return sections


def pair_diff(memo: dict[tuple[int, int], ChangeSet], new: Section | None, old: Section | None) -> ChangeSet:
    """The change from one section to another, computed once per pair (sections are shared)."""
    if new is old:
        return EMPTY_CHANGES
    key = (id(new), id(old))
    found = memo.get(key)
    if found is None:
        found = memo[key] = diff_sections(new, old)
    return found


@contextmanager
def gc_paused() -> Iterator[None]:
    """Build large, acyclic structures without the cyclic collector rescanning them again and again.

    A full compile allocates millions of small immutable objects and creates no reference cycles; with the
    collector running, its repeated full scans of the growing heap cost more than the compile itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compile(model: Model, node: str) -> NodeState:
    """The desired state of one node's br-int."""
    model.node(node)
    return Compiler(model).compile_node(node)
