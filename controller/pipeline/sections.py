"""What each node needs of each object, as sections, built once and shared wherever they are equal.

What a node needs:
- the pipeline's miss flows and delivery (every node);
- for each local endpoint, its port section: classify, port security, meter;
- for each network it hosts: the ARP responder and the gateway;
- for each network it carries (hosts it, or is a transit switch of its VLAN fabric): the segment section,
  classifying tunnel or VLAN traffic into the network and flooding through the network's groups;
- for each network of a tenant it has endpoints of: unicast L2 toward all the network's endpoints and host
  routes to them, since routing between a tenant's networks is done by the sending node.

Sections identical on many nodes (the routes of a network, the view of a node that only routes into a
VXLAN network) are built once; flows are built once per version of their endpoint. `forget(network)`
drops what was built for a network after it changed.
"""

from __future__ import annotations

from typing import Any

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features import arp, base, l2, l3, port_security, qos, vlan, vxlan
from controller.pipeline.ir import Bucket, Flow
from controller.pipeline.state import NodeState, Section
from topology.graph import Fabric
from topology.model import TUNNEL_OFPORT, Encap, Endpoint, Model, Network

BASE_SECTION = Section(base.PIPELINE_COOKIE, base.base_flows())


class SectionBuilder:
    def __init__(self, model: Model) -> None:
        self.model = model
        self._fabric = Fabric.from_model(model)
        self._shared: dict[str, dict[tuple[Feature, str | None], Any]] = {}  # by network key
        self._remote_flows: dict[tuple[str, int], tuple[Endpoint, Flow]] = {}
        self._vxlan_buckets: dict[tuple[int, str], Bucket] = {}
        self._endpoint_flows: dict[tuple[str, Feature], tuple[Endpoint, Flow]] = {}
        self._local_flows: dict[str, tuple[Endpoint, Flow]] = {}
        self._carrier_sets: dict[str, frozenset[str]] = {}
        self._segments: dict[tuple[str, str], tuple[tuple, Section]] = {}

    def refresh_fabric(self) -> None:
        """A fabric link went down or came up: new flood tree and paths; what was built from the old goes."""
        self._fabric = Fabric.from_model(self.model)
        self._carrier_sets.clear()
        self._segments.clear()

    def forget(self, key: str) -> None:
        """The network changed (its endpoints, hosts or QoS): rebuild its sections when next asked."""
        self._shared.pop(key, None)
        self._carrier_sets.pop(key, None)

    def node_base(self, name: str) -> NodeState:
        """A node's pipeline, its endpoints' ports and its meters: all but the network sections."""
        state = NodeState({BASE_SECTION.cookie: BASE_SECTION})
        for endpoint in self.model.endpoints_by_node[name].values():
            section = self.port_section(endpoint)
            state.sections[section.cookie] = section
        state.sections.update(self.meter_sections(name))
        return state

    def relevant_networks(self, name: str) -> list[Network]:
        """Networks with a section on this node: its tenants' networks, and VLAN networks it carries."""
        found = {
            key: network
            for tenant, nodes in self.model.tenant_nodes.items()
            if name in nodes
            for key, network in self.model.networks_by_tenant[tenant].items()
        }
        if self.model.links:
            for key, network in self.model.networks.items():
                if key not in found and network.encap is Encap.VLAN and name in self.carriers(network):
                    found[key] = network
        return [network for network in found.values() if self.model.hosts[network.key]]

    def audience(self, network: Network) -> set[str]:
        """Nodes that need any section of this network."""
        hosts = self.model.hosts[network.key]
        if not hosts:
            return set()
        return set(self.carriers(network)) | set(self.model.tenant_nodes[network.tenant])

    def carriers(self, network: Network) -> frozenset[str]:
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

    def network_sections(self, network: Network, name: str) -> dict[int, Section]:
        hosts = self.model.hosts[network.key]
        if name not in hosts and name not in self.carriers(network) and not self.per_node_views(network):
            return self.router_view(network)
        sections: list[Section] = []
        if name in self.carriers(network):
            sections.append(self.segment_section(network, name))
        sections.append(self.l2_section(network, name))
        if name in hosts:
            sections.append(self._shared_section(network, Feature.ARP))
            sections.append(self._shared_section(network, Feature.GATEWAY))
        if name in self.model.tenant_nodes[network.tenant]:
            sections.append(self._shared_section(network, Feature.ROUTES))
        return {s.cookie: s for s in sections}

    def per_node_views(self, network: Network) -> bool:
        """A VLAN network's way to the hosts depends on the node (its uplink, its fabric links); a VXLAN
        network's is the same flow-based tunnel port everywhere, so its non-hosts share one view."""
        return network.encap is Encap.VLAN

    def router_view(self, network: Network) -> dict[int, Section]:
        """What a node that only routes into the network holds (most nodes of a large tenant): built once."""
        shared = self._shared.setdefault(network.key, {})
        view = shared.get((Feature.ROUTES, "router-view"))
        if view is None:
            sections = (self.l2_section(network, None), self._shared_section(network, Feature.ROUTES))
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

    def l2_section(self, network: Network, name: str | None) -> Section:
        # A node with no endpoint of a VXLAN network sees every endpoint as remote, through the same
        # tunnel port: that view is built once and shared; a host's view swaps in its local endpoints.
        per_node = name is not None and (name in self.model.hosts[network.key] or self.per_node_views(network))
        shared = self._shared.setdefault(network.key, {})
        key = (Feature.L2, name if per_node else None)
        section = shared.get(key)
        if section is None:
            endpoints = self.model.endpoints_by_network[network.key].values()
            if per_node and network.encap is Encap.VXLAN:
                remote = self.l2_section(network, None).flows  # in the same endpoint order
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

    def segment_section(self, network: Network, name: str) -> Section:
        # Only the network's hosts and carriers and this node's own ports of it shape the section.
        signature = (
            frozenset(self.model.hosts[network.key]),
            self.carriers(network),
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

    def port_section(self, endpoint: Endpoint) -> Section:
        c = cookie(Feature.PORT, endpoint.num)
        network = self.model.networks[endpoint.network]
        tenant_id = self.model.tenants[endpoint.tenant].id
        flows = [port_security.classify_port(endpoint, network, tenant_id, cookie=c)]
        flows.extend(port_security.port_security(endpoint, cookie=c))
        attachment = self.model.qos_for(endpoint)
        if attachment is not None:
            flows.extend(qos.meter_flows(endpoint, self.model.qos_profiles[attachment.profile], cookie=c))
        return Section(c, tuple(flows))

    def meter_sections(self, name: str) -> dict[int, Section]:
        sections: dict[int, Section] = {}
        for endpoint in self.model.endpoints_by_node[name].values():
            attachment = self.model.qos_for(endpoint)
            if attachment is not None:  # each endpoint its own meters: a profile caps endpoints, one by one
                c = cookie(Feature.METER, endpoint.num)
                sections[c] = Section(c, meters=qos.meters(endpoint, self.model.qos_profiles[attachment.profile]))
        return sections
