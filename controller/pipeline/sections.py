"""What each node needs of each object, as sections, built once and shared wherever they are equal.

What a node needs:
- the pipeline's miss flows and delivery (every node);
- for each local endpoint, its port section: classify, port security, meter;
- for each network it hosts: the ARP responder and the gateway, and a VXLAN network's unicast to the
  node's own endpoints of it (above the remote view below, which all the network's nodes share);
- for each network it carries (hosts it, or is a transit switch of its VLAN fabric): the segment section,
  classifying tunnel or VLAN traffic into the network and flooding through the network's groups;
- for each network of a tenant it has endpoints of: unicast L2 toward all the network's endpoints and host
  routes to them, since routing between a tenant's networks is done by the sending node.

Sections identical on many nodes (the routes of a network, a VXLAN network's unicast to every endpoint as
remote) are built once; flows are built once per version of their endpoint. `forget(network)` drops what
was built for a network after it changed.

Every memo belongs to one network object or one endpoint object and is checked against it (by identity)
before use: ids, names, VNIs and VLANs are reused once their object is deleted, so nothing may be looked up
by them alone. What is compared beyond the object (hosts, carriers, local ports, tunnel IPs) is named where
it is kept. A memo goes with its object (`forget`, `forget_endpoint`, `keep_segments`), so the memory held
follows the live model, not its history.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features import arp, base, gateway, l2, l3, port_security, qos, vlan, vxlan
from controller.pipeline.ir import Bucket, Flow
from controller.pipeline.state import NodeState, Section
from topology.graph import Fabric
from topology.model import TUNNEL_OFPORT, Encap, Endpoint, Model, Network

BASE_SECTION = Section(base.PIPELINE_COOKIE, base.base_flows())


class _NetworkCache:
    """What was built for one network object. A network deleted and made again (even with the same key, id
    or segment) is another object and starts from nothing, so nothing here outlives the object it came from.
    """

    __slots__ = ("buckets", "carriers", "locals", "network", "segments", "shared", "tenant_id")

    def __init__(self, network: Network, tenant_id: int) -> None:
        self.network = network
        self.tenant_id = tenant_id
        # Sections shared between nodes; cleared on any change of the network (its endpoints, hosts, QoS).
        self.shared: dict[tuple[Feature, str | None], Any] = {}
        self.carriers: frozenset[str] | None = None
        # Tunnel buckets by target node, with the tunnel IP they were built for.
        self.buckets: dict[str, tuple[IPv4Address, Bucket]] = {}
        # Segment sections by node, with everything they were built from (see `segment_section`).
        self.segments: dict[str, tuple[tuple, Section]] = {}
        # A VXLAN network's local L2 sections by node, with the node's endpoints of it they were built from.
        self.locals: dict[str, tuple[tuple[Endpoint, ...], Section]] = {}


class _EndpointCache:
    """The flows built for one endpoint object in one network object: ARP answer, host route, local L2,
    and remote L2 by the port it leaves by (with the bucket it was built with)."""

    __slots__ = ("endpoint", "flows", "network", "remote", "tenant_id")

    def __init__(self, endpoint: Endpoint, network: Network, tenant_id: int) -> None:
        self.endpoint = endpoint
        self.network = network
        self.tenant_id = tenant_id
        self.flows: dict[Feature, Flow] = {}
        self.remote: dict[int, tuple[Bucket, Flow]] = {}


class SectionBuilder:
    """Builds sections and remembers them. Every memo is checked against the very objects (network,
    endpoint, tenant id, tunnel IP, fabric) it was built from, and dropped with the object it belongs to:
    the memory held follows the live model, not its history (`cache_sizes` counts it).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self._fabric = Fabric.from_model(model)
        self._networks: dict[str, _NetworkCache] = {}  # by network key
        self._endpoints: dict[str, _EndpointCache] = {}  # by endpoint id

    def refresh_fabric(self) -> None:
        """A fabric link went down or came up: new flood tree and paths; what was built from the old goes."""
        self._fabric = Fabric.from_model(self.model)
        for cache in self._networks.values():
            if cache.network.encap is Encap.VLAN:  # a VXLAN network's carriers and floods use no fabric link
                cache.carriers = None
                cache.segments.clear()

    def forget(self, key: str) -> None:
        """The network changed (its endpoints, hosts or QoS): rebuild its sections when next asked.

        A network that is gone takes everything built for it along.
        """
        cache = self._networks.get(key)
        if cache is None:
            return
        if self.model.networks.get(key) is not cache.network:
            del self._networks[key]
            return
        cache.shared.clear()
        cache.carriers = None
        hosts = self.model.hosts[key]
        for name in [n for n in cache.buckets if n not in hosts]:
            del cache.buckets[name]  # no endpoint there any more: nothing tunnels to it
        for name in [n for n in cache.locals if n not in hosts]:
            del cache.locals[name]

    def forget_endpoint(self, endpoint_id: str) -> None:
        """The endpoint changed or went: its flows go when it is no longer the model's endpoint."""
        cache = self._endpoints.get(endpoint_id)
        if cache is not None and self.model.endpoints.get(endpoint_id) is not cache.endpoint:
            del self._endpoints[endpoint_id]

    def keep_segments(self, key: str, nodes: frozenset[str]) -> None:
        """Drop the segment sections of a network on nodes that no longer carry it."""
        cache = self._networks.get(key)
        if cache is not None:
            for name in [n for n in cache.segments if n not in nodes]:
                del cache.segments[name]

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per memo: networks, endpoints, and the sections and flows under them."""
        networks = self._networks.values()
        endpoints = self._endpoints.values()
        return {
            "networks": len(self._networks),
            "network_sections": sum(len(c.shared) + len(c.locals) for c in networks),
            "tunnel_buckets": sum(len(c.buckets) for c in networks),
            "segments": sum(len(c.segments) for c in networks),
            "endpoints": len(self._endpoints),
            "endpoint_flows": sum(len(c.flows) + len(c.remote) for c in endpoints),
        }

    def _net(self, network: Network) -> _NetworkCache:
        cache = self._networks.get(network.key)
        if cache is None or cache.network is not network:
            tenant_id = self.model.tenants[network.tenant].id
            cache = self._networks[network.key] = _NetworkCache(network, tenant_id)
        return cache

    def _ep(self, endpoint: Endpoint, network: Network) -> _EndpointCache:
        cache = self._endpoints.get(endpoint.id)
        if cache is None or cache.endpoint is not endpoint or cache.network is not network:
            tenant_id = self._net(network).tenant_id
            cache = self._endpoints[endpoint.id] = _EndpointCache(endpoint, network, tenant_id)
        return cache

    def node_base(self, name: str) -> NodeState:
        """A node's pipeline, its endpoints' ports and its meters: all but the network sections."""
        state = NodeState({BASE_SECTION.cookie: BASE_SECTION})
        for endpoint in self.model.endpoints_by_node[name].values():
            section = self.port_section(endpoint)
            state.sections[section.cookie] = section
        state.sections.update(self.meter_sections(name))
        gateway_section = self.gateway_section(name)
        if gateway_section is not None:
            state.sections[gateway_section.cookie] = gateway_section
        return state

    def gateway_section(self, name: str) -> Section | None:
        """The node's gateway port flows (features/gateway.py), None while there is no cluster network."""
        c = cookie(Feature.NODE_GATEWAY, 0)
        flows = gateway.node_flows(self.model, name, cookie=c)
        return Section(c, flows) if flows else None

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
        cache = self._net(network)
        carriers = cache.carriers
        if carriers is None:
            hosts = self.model.hosts[network.key]
            if network.encap is Encap.VXLAN or not self.model.links:
                carriers = frozenset(hosts)  # a full mesh of tunnels, or one physical switch: no transit
            else:
                # Transit switches: on the flood tree between hosts, and on the paths routed traffic takes
                # from any node of the tenant to the hosts.
                carriers = self._fabric.carriers({*hosts, *self.model.tenant_nodes[network.tenant]})
            cache.carriers = carriers
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
            if network.encap is Encap.VXLAN:
                sections.append(self.l2_local_section(network, name))
            sections.append(self._shared_section(network, Feature.ARP))
            sections.append(self._shared_section(network, Feature.GATEWAY))
        if name in self.model.tenant_nodes[network.tenant]:
            sections.append(self._shared_section(network, Feature.ROUTES))
        return {s.cookie: s for s in sections}

    def per_node_views(self, network: Network) -> bool:
        """A VLAN network's way to the hosts depends on the node (its uplink, its fabric links); a VXLAN
        network's is the same flow-based tunnel port everywhere, so all its nodes share one remote view."""
        return network.encap is Encap.VLAN

    def router_view(self, network: Network) -> dict[int, Section]:
        """What a node that only routes into the network holds (most nodes of a large tenant): built once."""
        shared = self._net(network).shared
        view = shared.get((Feature.ROUTES, "router-view"))
        if view is None:
            sections = (self.l2_section(network, None), self._shared_section(network, Feature.ROUTES))
            view = shared[(Feature.ROUTES, "router-view")] = {s.cookie: s for s in sections}
        return view

    def _shared_section(self, network: Network, feature: Feature) -> Section:
        shared = self._net(network).shared
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
        """An endpoint's ARP answer or host route, built once per version of the endpoint and its network."""
        cache = self._ep(endpoint, network)
        flow = cache.flows.get(feature)
        if flow is None:
            c = cookie(feature, network.id)
            if feature is Feature.ARP:
                flow = arp.endpoint_answer(endpoint, network, cookie=c)
            else:
                flow = l3.host_route(endpoint, network, cache.tenant_id, cookie=c)
            cache.flows[feature] = flow
        return flow

    def l2_section(self, network: Network, name: str | None) -> Section:
        """Unicast toward the network's endpoints as node `name` (None: a node of no fabric) sends it.

        A VXLAN network's: every endpoint as remote, through the one tunnel port, whatever the node; built
        once and shared by all its nodes, so an endpoint added or removed is one flow more or less in one
        section, diffed once for all of them (`compile.pair_diff`), not one section per node rebuilt and
        diffed. A host's own endpoints are in its `l2_local_section`, above this. A VLAN network's: per
        node, its own endpoints local and the others toward their node over the fabric.
        """
        per_node = name is not None and self.per_node_views(network)
        shared = self._net(network).shared
        key = (Feature.L2, name if per_node else None)
        section = shared.get(key)
        if section is None:
            endpoints = self.model.endpoints_by_network[network.key].values()
            flows = [
                self._local_flow(e, network) if per_node and e.node == name else self._remote_flow(e, network, name)
                for e in endpoints
            ]
            section = shared[key] = Section(cookie(Feature.L2, network.id), tuple(f for f in flows if f))
        return section

    def l2_local_section(self, network: Network, name: str) -> Section:
        """A VXLAN network's endpoints on node `name`, to their ports: the flows at l2.LOCAL_PRIORITY that win
        over the shared view's remote ones for the same MACs (`l2_section`). Kept with the node's endpoints of
        the network it was built from: a change elsewhere in the network gives the very same section back,
        which the compiler skips without a diff."""
        cache = self._net(network)
        local = tuple(e for e in self.model.endpoints_by_node[name].values() if e.network == network.key)
        cached = cache.locals.get(name)
        if cached is not None and cached[0] == local:
            return cached[1]
        section = Section(cookie(Feature.L2_LOCAL, network.id), tuple(self._local_flow(e, network) for e in local))
        cache.locals[name] = (local, section)
        return section

    def _local_flow(self, endpoint: Endpoint, network: Network) -> Flow:
        cache = self._ep(endpoint, network)
        flow = cache.flows.get(Feature.L2)
        if flow is None:
            feature = Feature.L2_LOCAL if network.encap is Encap.VXLAN else Feature.L2  # its section's cookie
            flow = cache.flows[Feature.L2] = l2.local(endpoint, network, cookie=cookie(feature, network.id))
        return flow

    def _remote_flow(self, endpoint: Endpoint, network: Network, name: str | None) -> Flow | None:
        # The flow depends on the endpoint, its network and the bucket it leaves by: the tunnel to the
        # endpoint's node (by tunnel IP), or a fabric port toward it.
        if network.encap is Encap.VXLAN:
            port: int | None = TUNNEL_OFPORT
        elif name is None:
            return None  # no node, no fabric port (VLAN views are always per node)
        else:
            port = self._fabric.next_hop_port(name, endpoint.node)
        if port is None:
            return None  # no path on the VLAN fabric
        cache = self._ep(endpoint, network)
        bucket = self._vxlan_bucket(network, endpoint.node) if port == TUNNEL_OFPORT else None
        cached = cache.remote.get(port)
        if cached is not None and (bucket is None or cached[0] is bucket):
            return cached[1]
        if bucket is None:
            bucket = vlan.to_port(network, port)
        flow = l2.remote(endpoint, network, bucket, cookie=cookie(Feature.L2, network.id))
        cache.remote[port] = (bucket, flow)
        return flow

    def _vxlan_bucket(self, network: Network, target: str) -> Bucket:
        """The tunnel bucket to `target` for this network: its VNI and the node's tunnel IP, built once."""
        buckets = self._net(network).buckets
        tunnel_ip = self.model.nodes[target].tunnel_ip
        cached = buckets.get(target)
        if cached is None or cached[0] != tunnel_ip:
            cached = buckets[target] = (tunnel_ip, vxlan.to_node(network, tunnel_ip))
        return cached[1]

    def segment_section(self, network: Network, name: str) -> Section:
        # The network object (id, segment, subnet, gateway) and its tenant's id are fixed for the cache
        # entry; the hosts, carriers, this node's own ports of it and the tunnel buckets to the other
        # hosts (their tunnel IPs) are compared; a fabric change drops every segment.
        cache = self._net(network)
        signature = (
            frozenset(self.model.hosts[network.key]),
            self.carriers(network),
            sorted(e.ofport for e in self.model.endpoints_by_node[name].values() if e.network == network.key),
            tuple(b for _, b in self._flood_targets(network)) if network.encap is Encap.VXLAN else (),
        )
        cached = cache.segments.get(name)
        if cached is not None and cached[0] == signature:
            return cached[1]
        section = self._build_segment(network, name, signature[2])
        cache.segments[name] = (signature, section)
        return section

    def _build_segment(self, network: Network, name: str, local_ports: list[int]) -> Section:
        c = cookie(Feature.SEGMENT, network.id)
        tenant_id = self._net(network).tenant_id
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
        shared = self._net(network).shared
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
