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

from collections.abc import Iterable

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features import arp, base, l2, l3, port_security, qos, vlan, vxlan
from controller.pipeline.ir import Bucket, Flow
from controller.pipeline.state import ChangeSet, NodeState, Section, diff, diff_sections
from topology.graph import Fabric
from topology.model import TUNNEL_OFPORT, Encap, Endpoint, Model, Network, Touched

NETWORK_FEATURES = (Feature.SEGMENT, Feature.L2, Feature.ARP, Feature.GATEWAY, Feature.ROUTES)
BASE_SECTION = Section(base.PIPELINE_COOKIE, base.base_flows())


class Compiler:
    """Keeps every node's desired state and updates it from model changes.

    Call `update(touched)` after each model change, with the `Touched` the model returned.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.states: dict[str, NodeState] = {}
        self._fabric = Fabric.from_model(model)
        self._shared: dict[str, dict[tuple[Feature, str | None], Section]] = {}  # by network key
        self._remote_flows: dict[tuple[str, int], tuple[Endpoint, Flow]] = {}
        self._vxlan_buckets: dict[tuple[int, str], Bucket] = {}
        self._endpoint_flows: dict[tuple[str, Feature], tuple[Endpoint, Flow]] = {}
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
        replacements: dict[str, dict[int, Section | None]] = {}
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

    def _replace_network(self, key: str, replacements: dict[str, dict[int, Section | None]]) -> None:
        self._shared.pop(key, None)
        self._carrier_sets.pop(key, None)
        network = self.model.networks.get(key)
        old_id = self._network_ids.pop(key, None)
        old_nodes = self._network_nodes.pop(key, set())
        new_nodes = self._audience(network) if network else set()
        for name in old_nodes | new_nodes:
            slots = replacements.setdefault(name, {})
            if old_id is not None:
                for feature in NETWORK_FEATURES:
                    slots.setdefault(cookie(feature, old_id), None)
            if network is not None and name in new_nodes:
                slots.update(self._network_sections(network, name))
        if network is not None:
            self._network_nodes[key] = new_nodes
            self._network_ids[key] = network.id

    def _replace_port(
        self, endpoint_id: str, replacements: dict[str, dict[int, Section | None]], meter_nodes: set[str]
    ) -> None:
        previous = self._ports.pop(endpoint_id, None)
        if previous is not None:
            replacements.setdefault(previous[0], {})[previous[1]] = None
            meter_nodes.add(previous[0])
        endpoint = self.model.endpoints.get(endpoint_id)
        if endpoint is not None:
            section = self._port_section(endpoint)
            replacements.setdefault(endpoint.node, {})[section.cookie] = section
            self._ports[endpoint_id] = (endpoint.node, section.cookie)
            meter_nodes.add(endpoint.node)

    def _replace_meters(self, name: str, replacements: dict[str, dict[int, Section | None]]) -> None:
        if name not in self.model.nodes:
            return
        slots = replacements.setdefault(name, {})
        new = self._meter_sections(name)
        for old_cookie in self._meters.get(name, set()) - new.keys():
            slots[old_cookie] = None
        slots.update(new)
        self._meters[name] = set(new)

    def _apply(self, replacements: dict[str, dict[int, Section | None]]) -> dict[str, ChangeSet]:
        changes: dict[str, ChangeSet] = {}
        seen: dict[tuple[int, int], ChangeSet] = {}  # shared sections: diff each pair once
        combined: dict[tuple[int, ...], ChangeSet] = {}  # and merge each list of parts once
        for name, slots in replacements.items():
            sections = self.states.setdefault(name, NodeState()).sections
            parts = []
            for slot, new in slots.items():
                old = sections.get(slot)
                if new is old:
                    continue
                pair = (id(new), id(old))
                part = seen.get(pair)
                if part is None:
                    part = seen[pair] = diff_sections(new, old)
                if part:
                    parts.append(part)
                if new is None:
                    del sections[slot]
                else:
                    sections[slot] = new
            if parts:
                # A node whose only change is a shared section's gets that section's change set itself.
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

    def _l2_section(self, network: Network, name: str) -> Section:
        # A node with no endpoint of the network sees every endpoint as remote; for VXLAN, and for VLAN
        # through the uplink, that view is the same on every such node, so it is built once.
        per_node = name in self.model.hosts[network.key] or (network.encap is Encap.VLAN and bool(self.model.links))
        shared = self._shared.setdefault(network.key, {})
        key = (Feature.L2, name if per_node else None)
        section = shared.get(key)
        if section is None:
            c = cookie(Feature.L2, network.id)
            flows = []
            for endpoint in self.model.endpoints_by_network[network.key].values():
                if endpoint.node == name:
                    flows.append(l2.local(endpoint, network, cookie=c))
                else:
                    flow = self._remote_flow(endpoint, network, name)
                    if flow is not None:
                        flows.append(flow)
            section = shared[key] = Section(c, tuple(flows))
        return section

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
            others = sorted((h for h in hosts if h != name), key=lambda h: int(self.model.nodes[h].tunnel_ip))
            everywhere = [self._vxlan_bucket(network, h) for h in others]
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


def compile(model: Model, node: str) -> NodeState:
    """The desired state of one node's br-int."""
    model.node(node)
    return Compiler(model).compile_node(node)
