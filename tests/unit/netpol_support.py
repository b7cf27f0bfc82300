"""Reference clusters (tests/netpol_reference.py) as Tenet models, on one node or several, routed or not."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from tests.netpol_reference import Cluster, Pod
from topology.model import Model
from topology.namespaces import NAME_LABEL

SUBNETS = {"net": "10.0.0.0/23", "net2": "10.0.2.0/24", "net3": "10.0.3.0/24"}


def model_from_cluster(cluster: Cluster, *, nodes: int = 1, routed: bool = False) -> Model:
    """The same namespaces, pods (ids, addresses, labels, named ports) and policies in a Model, with
    addresses overlapping across tenants. `routed`: each tenant has three networks (10.0.0.0/23 (VXLAN),
    10.0.2.0/24 (VLAN), 10.0.3.0/24 (VXLAN)), each pod in the one holding its address, so some traffic is
    routed; else one network `TENANT/net` on 10.0.0.0/16. Pods go to nodes n0..n{nodes-1} in turn."""
    model = Model()
    for i in range(nodes):
        model.add_node(f"n{i}", tunnel_ip=f"192.168.0.{i + 1}", uplink="eth1")
    tenants = sorted({t for t, _labels in cluster.namespaces.values()} | {p.tenant for p in cluster.pods.values()})
    subnets = SUBNETS if routed else {"net": "10.0.0.0/16"}
    for i, tenant in enumerate(tenants):
        model.add_tenant(tenant)
        for j, (name, subnet) in enumerate(subnets.items()):
            encap, segment = ("vlan", 100 + 10 * i + j) if name == "net2" else ("vxlan", 5000 + 10 * i + j)
            gateway = str(IPv4Network(subnet).network_address + 1)
            model.add_network(tenant, name, encap=encap, segment=segment, subnet=subnet, gateway=gateway)
    for name, (tenant, labels) in sorted(cluster.namespaces.items()):
        model.add_namespace(name, tenant=tenant, labels={k: v for k, v in labels.items() if k != NAME_LABEL})
    for n, (pod_id, pod) in enumerate(sorted(cluster.pods.items())):
        network = next(k for k, v in subnets.items() if IPv4Address(pod.ip) in IPv4Network(v))
        model.add_endpoint(
            pod_id.replace("/", "."),
            network=f"{pod.tenant}/{network}",
            node=f"n{n % nodes}",
            ip=pod.ip,
            namespace=pod.namespace,
            labels=pod.labels,
            ports=pod.ports,
        )
    for doc in cluster.policies:
        model.apply_policy(doc)
    return model


def endpoint_id(pod_id: str) -> str:
    return pod_id.replace("/", ".")


def cluster_from_model(model: Model) -> Cluster:
    """The model's namespaces, endpoints (by endpoint id) and policies (as submitted) as a reference cluster."""
    namespaces = {name: (space.tenant, space.label_map) for name, space in model.namespaces.items()}
    pods = {
        e.id: Pod(
            e.namespace,
            e.label_map,
            str(e.ip),
            e.tenant,
            [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in e.ports],
        )
        for e in model.endpoints.values()
    }
    return Cluster(namespaces, pods, [policy.doc for policy in model.policies.values()])
