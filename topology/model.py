"""The topology model: typed, immutable entities and one mutable container that keeps them consistent.

Every change goes through a `Model` method that validates it completely before touching any state, so a
rejected change leaves nothing half-applied, and returns a `Touched` record naming what it changed. The
compiler uses that record to recompute only the affected sections of the affected nodes.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from topology.errors import ValidationError
from topology.gateway import MAX_SNAT_NETWORK_ID, NODE_GATEWAY_MAC_BASE, GatewayConfig, parse_node_ports
from topology.ipam import (
    MAX_NETWORK_ID,
    AddressPool,
    endpoint_mac,
    gateway_mac,
    int_to_mac,
    is_unicast_mac,
    mac_to_int,
)
from topology.labels import Labels, parse_labels
from topology.mtu import DEFAULT_UNDERLAY_MTU, check_network, check_node, default_mtu
from topology.namespaces import ContainerPort, Namespace, NamespacesMixin, parse_ports
from topology.netpol_spec import NetworkPolicy
from topology.values import check_ifname, check_name, check_unicast, parse_ip, parse_subnet, show

VLAN_RANGE = (1, 4094)
MAX_POLICY_ID = 2**17 - 1  # a policy id, a rule's direction and index, a clause: one 32-bit conjunction id
VNI_RANGE = (1, 16_777_215)

# Planned OpenFlow port numbers on br-int. The agent asks OVS for them with `ofport_request`, so the
# compiled flows are right before the switch reports a single port.
TUNNEL_OFPORT = 1
UPLINK_OFPORT = 2
FIRST_LINK_OFPORT = 3
GATEWAY_OFPORT = 999  # the node's gateway port (an OVS internal port in the host stack); links stay below it
FIRST_ENDPOINT_OFPORT = 1000
LAST_OFPORT = 65279  # OFPP_MAX
TUNNEL_PORT_NAME = "tenet-tun"
GATEWAY_PORT_NAME = "tenet-gw0"
# Infrastructure names no endpoint port, uplink or fabric link port may take (controller.policy re-exports them).
RESERVED_PREFIX = "tenet-"
RESERVED_NAMES = frozenset({"br-int", "br-phy"})


class Encap(str, Enum):  # noqa: UP042 - the mixin keeps str() and format() as they were
    VLAN = "vlan"
    VXLAN = "vxlan"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    id: int


@dataclass(frozen=True, slots=True)
class Network:
    tenant: str
    name: str
    encap: Encap
    segment: int  # VLAN id or VNI, by encap
    subnet: IPv4Network
    gateway: IPv4Address
    mtu: int
    id: int
    nat_outgoing: bool = False  # egress to addresses outside the cluster, SNATed (see GatewayConfig)
    node_ports: tuple[str, ...] = ()  # ports of its node's address it may reach, SNATed: ("tcp/53", "udp/53")
    key: str = field(init=False, repr=False, compare=False)  # "tenant/name", looked up on every compile

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.tenant}/{self.name}")

    @property
    def gateway_mac(self) -> int:
        return gateway_mac(self.id)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    tunnel_ip: IPv4Address
    uplink: str | None
    datapath_id: int
    underlay_mtu: int = DEFAULT_UNDERLAY_MTU  # bytes, of the interface holding tunnel_ip (topology.mtu)
    uplink_mtu: int | None = None  # bytes, of the uplink; None: as the underlay


@dataclass(frozen=True, slots=True)
class Link:
    """A cable between two nodes' bridges (a VLAN fabric with explicit links, such as a ring)."""

    a: str
    a_port: str
    b: str
    b_port: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    tenant: str
    network: str  # network key, "tenant/name"
    node: str
    mac: int
    ip: IPv4Address
    port_name: str
    ofport: int
    num: int  # small integer id, for cookies
    namespace: str | None = None  # a Kubernetes namespace of the network's tenant; None: in none
    labels: Labels = ()  # sorted (key, value) pairs
    ports: tuple[ContainerPort, ...] = ()  # named container ports

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def mac_text(self) -> str:
        return int_to_mac(self.mac)


QOS_DIRECTIONS = ("egress", "ingress", "both")  # from the pod, to the pod, or each way with its own meter
DEFAULT_BURST_MS = 500  # a default burst of half a second of the rate keeps TCP at >= 85% of it


def default_burst_kb(rate_kbps: int) -> int:
    """The burst (kbit) a profile gets when it names none: `DEFAULT_BURST_MS` of its rate (kbit/s).

    A meter is a policer: what exceeds the bucket is dropped, and TCP, whose minimum retransmission timeout is
    200 ms, collapses when the bucket holds much less than that much traffic. Measured with iperf3 through
    OVS 3.1 userspace meters: ~10 ms of the rate gives 5% of it, 100 ms about 50%, 200 ms 86-89%, 500 ms 92-96%.
    """
    return max(1, rate_kbps * DEFAULT_BURST_MS // 1000)


@dataclass(frozen=True, slots=True)
class QosProfile:
    """A bandwidth cap, applied to each endpoint it covers separately (one meter per endpoint and direction).

    rate_kbps: kbit/s; burst_kb: the bucket, in kbit (kilobits, OpenFlow's meter burst unit, not kB);
    direction: "egress" (traffic from the pod), "ingress" (traffic to the pod) or "both".
    """

    name: str
    rate_kbps: int
    burst_kb: int
    direction: str = "both"


@dataclass(frozen=True, slots=True)
class QosAttachment:
    """A profile applied to a network (every endpoint of it, per node) or to one endpoint."""

    profile: str
    target: str  # a network key "tenant/name" or an endpoint id
    meter_id: int
    attached_by: str = "admin"  # "admin" or "tenant": a tenant may detach only what a tenant attached


@dataclass
class Touched:
    """What one model change affected; the compiler recompiles only this."""

    networks: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    fabric: bool = False  # a fabric link went down or came up: the flood tree and the paths change
    everything: bool = False
    namespaces: set[str] = field(default_factory=set)  # namespaces added, removed or relabelled
    labels: set[str] = field(default_factory=set)  # endpoints whose labels or named ports changed
    policies: set[str] = field(default_factory=set)  # NetworkPolicies ("namespace/name") applied or removed

    def merge(self, other: Touched) -> Touched:
        self.networks |= other.networks
        self.endpoints |= other.endpoints
        self.nodes |= other.nodes
        self.fabric |= other.fabric
        self.everything |= other.everything
        self.namespaces |= other.namespaces
        self.labels |= other.labels
        self.policies |= other.policies
        return self


class IdAllocator:
    """Integers from `first` to `last`: deterministic, and ids are reused only after release.

    `reuse` True: the lowest free id. False: the next after the highest ever given (the mark), wrapping to
    the lowest free only when the ids above the mark are exhausted, so a released id is not handed out again
    soon (network ids: conntrack zones a deleted network leaves behind). `claim` takes a given id, for a
    model restored from its store with the ids it had before; `raise_mark` restores the mark.
    """

    def __init__(self, first: int = 1, last: int = 2**48 - 1, *, reuse: bool = True) -> None:
        self._first, self._next, self._last = first, first, last
        self._reuse = reuse
        self._freed: list[int] = []  # released ids below the high-water mark, a min-heap
        self._ahead: set[int] = set()  # claimed ids at or above the mark

    @property
    def mark(self) -> int:
        """The next id from above: every id below it was given (or claimed over) once."""
        return self._next

    def peek(self) -> int | None:
        """The id `take` would return, or None if none is free; changes nothing."""
        if self._reuse and self._freed:
            return self._freed[0]
        value = self._next
        while value in self._ahead:
            value += 1
        if value <= self._last:
            return value
        return self._freed[0] if self._freed else None

    def take(self, what: str) -> int:
        value = self.peek()
        if value is None:
            raise ValidationError(what, f"no free id left: {self._first}..{self._last} are all in use", conflict=True)
        if value < self._next:
            heapq.heappop(self._freed)
            return value
        for skipped in range(self._next, value):
            self._ahead.discard(skipped)
        self._next = value + 1
        return value

    def raise_mark(self, mark: int) -> None:
        """Move the mark up to `mark` (restored from the store): ids below it not in use count as released."""
        mark = min(mark, self._last + 1)
        for value in range(self._next, mark):
            if value in self._ahead:
                self._ahead.discard(value)
            else:
                heapq.heappush(self._freed, value)
        self._next = max(self._next, mark)

    def can_claim(self, value: int) -> bool:
        if not self._first <= value <= self._last:
            return False
        return value in self._freed if value < self._next else value not in self._ahead

    def claim(self, value: int, what: str) -> None:
        if not self.can_claim(value):
            raise ValidationError(what, f"id {value} is taken or outside {self._first}..{self._last}", conflict=True)
        if value < self._next:
            self._freed.remove(value)
            heapq.heapify(self._freed)
        else:
            self._ahead.add(value)

    def give_back(self, value: int) -> None:
        if value >= self._next:
            self._ahead.discard(value)  # claimed but never reached by take: nothing to hand out again
        else:
            heapq.heappush(self._freed, value)

    def has_free(self) -> bool:
        return bool(self._freed) or self._next + len(self._ahead) <= self._last


def default_datapath_id(name: str) -> int:
    """A stable 48-bit datapath id derived from the node name (OVS uses 64 bits; we keep it short)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big") or 1


DERIVED_DATAPATH_BASE = 0x7E_0000_0000_0000  # the agent's default datapath id: this, or'ed with the tunnel IP


def derived_datapath_id(tunnel_ip: IPv4Address) -> int:
    """The datapath id the node agent gives its bridge by default: `DERIVED_DATAPATH_BASE` | the tunnel IP."""
    return DERIVED_DATAPATH_BASE | int(tunnel_ip)


def check_range(path: str, what: str, value: int, bounds: tuple[int, int]) -> None:
    """`value` must be an int (not a bool: `True` is no VLAN id) within `bounds`, both ends included.

    Raises ValidationError at `path`, e.g. `network.vni: VNI 0 is outside 1..16777215`.
    """
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(path, f"want {what} as an integer in {low}..{high}, got {show(value)}")
    if not low <= value <= high:
        raise ValidationError(path, f"{what} {show(value)} is outside {low}..{high}")


class Model(NamespacesMixin):
    """Tenants, networks, nodes, links, endpoints and QoS, with the indexes the compiler needs; Kubernetes
    namespaces and NetworkPolicies (`topology.namespaces`)."""

    def __init__(self, *, reuse_network_ids: bool = False) -> None:
        """`reuse_network_ids` True: a new network gets the lowest free id, a deleted one's at once (tests of
        compiles with reused ids); False: ids increase (see IdAllocator)."""
        self.tenants: dict[str, Tenant] = {}
        self.networks: dict[str, Network] = {}
        self.nodes: dict[str, Node] = {}
        self.links: list[Link] = []
        # Link ends a switch reports down (node, port name): operational state, never stored. A link is up
        # when neither of its ends is down; a switch that never reported leaves its ends up.
        self.down_ports: set[tuple[str, str]] = set()
        self.links_version = 0  # counts link additions and removals
        self.endpoints: dict[str, Endpoint] = {}
        self.qos_profiles: dict[str, QosProfile] = {}
        self.qos_attachments: dict[str, QosAttachment] = {}  # by target
        self.namespaces: dict[str, Namespace] = {}
        self.policies: dict[str, NetworkPolicy] = {}  # by "namespace/name"
        self.policy_ids: dict[str, int] = {}  # by "namespace/name": cookies and conjunction ids derive from it
        self._policy_id_pool = IdAllocator(1, MAX_POLICY_ID)
        self.revision = 0
        self.networks_by_tenant: dict[str, dict[str, Network]] = {}
        self.endpoints_by_network: dict[str, dict[str, Endpoint]] = {}
        self.endpoints_by_node: dict[str, dict[str, Endpoint]] = {}
        self.hosts: dict[str, Counter[str]] = {}  # network key -> node -> endpoints there
        self.tenant_nodes: dict[str, Counter[str]] = {}  # tenant -> node -> endpoints there
        self._segments: dict[tuple[Encap, int], str] = {}
        self._pools: dict[str, AddressPool] = {}
        self._macs: dict[str, set[int]] = {}
        self._node_by_tunnel_ip: dict[IPv4Address, str] = {}
        self._ofports: dict[str, IdAllocator] = {}
        self._tenant_ids = IdAllocator(1, 2**24 - 1)
        self._network_ids = IdAllocator(1, MAX_NETWORK_ID, reuse=reuse_network_ids)
        self._endpoint_nums = IdAllocator(1, 2**40 - 1)
        self._meter_ids = IdAllocator(1, 0xFFFF0000 - 1)
        self.gateway: GatewayConfig | None = None  # set once, at controller start (configure_gateway)

    # --- queries -------------------------------------------------------------------------------

    def network(self, key: str, *, path: str = "network") -> Network:
        try:
            return self.networks[key]
        except KeyError:
            hint = "" if isinstance(key, str) and "/" in key else " (want TENANT/NAME)"
            raise ValidationError(path, f"unknown network {key!r}{hint}") from None
        except TypeError:  # not a string at all (an unhashable value from a caller that skipped its checks)
            raise ValidationError(path, f"unknown network {key!r} (want TENANT/NAME)") from None

    def free_addresses(self, key: str) -> int:
        """How many more endpoints network `key` can take before its address pool is exhausted."""
        return self._pools[key].free

    def endpoint(self, endpoint_id: str, *, path: str = "endpoint") -> Endpoint:
        try:
            return self.endpoints[endpoint_id]
        except KeyError:
            raise ValidationError(path, f"unknown endpoint {endpoint_id!r}") from None

    def node(self, name: str, *, path: str = "node") -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ValidationError(path, f"unknown node {name!r}") from None

    def qos_for(self, endpoint: Endpoint) -> QosAttachment | None:
        """The attachment that meters this endpoint: its own, else its network's; but a cap the admin attached
        to the network wins over a profile a tenant attached to the endpoint (whichever came first)."""
        own = self.qos_attachments.get(endpoint.id)
        network = self.qos_attachments.get(endpoint.network)
        if own is not None and own.attached_by != "admin" and network is not None and network.attached_by == "admin":
            return network
        return own or network

    def link_ports(self, node: str) -> dict[str, int]:
        """Planned ofports of a node's fabric link ports, in link declaration order."""
        ports: dict[str, int] = {}
        for link in self.links:
            for end, port in ((link.a, link.a_port), (link.b, link.b_port)):
                if end == node and port not in ports:
                    ports[port] = FIRST_LINK_OFPORT + len(ports)
        return ports

    def link_up(self, link: Link) -> bool:
        return (link.a, link.a_port) not in self.down_ports and (link.b, link.b_port) not in self.down_ports

    def planned_ports(self, node: str) -> dict[str, int]:
        """Every port of a node's br-int the flows name, by port name: tunnel, uplink, links, endpoints."""
        ports = {TUNNEL_PORT_NAME: TUNNEL_OFPORT}
        uplink = self.nodes[node].uplink
        if uplink is not None:
            ports[uplink] = UPLINK_OFPORT
        ports.update(self.link_ports(node))
        if self.gateway is not None:
            ports[GATEWAY_PORT_NAME] = GATEWAY_OFPORT
        ports.update((e.port_name, e.ofport) for e in self.endpoints_by_node[node].values())
        return ports

    def planned_port(self, node: str, name: str) -> int | None:
        """The OpenFlow port number the flows give port `name` of node `node`'s br-int: `planned_ports(node)
        .get(name)` without building the endpoints' part (a node's endpoints are scanned, not copied); None if
        the flows name no such port. Raises KeyError for a node the model does not have."""
        for e in self.endpoints_by_node[node].values():  # in planned_ports an endpoint's name comes last: it wins
            if e.port_name == name:
                return e.ofport
        if self.gateway is not None and name == GATEWAY_PORT_NAME:
            return GATEWAY_OFPORT
        links = self.link_ports(node)
        if name in links:
            return links[name]
        if name == self.nodes[node].uplink:
            return UPLINK_OFPORT
        return TUNNEL_OFPORT if name == TUNNEL_PORT_NAME else None

    # --- tenants and networks ------------------------------------------------------------------

    def add_tenant(self, name: str, *, tenant_id: int | None = None, path: str = "tenant") -> Touched:
        check_name(path + ".name", name)
        if name in self.tenants:
            raise ValidationError(path + ".name", f"tenant {name!r} already exists", conflict=True)
        self.tenants[name] = Tenant(name, take_or_claim(self._tenant_ids, tenant_id, path))
        self.networks_by_tenant[name] = {}
        self.tenant_nodes[name] = Counter()
        return self._bump(Touched())

    def remove_tenant(self, name: str, *, path: str = "tenant") -> Touched:
        tenant = self.tenants.get(name)
        if tenant is None:
            raise ValidationError(path, f"unknown tenant {name!r}")
        if self.networks_by_tenant[name]:
            names = ", ".join(sorted(n.name for n in self.networks_by_tenant[name].values()))
            message = f"tenant {name!r} still has networks ({names}): delete them first"
            raise ValidationError(path, message, conflict=True)
        if self.tenant_has_namespaces(name):
            raise ValidationError(path, f"tenant {name!r} still has namespaces: delete them first", conflict=True)
        del self.tenants[name], self.networks_by_tenant[name], self.tenant_nodes[name]
        self._tenant_ids.give_back(tenant.id)
        return self._bump(Touched())

    def add_network(
        self,
        tenant: str,
        name: str,
        *,
        encap: str,
        segment: int,
        subnet: str,
        gateway: str | None = None,
        mtu: int | None = None,
        network_id: int | None = None,
        nat_outgoing: bool | None = None,
        node_ports: object = None,
        path: str = "network",
    ) -> Touched:
        """Add a network. `nat_outgoing` None: on for the cluster network, off for any other. `node_ports`
        (topology.gateway.parse_node_ports) None: none open."""
        if tenant not in self.tenants:
            raise ValidationError(path, f"unknown tenant {tenant!r}")
        check_name(path + ".name", name)
        key = f"{tenant}/{name}"
        if key in self.networks:
            raise ValidationError(path + ".name", f"network {key!r} already exists", conflict=True)
        try:
            kind = Encap(encap)
        except ValueError:
            raise ValidationError(path + ".encap", f"{encap!r} is not one of vlan, vxlan") from None
        segment_field = "vlan" if kind is Encap.VLAN else "vni"
        check_range(
            f"{path}.{segment_field}", segment_field.upper(), segment, VLAN_RANGE if kind is Encap.VLAN else VNI_RANGE
        )
        if (kind, segment) in self._segments:
            other = self._segments[(kind, segment)]
            raise ValidationError(
                f"{path}.{segment_field}",
                f"{segment_field.upper()} {segment} is already used by network {other!r}",
                conflict=True,
            )
        net = parse_subnet(path + ".subnet", subnet)
        for sibling in self.networks_by_tenant[tenant].values():
            if net.overlaps(sibling.subnet):
                raise ValidationError(
                    path + ".subnet",
                    f"{net} overlaps {sibling.subnet} of network {sibling.key!r} in the same tenant",
                    conflict=True,
                )
        self._check_cluster_subnet(path + ".subnet", key, net)
        if gateway is None:
            gw = next(iter(net.hosts()))  # hosts() of a /32 is a list
        else:
            gw = parse_ip(path + ".gateway", gateway)
            if gw not in net or (gw in (net.network_address, net.broadcast_address) and net.prefixlen < 31):
                hosts = f"{net[1]}..{net[-2]}"
                raise ValidationError(path + ".gateway", f"{gw} is not a host address of {net}; want one in {hosts}")
        siblings = self.networks_by_tenant[tenant].values()  # one MTU per tenant: see topology.mtu
        mtu = default_mtu(self.nodes.values(), siblings) if mtu is None else mtu
        check_network(path + ".mtu", kind.value, mtu, nodes=self.nodes.values(), tenant_networks=siblings)
        if network_id is not None and not self._network_ids.can_claim(network_id):
            raise ValidationError(path, f"network id {network_id} is taken", conflict=True)
        # checked with the id the network will get
        new_id = self._network_ids.peek() if network_id is None else network_id
        if nat_outgoing is None:
            nat_outgoing = self.gateway is not None and key == self.gateway.cluster_network
        if nat_outgoing:
            self._check_nat_outgoing(path + ".nat_outgoing", key, new_id)
        ports = parse_node_ports(
            path + ".node_ports",
            [] if node_ports is None else list(node_ports) if isinstance(node_ports, tuple) else node_ports,
        )
        if ports:
            self._check_node_ports(path + ".node_ports", key, new_id)
        network_id = take_or_claim(self._network_ids, network_id, path)
        network = Network(tenant, name, kind, segment, net, gw, mtu, network_id, nat_outgoing, ports)
        self.networks[key] = network
        self.networks_by_tenant[tenant][key] = network
        self._segments[(kind, segment)] = key
        self._pools[key] = AddressPool(net, gw, label=repr(key))
        self._macs[key] = set()
        self.endpoints_by_network[key] = {}
        self.hosts[key] = Counter()
        if self.gateway is not None and key == self.gateway.cluster_network:
            self._count_gateway_ports(list(self.nodes), +1)
        return self._bump(Touched(networks={key}))

    def set_nat_outgoing(self, key: str, on: bool, *, path: str = "network") -> Touched:
        """Turn a network's egress SNAT (`nat_outgoing`) on or off; ValidationError if it cannot be on."""
        network = self.network(key, path=path)
        if not isinstance(on, bool):
            raise ValidationError(path + ".nat_outgoing", f"want true or false, got {on!r}")
        if on:
            self._check_nat_outgoing(path + ".nat_outgoing", key, network.id)
        if on == network.nat_outgoing:
            return Touched()
        updated = replace(network, nat_outgoing=on)
        self.networks[key] = self.networks_by_tenant[network.tenant][key] = updated
        return self._bump(Touched(networks={key}))

    def set_node_ports(self, key: str, node_ports: object, *, path: str = "network") -> Touched:
        """Open exactly `node_ports` of the node's address to a network (a list as parse_node_ports takes,
        `[]` or `"none"` to close them all); ValidationError naming `path.node_ports`, nothing changed."""
        network = self.network(key, path=path)
        ports = parse_node_ports(path + ".node_ports", node_ports)
        if ports:
            self._check_node_ports(path + ".node_ports", key, network.id)
        if ports == network.node_ports:
            return Touched()
        updated = replace(network, node_ports=ports)
        self.networks[key] = self.networks_by_tenant[network.tenant][key] = updated
        return self._bump(Touched(networks={key}))

    def _check_node_ports(self, path: str, key: str, network_id: int | None) -> None:
        """Node ports are SNATed like nat_outgoing: the same conditions, and never for the cluster network."""
        if self.gateway is not None and key == self.gateway.cluster_network:
            raise ValidationError(path, "the cluster network's pods reach every node address already")
        self._check_nat_outgoing(path, key, network_id)

    def configure_gateway(self, config: GatewayConfig, *, path: str = "cluster_subnet") -> Touched:
        """Name the cluster network and its subnet (once, before it exists or matching it); ValidationError
        if another network overlaps the cluster subnet, any network the transit subnet, the cluster and
        transit subnets each other, or the cluster network has another subnet."""
        if config.cluster_subnet.overlaps(config.transit_subnet):
            raise ValidationError(
                "transit_subnet", f"{config.transit_subnet} overlaps the cluster subnet {config.cluster_subnet}"
            )
        for other in self.networks.values():
            if other.key == config.cluster_network:
                if other.subnet != config.cluster_subnet:
                    raise ValidationError(
                        path, f"network {other.key!r} has subnet {other.subnet}, not {config.cluster_subnet}"
                    )
            elif other.subnet.overlaps(config.cluster_subnet):
                raise ValidationError(
                    path, f"{config.cluster_subnet} overlaps {other.subnet} of network {other.key!r}", conflict=True
                )
            if other.subnet.overlaps(config.transit_subnet):
                raise ValidationError(
                    "transit_subnet",
                    f"{config.transit_subnet} overlaps {other.subnet} of network {other.key!r}",
                    conflict=True,
                )
        if self.gateway is not None and config.cluster_network in self.networks:
            self._count_gateway_ports(list(self.nodes), -1)
        self.gateway = config
        if config.cluster_network in self.networks:
            self._count_gateway_ports(list(self.nodes), +1)
        return self._bump(Touched(everything=True))

    def _check_cluster_subnet(self, path: str, key: str, net: IPv4Network) -> None:
        config = self.gateway
        if config is None:
            return
        if key == config.cluster_network and net != config.cluster_subnet:
            raise ValidationError(path, f"the cluster network's subnet is {config.cluster_subnet}, not {net}")
        if key != config.cluster_network and net.overlaps(config.cluster_subnet):
            raise ValidationError(
                path,
                f"{net} overlaps the cluster subnet {config.cluster_subnet}: it is unique in the cluster",
                conflict=True,
            )
        if net.overlaps(config.transit_subnet):
            raise ValidationError(
                path,
                f"{net} overlaps the transit subnet {config.transit_subnet}: its addresses are the SNAT's",
                conflict=True,
            )

    def _check_nat_outgoing(self, path: str, key: str, network_id: int | None) -> None:
        config = self.gateway
        if config is None:
            raise ValidationError(path, "no cluster network is set up (controller setting cluster_network)")
        if key == config.cluster_network:
            return
        if key.split("/", 1)[0] == config.cluster_tenant:
            raise ValidationError(
                path,
                f"networks of the cluster network's tenant {config.cluster_tenant!r} other "
                "than the cluster network cannot SNAT",
            )
        if network_id is not None and network_id > MAX_SNAT_NETWORK_ID:
            raise ValidationError(
                path, f"network id {network_id} is above {MAX_SNAT_NETWORK_ID}: no SNAT conntrack zone of its own"
            )
        if network_id is not None and network_id >= config.transit_subnet.num_addresses - 1:
            raise ValidationError(path, f"network id {network_id} has no transit address in {config.transit_subnet}")

    def _count_gateway_ports(self, nodes: list[str], delta: int) -> None:
        """A node's gateway port attaches it to the cluster network: count it as one of its endpoints."""
        config = self.gateway
        if config is None or config.cluster_network not in self.networks:
            return
        for node in nodes:
            for counter in (self.hosts[config.cluster_network], self.tenant_nodes[config.cluster_tenant]):
                if delta > 0:
                    counter[node] += 1
                else:
                    decrement(counter, node)

    @property
    def network_id_mark(self) -> int:
        """The next network id from above (ids increase and are reused only when exhausted): store it, and
        give it back to `raise_network_id_mark` on restore, so a restart does not hand out a deleted id."""
        return self._network_ids.mark

    def raise_network_id_mark(self, mark: int) -> None:
        self._network_ids.raise_mark(mark)

    def remove_network(self, key: str, *, path: str = "network") -> Touched:
        network = self.network(key, path=path)
        if self.endpoints_by_network[key]:
            count = len(self.endpoints_by_network[key])
            raise ValidationError(path, f"network {key!r} still has {count} endpoint(s)", conflict=True)
        if key in self.qos_attachments:
            self._meter_ids.give_back(self.qos_attachments.pop(key).meter_id)
        if self.gateway is not None and key == self.gateway.cluster_network:
            for node in self.nodes:
                decrement(self.tenant_nodes[network.tenant], node)
        del self.networks[key], self.networks_by_tenant[network.tenant][key]
        del self._segments[(network.encap, network.segment)], self._pools[key], self._macs[key]
        del self.endpoints_by_network[key], self.hosts[key]
        self._network_ids.give_back(network.id)
        return self._bump(Touched(networks={key}))

    # --- nodes and links -----------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        tunnel_ip: str,
        uplink: str | None = None,
        datapath_id: int | None = None,
        underlay_mtu: int | None = None,
        uplink_mtu: int | None = None,
        path: str = "node",
    ) -> Touched:
        """Add a node; MTUs in bytes (underlay default 1500, uplink default as the underlay). A node too small
        for a network that exists is refused (`topology.mtu.check_node`)."""
        check_name(path + ".name", name, subdomain=True)
        if name in self.nodes:
            raise ValidationError(path + ".name", f"node {name!r} already exists", conflict=True)
        ip, dpid, underlay_mtu = self._check_node(
            name, tunnel_ip, uplink, datapath_id, underlay_mtu, uplink_mtu, path=path
        )
        self.nodes[name] = Node(name, ip, uplink, dpid, underlay_mtu, uplink_mtu)
        self._node_by_tunnel_ip[ip] = name
        self.endpoints_by_node[name] = {}
        self._ofports[name] = IdAllocator(FIRST_ENDPOINT_OFPORT, LAST_OFPORT)
        self._count_gateway_ports([name], +1)
        return self._bump(Touched(everything=True))  # every remote view and flood list may change

    def remove_node(self, name: str, *, path: str = "node") -> Touched:
        node = self.node(name, path=path)
        if self.endpoints_by_node[name]:
            raise ValidationError(
                path, f"node {name!r} still has {len(self.endpoints_by_node[name])} endpoint(s)", conflict=True
            )
        if any(name in (link.a, link.b) for link in self.links):
            raise ValidationError(path, f"node {name!r} still has fabric links", conflict=True)
        self._count_gateway_ports([name], -1)
        del self.nodes[name], self._node_by_tunnel_ip[node.tunnel_ip], self.endpoints_by_node[name]
        del self._ofports[name]
        return self._bump(Touched(everything=True))

    def update_node(
        self,
        name: str,
        *,
        tunnel_ip: str,
        uplink: str | None = None,
        datapath_id: int | None = None,
        underlay_mtu: int | None = None,
        uplink_mtu: int | None = None,
        path: str = "node",
    ) -> Touched:
        """A registered node's new tunnel IP, uplink, datapath id or MTUs (bytes), kept with its endpoints and
        links.

        Validates like `add_node` (against the other nodes, and the MTUs against the networks that exist)
        before changing anything.
        """
        old = self.node(name, path=path)
        ip, dpid, underlay_mtu = self._check_node(
            name, tunnel_ip, uplink, datapath_id, underlay_mtu, uplink_mtu, path=path
        )
        del self._node_by_tunnel_ip[old.tunnel_ip]
        self.nodes[name] = Node(name, ip, uplink, dpid, underlay_mtu, uplink_mtu)
        self._node_by_tunnel_ip[ip] = name
        return self._bump(Touched(everything=True))  # other nodes' tunnel flows and flood lists name it

    def _check_node(
        self,
        name: str,
        tunnel_ip: str,
        uplink: str | None,
        datapath_id: int | None,
        underlay_mtu: int | None,
        uplink_mtu: int | None,
        *,
        path: str,
    ) -> tuple[IPv4Address, int, int]:
        """The checks a node passes to be added or updated, against every other node (not `name` itself):
        unicast tunnel IP of no other node, a Linux interface name for the uplink that is none of the
        node's link or endpoint ports, a datapath id no other node has, MTUs that fit (`topology.mtu`).
        Returns (tunnel IP, datapath id, underlay MTU) with the defaults filled in; raises ValidationError."""
        ip = parse_ip(path + ".tunnel_ip", tunnel_ip)
        check_unicast(path + ".tunnel_ip", ip)
        owner = self._node_by_tunnel_ip.get(ip)
        if owner not in (None, name):
            raise ValidationError(
                path + ".tunnel_ip", f"{ip} is already the tunnel IP of node {owner!r}", conflict=True
            )
        if uplink is not None:
            check_ifname(path + ".uplink", uplink)
            reason = reserved_name(uplink)
            if reason is not None:
                raise ValidationError(path + ".uplink", f"{reason}, not an uplink")
            if name in self.nodes and uplink in self.link_ports(name):
                raise ValidationError(
                    path + ".uplink", f"{uplink!r} is a fabric link port of node {name!r}", conflict=True
                )
            if any(e.port_name == uplink for e in self.endpoints_by_node.get(name, {}).values()):
                raise ValidationError(
                    path + ".uplink", f"{uplink!r} is an endpoint's port on node {name!r}", conflict=True
                )
        dpid = default_datapath_id(name) if datapath_id is None else datapath_id
        check_range(path + ".datapath_id", "datapath id", dpid, (1, 2**64 - 1))
        other = next((n.name for n in self.nodes.values() if n.datapath_id == dpid and n.name != name), None)
        if other is not None:
            raise ValidationError(
                path + ".datapath_id", f"datapath id {dpid:#x} is already used by node {other!r}", conflict=True
            )
        underlay_mtu = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else underlay_mtu
        check_node(path, underlay_mtu, uplink_mtu, self.networks.values())
        return ip, dpid, underlay_mtu

    def replace_node(self, node: Node) -> None:
        """Put back a node as it was (undoing `update_node`), without validating: it was valid then."""
        del self._node_by_tunnel_ip[self.nodes[node.name].tunnel_ip]
        self.nodes[node.name] = node
        self._node_by_tunnel_ip[node.tunnel_ip] = node.name
        self.revision += 1

    def add_link(self, a: str, a_port: str, b: str, b_port: str, *, path: str = "link") -> Touched:
        self.node(a, path=path + ".a")
        self.node(b, path=path + ".b")
        if a == b:
            raise ValidationError(path, f"a link joins two different nodes, not {a!r} to itself")
        for side, node, port in (("a_port", a, a_port), ("b_port", b, b_port)):
            check_ifname(f"{path}.{side}", port)
            reason = reserved_name(port) or (port == TUNNEL_PORT_NAME and "the tunnel port") or None
            if reason is not None:
                raise ValidationError(f"{path}.{side}", f"{reason}, not a fabric link port")
            in_use = port == self.nodes[node].uplink or port in self.link_ports(node)
            if in_use or any(e.port_name == port for e in self.endpoints_by_node[node].values()):
                raise ValidationError(
                    f"{path}.{side}", f"port {port!r} of node {node!r} is already in use", conflict=True
                )
        self.links.append(Link(a, a_port, b, b_port))
        self.links_version += 1
        return self._bump(Touched(everything=True))

    def remove_link(
        self, a: str, b: str, *, a_port: str | None = None, b_port: str | None = None, path: str = "link"
    ) -> Touched:
        """Remove the links between two nodes (configuration), or only the one joining `a_port` to `b_port`."""

        def chosen(link: Link) -> bool:
            if {link.a, link.b} != {a, b}:
                return False
            ends = {(link.a, link.a_port), (link.b, link.b_port)}
            return all((node, port) in ends for node, port in ((a, a_port), (b, b_port)) if port is not None)

        kept = [link for link in self.links if not chosen(link)]
        if len(kept) == len(self.links):
            raise ValidationError(path, f"no link between {a!r} and {b!r}")
        for link in self.links:
            if chosen(link):
                self.down_ports -= {(link.a, link.a_port), (link.b, link.b_port)}
        self.links = kept
        self.links_version += 1
        return self._bump(Touched(everything=True))

    def set_link_port(self, node: str, port: str, *, up: bool, path: str = "link") -> Touched:
        """A switch reports a fabric link port up or down (operational state, not configuration).

        The change touches the fabric only when a link's state changes: both ends must be up for a link to be.
        """
        self.node(node, path=path + ".node")
        if port not in self.link_ports(node):
            raise ValidationError(path + ".port", f"port {port!r} of node {node!r} is not a fabric link port")
        before = [self.link_up(link) for link in self.links]
        if up:
            self.down_ports.discard((node, port))
        else:
            self.down_ports.add((node, port))
        changed = before != [self.link_up(link) for link in self.links]
        return self._bump(Touched(fabric=changed))

    def link_port_up(self, node: str, port: str) -> bool:
        return (node, port) not in self.down_ports

    # --- endpoints -----------------------------------------------------------------------------

    def add_endpoint(
        self,
        endpoint_id: str,
        *,
        network: str,
        node: str,
        ip: str | None = None,
        mac: str | None = None,
        port_name: str | None = None,
        ofport: int | None = None,
        num: int | None = None,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        ports: list[dict] | None = None,
        path: str = "endpoint",
    ) -> Endpoint:
        """Add an endpoint, allocating IP, MAC and ofport as needed. Validates all before changing any.

        `ofport` and `num` are for restoring a stored model; they are allocated otherwise (a restored endpoint
        keeps a static MAC in the nodes' gateway range, which new ones may not take). `namespace` must
        belong to the network's tenant; `labels` are Kubernetes labels, `ports` named container ports
        (`[{name, port, protocol}]`, `topology.namespaces.parse_ports`).
        """
        check_name(path + ".id", endpoint_id, subdomain=True)
        if endpoint_id in self.endpoints:
            raise ValidationError(path + ".id", f"endpoint {endpoint_id!r} already exists", conflict=True)
        net = self.network(network, path=path + ".network")
        self.node(node, path=path + ".node")
        self.check_endpoint_namespace(path + ".namespace", net.tenant, namespace)
        label_pairs = parse_labels(path + ".labels", labels)
        container_ports = parse_ports(path + ".ports", ports)
        port = default_port_name(endpoint_id) if port_name is None else port_name  # "" is refused, not defaulted
        check_ifname(path + ".port_name", port)
        infrastructure = port == self.nodes[node].uplink or port in self.link_ports(node)
        if infrastructure or any(e.port_name == port for e in self.endpoints_by_node[node].values()):
            raise ValidationError(path + ".port_name", f"port {port!r} is already used on node {node!r}", conflict=True)
        # Checked before the pool, so running out of ports or numbers cannot leave an address claimed.
        if not (self._ofports[node].has_free() if ofport is None else self._ofports[node].can_claim(ofport)):
            what = "no free OpenFlow port left" if ofport is None else f"OpenFlow port {ofport} is taken"
            raise ValidationError(path + ".node", f"{what} on node {node!r}", conflict=True)
        if not (self._endpoint_nums.has_free() if num is None else self._endpoint_nums.can_claim(num)):
            what = "no free endpoint number left" if num is None else f"endpoint number {num} is taken"
            raise ValidationError(path + ".id", what, conflict=True)
        pool = self._pools[network]
        mac_value = None
        if mac is not None:
            mac_value = parse_mac(path + ".mac", mac)
            if mac_value in self._macs[network]:
                raise ValidationError(path + ".mac", f"{mac} is already used in network {network!r}", conflict=True)
            if mac_value == net.gateway_mac:
                raise ValidationError(path + ".mac", f"{mac} is the gateway MAC of network {network!r}", conflict=True)
            # Not for a stored endpoint (restored with its `num`), made before this rule: the pipeline puts the
            # gateway ports' flows above every endpoint's (features/gateway.py L2_PRIORITY), so it takes nothing.
            if num is None and mac_value >> 32 == NODE_GATEWAY_MAC_BASE >> 32:
                raise ValidationError(path + ".mac", f"{mac} is in 0e:00:00:00:00:00/16, the nodes' gateway port MACs")
        if ip is not None:
            address = parse_ip(path + ".ip", ip)
            pool.claim(address, path=path + ".ip")  # the last check that can fail, and it changes nothing on failure
        else:
            address = pool.allocate(path=path + ".ip")
        if mac_value is None:
            mac_value = endpoint_mac(net.id, address)
            while mac_value in self._macs[network]:  # only after a static MAC took the derived one
                mac_value += 1
        endpoint = Endpoint(
            id=endpoint_id,
            tenant=net.tenant,
            network=network,
            node=node,
            mac=mac_value,
            ip=address,
            port_name=port,
            ofport=take_or_claim(self._ofports[node], ofport, path),
            num=take_or_claim(self._endpoint_nums, num, path),
            namespace=namespace,
            labels=label_pairs,
            ports=container_ports,
        )
        self.endpoints[endpoint_id] = endpoint
        self.endpoints_by_network[network][endpoint_id] = endpoint
        self.endpoints_by_node[node][endpoint_id] = endpoint
        self._macs[network].add(mac_value)
        self.hosts[network][node] += 1
        self.tenant_nodes[net.tenant][node] += 1
        self.revision += 1
        return endpoint

    def _replace_endpoint(self, endpoint: Endpoint) -> None:
        """The same endpoint with other labels, in every index."""
        self.endpoints[endpoint.id] = endpoint
        self.endpoints_by_network[endpoint.network][endpoint.id] = endpoint
        self.endpoints_by_node[endpoint.node][endpoint.id] = endpoint

    def remove_endpoint(self, endpoint_id: str, *, path: str = "endpoint") -> Touched:
        endpoint = self.endpoint(endpoint_id, path=path)
        del self.endpoints[endpoint_id]
        del self.endpoints_by_network[endpoint.network][endpoint_id]
        del self.endpoints_by_node[endpoint.node][endpoint_id]
        self._pools[endpoint.network].release(endpoint.ip)
        self._macs[endpoint.network].discard(endpoint.mac)
        self._ofports[endpoint.node].give_back(endpoint.ofport)
        self._endpoint_nums.give_back(endpoint.num)
        decrement(self.hosts[endpoint.network], endpoint.node)
        decrement(self.tenant_nodes[endpoint.tenant], endpoint.node)
        if endpoint_id in self.qos_attachments:
            self._meter_ids.give_back(self.qos_attachments.pop(endpoint_id).meter_id)
        return self._bump(touched_by(endpoint))

    # --- QoS -----------------------------------------------------------------------------------

    def add_qos(
        self,
        name: str,
        *,
        rate_kbps: int,
        burst_kb: int | None = None,
        direction: str = "both",
        path: str = "qos",
    ) -> Touched:
        """A profile: rate in kbit/s, burst in kbit (None: `default_burst_kb`), direction one of QOS_DIRECTIONS.

        Raises ValidationError naming the field.
        """
        check_name(path + ".name", name)
        if name in self.qos_profiles:
            raise ValidationError(path + ".name", f"QoS profile {name!r} already exists", conflict=True)
        check_range(path + ".rate_kbps", "rate (kbit/s)", rate_kbps, (1, 100_000_000))
        if burst_kb is None:
            burst_kb = default_burst_kb(rate_kbps)
        check_range(path + ".burst_kb", "burst (kbit)", burst_kb, (1, 100_000_000))
        if direction not in QOS_DIRECTIONS:
            raise ValidationError(path + ".direction", f"{direction!r}: want one of {', '.join(QOS_DIRECTIONS)}")
        self.qos_profiles[name] = QosProfile(name, rate_kbps, burst_kb, direction)
        return self._bump(Touched())

    def remove_qos(self, name: str, *, path: str = "qos") -> Touched:
        if name not in self.qos_profiles:
            raise ValidationError(path, f"unknown QoS profile {name!r}")
        targets = sorted(a.target for a in self.qos_attachments.values() if a.profile == name)
        if targets:
            raise ValidationError(
                path, f"QoS profile {name!r} is still attached to {', '.join(targets)}", conflict=True
            )
        del self.qos_profiles[name]
        return self._bump(Touched())

    def attach_qos(
        self, name: str, target: str, *, meter_id: int | None = None, attached_by: str = "admin", path: str = "qos"
    ) -> Touched:
        if name not in self.qos_profiles:
            raise ValidationError(path, f"unknown QoS profile {name!r}")
        if target in self.networks:
            touched = self._network_and_endpoints(target)
        elif target in self.endpoints:
            touched = touched_by(self.endpoints[target])
        else:
            raise ValidationError(
                path + ".applies_to", f"{target!r} is neither a network (TENANT/NAME) nor an endpoint"
            )
        previous = self.qos_attachments.get(target)
        meter_id = previous.meter_id if previous else take_or_claim(self._meter_ids, meter_id, path)
        self.qos_attachments[target] = QosAttachment(name, target, meter_id, attached_by)
        return self._bump(touched)

    def detach_qos(self, target: str, *, path: str = "qos") -> Touched:
        attachment = self.qos_attachments.pop(target, None)
        if attachment is None:
            raise ValidationError(path, f"no QoS profile is attached to {target!r}")
        self._meter_ids.give_back(attachment.meter_id)
        touched = self._network_and_endpoints(target) if target in self.networks else touched_by(self.endpoints[target])
        return self._bump(touched)

    def _network_and_endpoints(self, key: str) -> Touched:
        endpoints = self.endpoints_by_network[key]
        return Touched(networks={key}, endpoints=set(endpoints), nodes={e.node for e in endpoints.values()})

    def _bump(self, touched: Touched) -> Touched:
        self.revision += 1
        return touched


def take_or_claim(ids: IdAllocator, value: int | None, what: str) -> int:
    if value is None:
        return ids.take(what)
    ids.claim(value, what)
    return value


def touched_by(endpoint: Endpoint) -> Touched:
    return Touched(networks={endpoint.network}, endpoints={endpoint.id}, nodes={endpoint.node})


def decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def default_port_name(endpoint_id: str) -> str:
    """`tn` + 10 hex digits of a hash: unique enough per node, and within Linux's 15-character limit."""
    return "tn" + hashlib.sha256(endpoint_id.encode()).hexdigest()[:10]


def reserved_name(name: str) -> str | None:
    """Why `name` is an infrastructure port's or bridge's name on every node, or None."""
    if name.startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX!r} are reserved for infrastructure ports"
    if name in RESERVED_NAMES:
        return f"{name!r} is an infrastructure bridge"
    return None


def parse_mac(path: str, text: object) -> int:
    try:
        value = mac_to_int(str(text).lower())
    except ValueError as error:
        raise ValidationError(path, str(error)) from None
    if value == 0:
        raise ValidationError(path, f"{text} is the all-zero MAC address; want a unicast one like 02:00:00:00:00:0a")
    if not is_unicast_mac(value):
        raise ValidationError(path, f"{text} is a multicast MAC address (odd first octet); want a unicast one")
    return value
