"""The node's gateway port (`tenet-gw0`, ofport GATEWAY_OFPORT): the pipeline's way to the host stack.

The cluster network is routed by the hosts. Every node's gateway port is attached to it, with a MAC of its
own (`0e:00:<tunnel IP>`), so a pod reaches any node's address through the overlay to that node's port,
and anything outside its tenant's subnets up its own node's port, where the host's iptables (kube-proxy's
rules, the masquerade of the cluster subnet) apply. The host reaches the cluster's pods by routing the
cluster subnet into the port, toward the network's gateway MAC: classify puts its traffic into the cluster
network and tenant, with `from_gateway` set, and l3 routes it like a pod's.

A network of another tenant with `nat_outgoing` sends what it cannot route within its tenant to
egress_gateway: cluster, transit and node addresses and its tenant's own subnets are refused; the rest is
SNATed in conntrack zone `snat_zone(network)` to the network's transit address and goes up the gateway
port. The host masquerades the transit subnet and routes the replies back down the port, where classify
un-NATs them in the same zone and hands them to the network's gateway: two tenants' identical 5-tuples
live in different zones and leave with different transit addresses, so replies find their own pod. A
packet for a transit address with no connection is not un-NATed and is dropped in l3_gateway: after the
un-NAT only an established or related reply goes on.

A network's `node_ports` (`tcp/53`, ...) open those ports of this node's own tunnel address to it, SNATed the
same way (with `nat_outgoing` off too: then only they); the host's INPUT accepts the network's transit address
to those ports only (agent/gateway.py). Other nodes' addresses stay refused.

NetworkPolicy never cuts a pod of the cluster network off from its own node: "traffic to and from the node
where a Pod is running is always allowed, regardless of the IP address of the Pod or the node" (the
Kubernetes documentation "Network Policies"). The host reaches its pods from the gateway port's address,
this node's tunnel IP (kubelet's probes; hostPort and NodePort traffic after the host's masquerade), so in
ingress_policy a new connection with `from_gateway` set and that source is committed and allowed, above
every isolation; in egress_policy a cluster pod's new connection to that address (which l3_route and l2
send to this gateway port only) is. They match conntrack's verdict only (`+trk+new`), so on a node without
isolated endpoints, whose policy tables never send a packet through conntrack, they never match. Another
node's host arrives through the tunnel without `from_gateway`, and another source routed in by the host
(outside traffic without masquerade) does not have the address: policy applies to both as to any peer.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from controller.pipeline.features import l2, vxlan
from controller.pipeline.fields import (
    CT_ZONE,
    EGRESS_ALLOW,
    FLAGS,
    FROM_GATEWAY,
    FROM_GATEWAY_MARK,
    INGRESS_ALLOW,
    NETWORK,
    OUT_PORT,
    TENANT,
    TO_GATEWAY_MARK,
)
from controller.pipeline.ir import ETH_TYPE_IP, Ct, DecTtl, Flow, Nat, Output, SetField, ct_state, match
from controller.pipeline.tables import PIPELINE
from topology.gateway import node_gateway_mac, node_port, snat_zone
from topology.model import GATEWAY_OFPORT, Encap, Model, Network

PRIORITY = 100
# A gateway port's MAC in l2: above every endpoint's flow (l2.LOCAL_PRIORITY), so no endpoint holding such a MAC
# (one stored before the model refused them) can take the frames meant for a node's gateway port.
L2_PRIORITY = l2.LOCAL_PRIORITY + 1
REFUSE_PRIORITY = 200
NODE_PORT_PRIORITY = 300  # above the refusal of node addresses
DEFAULT_ROUTE_PRIORITY = 1  # below every host route (l3.PRIORITY)
NODE_POLICY_PRIORITY = 150  # in the policy tables: below established traffic, above rules and isolation


def _net(network: Network) -> dict[str, int]:
    return {NETWORK.register: network.id}


def _cidr(subnet: IPv4Network) -> tuple[int, int]:
    return int(subnet.network_address), int(subnet.netmask)


def node_flows(model: Model, name: str, *, cookie: int) -> tuple[Flow, ...]:
    """Every gateway flow of node `name`; none until the cluster network exists."""
    config = model.gateway
    if config is None or config.cluster_network not in model.networks:
        return ()
    cluster = model.networks[config.cluster_network]
    cluster_tenant = model.tenants[cluster.tenant].id
    own_mac = node_gateway_mac(model.nodes[name].tunnel_ip)
    from_gateway = SetField(FLAGS.register, FROM_GATEWAY.mask)
    ip = {"eth_type": ETH_TYPE_IP}
    to_cluster = (SetField("eth_src", cluster.gateway_mac), SetField(NETWORK.register, cluster.id))
    flows = [
        Flow(
            "classify",
            PRIORITY,
            match(in_port=GATEWAY_OFPORT),
            (SetField(NETWORK.register, cluster.id), SetField(TENANT.register, cluster_tenant), from_gateway),
            goto="port_security",
            cookie=cookie,
        ),
        Flow("port_security", PRIORITY, match(in_port=GATEWAY_OFPORT), goto="arp_responder", cookie=cookie),
        Flow(
            "l2",
            L2_PRIORITY,
            match(**_net(cluster), eth_dst=own_mac),
            (SetField(OUT_PORT.register, GATEWAY_OFPORT), TO_GATEWAY_MARK.set()),
            goto="ingress_policy",
            cookie=cookie,
        ),
        Flow(
            "l3_route",
            DEFAULT_ROUTE_PRIORITY,
            match(**{TENANT.register: cluster_tenant}, **ip),
            (*to_cluster, SetField("eth_dst", own_mac), DecTtl()),
            goto="l2",
            cookie=cookie,
        ),
        Flow("egress_out", PRIORITY, (), (Output(GATEWAY_OFPORT),), cookie=cookie),
        *_node_policy_flows(cluster.id, int(model.nodes[name].tunnel_ip), cookie=cookie),
    ]
    for node in model.nodes.values():
        mac = node_gateway_mac(node.tunnel_ip)
        flows.append(
            Flow(
                "l3_route",
                PRIORITY,
                match(**{TENANT.register: cluster_tenant}, **ip, ipv4_dst=int(node.tunnel_ip)),
                (*to_cluster, SetField("eth_dst", mac), DecTtl()),
                goto="l2",
                cookie=cookie,
            )
        )
        flows.append(Flow("egress_gateway", REFUSE_PRIORITY, match(**ip, ipv4_dst=int(node.tunnel_ip)), cookie=cookie))
        if node.name != name:
            # On a VLAN cluster network there is no way to another node's gateway port yet (README "Not done
            # yet"): its frames are dropped here, as nothing would take them, and above any endpoint's flow.
            way = vxlan.to_node(cluster, node.tunnel_ip) if cluster.encap is Encap.VXLAN else ()
            flows.append(Flow("l2", L2_PRIORITY, match(**_net(cluster), eth_dst=mac), way, cookie=cookie))
    for subnet in (config.cluster_subnet, config.transit_subnet):
        flows.append(Flow("egress_gateway", REFUSE_PRIORITY, match(**ip, ipv4_dst=_cidr(subnet)), cookie=cookie))
    routed_tenants: set[str] = set()
    node_ip = int(model.nodes[name].tunnel_ip)
    for network in model.networks.values():
        if (network.nat_outgoing or network.node_ports) and network.tenant != cluster.tenant:
            flows.extend(_snat_flows(model, network, node_ip, cookie=cookie))
            routed_tenants.add(network.tenant)
    for tenant in sorted(routed_tenants):
        flows.append(
            Flow(
                "l3_route",
                DEFAULT_ROUTE_PRIORITY,
                match(**{TENANT.register: model.tenants[tenant].id}, **ip),
                (SetField("eth_dst", own_mac), DecTtl()),
                goto="egress_gateway",
                cookie=cookie,
            )
        )
    return tuple(PIPELINE.verify(f) for f in flows)


def _node_policy_flows(cluster: int, node_ip: int, *, cookie: int) -> list[Flow]:
    """The policy exemption of this node's own host stack: new connections from the gateway port with the
    node's address as source (ingress_policy) and from a cluster pod to that address (egress_policy) are
    committed in the network's zone and allowed, so their replies come back `+est`."""
    new = ct_state(trk=True, new=True)
    return [
        Flow(
            "ingress_policy",
            NODE_POLICY_PRIORITY,
            match(eth_type=ETH_TYPE_IP, **FROM_GATEWAY_MARK.match(), ipv4_src=node_ip, ct_state=new),
            (INGRESS_ALLOW.set(), Ct(commit=True, zone=CT_ZONE, table="output")),
            cookie=cookie,
        ),
        Flow(
            "egress_policy",
            NODE_POLICY_PRIORITY,
            match(eth_type=ETH_TYPE_IP, **NETWORK.match(cluster), ipv4_dst=node_ip, ct_state=new),
            (EGRESS_ALLOW.set(), Ct(commit=True, zone=CT_ZONE, table="l3_gateway")),
            cookie=cookie,
        ),
    ]


def _snat_flows(model: Model, network: Network, node_ip: int, *, cookie: int) -> list[Flow]:
    """A network's egress SNAT (everything outside with `nat_outgoing`, and its node ports of `node_ip`)
    and the un-NAT of its replies."""
    config = model.gateway
    assert config is not None
    zone = snat_zone(network)
    transit = int(config.transit_ip(network))
    net = _net(network)
    ip = {"eth_type": ETH_TYPE_IP}
    flows = [
        Flow(
            "egress_gateway",
            REFUSE_PRIORITY,
            match(**net, **ip, ipv4_dst=_cidr(sibling.subnet)),
            cookie=cookie,
        )
        for sibling in model.networks_by_tenant[network.tenant].values()
    ]
    into_ct = (Ct(zone=zone, table="egress_snat", nat=Nat()),)
    if network.nat_outgoing:
        flows.append(Flow("egress_gateway", PRIORITY, match(**net, **ip), into_ct, cookie=cookie))
    for text in network.node_ports:
        protocol, port = node_port(text)
        to_port = {"ip_proto": protocol, "tcp_dst" if protocol == 6 else "udp_dst": port}
        flows.append(
            Flow(
                "egress_gateway",
                NODE_PORT_PRIORITY,
                match(**net, **ip, ipv4_dst=node_ip, **to_port),
                into_ct,
                cookie=cookie,
            )
        )
    flows += [
        Flow(
            "egress_snat",
            PRIORITY,
            match(**net, **ip, ct_state=ct_state(trk=True, new=True)),
            (Ct(commit=True, zone=zone, table="egress_out", nat=Nat("src", transit)),),
            cookie=cookie,
        ),
        Flow(
            "egress_snat",
            PRIORITY,
            match(**net, **ip, ct_state=ct_state(trk=True, est=True)),
            goto="egress_out",
            cookie=cookie,
        ),
        Flow(
            "classify",
            REFUSE_PRIORITY,
            match(in_port=GATEWAY_OFPORT, **ip, ipv4_dst=transit),
            (
                SetField(NETWORK.register, network.id),
                SetField(TENANT.register, model.tenants[network.tenant].id),
                SetField(FLAGS.register, FROM_GATEWAY.mask),
                SetField("eth_dst", network.gateway_mac),
                Ct(zone=zone, table="l3_gateway", nat=Nat()),
            ),
            cookie=cookie,
        ),
        # Only a reply of a connection the network opened (un-NATed by conntrack) is routed into it: a
        # packet for the transit address that conntrack did not translate never reaches a pod.
        Flow(
            "l3_gateway",
            REFUSE_PRIORITY,
            match(**net, ct_zone=zone, ct_state=ct_state(trk=True, est=False, rel=False)),
            cookie=cookie,
        ),
    ]
    return flows
