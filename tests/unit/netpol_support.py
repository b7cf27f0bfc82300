"""Reference clusters (tests/netpol_reference.py) as Tenet models: one node, one network per tenant."""

from __future__ import annotations

from tests.netpol_reference import Cluster
from topology.model import Model
from topology.namespaces import NAME_LABEL


def model_from_cluster(cluster: Cluster) -> Model:
    """The same namespaces, pods (ids, addresses, labels, named ports) and policies in a Model; every
    tenant has one network `TENANT/net` on 10.0.0.0/16 (so addresses overlap across tenants)."""
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1")
    tenants = sorted({t for t, _labels in cluster.namespaces.values()} | {p.tenant for p in cluster.pods.values()})
    for i, tenant in enumerate(tenants):
        model.add_tenant(tenant)
        model.add_network(tenant, "net", encap="vxlan", segment=5000 + i, subnet="10.0.0.0/16", gateway="10.0.0.1")
    for name, (tenant, labels) in sorted(cluster.namespaces.items()):
        model.add_namespace(name, tenant=tenant, labels={k: v for k, v in labels.items() if k != NAME_LABEL})
    for pod_id, pod in sorted(cluster.pods.items()):
        model.add_endpoint(
            pod_id.replace("/", "."),
            network=f"{pod.tenant}/net",
            node="n1",
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
