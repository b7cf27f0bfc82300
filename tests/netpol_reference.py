"""A reference model of Kubernetes NetworkPolicy, written from the documentation ("Network Policies",
kubernetes.io) and nothing else of Tenet: it reads the policies as raw documents and decides one new
connection at a time, as literally as the documentation reads.

Tenet's tenant rule on top: pods of different tenants never connect, and a selector never matches a
namespace or pod of another tenant than the policy's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pod:
    namespace: str | None
    labels: dict[str, str]
    ip: str
    tenant: str
    ports: list[dict[str, Any]] = field(default_factory=list)  # [{name, port, protocol}]


@dataclass
class Cluster:
    namespaces: dict[str, tuple[str, dict[str, str]]]  # name -> (tenant, labels)
    pods: dict[str, Pod]
    policies: list[dict[str, Any]]  # NetworkPolicy documents, metadata.namespace set


def _selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if op == "In" and not (key in labels and labels[key] in values):
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _policy_types(policy: dict[str, Any]) -> list[str]:
    spec = policy.get("spec") or {}
    given = spec.get("policyTypes")
    if given:
        return list(given)
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _selects(cluster: Cluster, policy: dict[str, Any], pod: Pod) -> bool:
    namespace = policy["metadata"]["namespace"]
    return pod.namespace == namespace and _selector_matches((policy.get("spec") or {}).get("podSelector"), pod.labels)


def _peer_matches(cluster: Cluster, policy: dict[str, Any], peer: dict[str, Any], other: Pod) -> bool:
    policy_namespace = policy["metadata"]["namespace"]
    tenant = cluster.namespaces[policy_namespace][0]
    if "ipBlock" in peer and peer["ipBlock"] is not None:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if other.tenant != tenant:
            return False
        cidr = ipaddress.ip_network(block["cidr"], strict=False)
        if address.version != cidr.version or address not in cidr:
            return False
        for text in block.get("except") or []:
            excluded = ipaddress.ip_network(text, strict=False)
            if address.version == excluded.version and address in excluded:
                return False
        return True
    if other.namespace is None or other.tenant != tenant:
        return False
    pod_selector, namespace_selector = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespace_selector is None:
        if other.namespace != policy_namespace:
            return False
    else:
        space_tenant, space_labels = cluster.namespaces[other.namespace]
        if space_tenant != tenant or not _selector_matches(namespace_selector, space_labels):
            return False
    return pod_selector is None or _selector_matches(pod_selector, other.labels)


def _port_matches(rule_port: dict[str, Any], protocol: str, port: int, destination: Pod) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):  # a named port: the destination pod's container port of that name
        return any(
            p["name"] == wanted and p.get("protocol", "TCP") == protocol and p["port"] == port
            for p in destination.ports
        )
    end = rule_port.get("endPort")
    return wanted <= port <= (end if end is not None else wanted)


def _rule_allows(
    cluster: Cluster,
    policy: dict[str, Any],
    rule: dict[str, Any],
    peers_key: str,
    other: Pod,
    protocol: str,
    port: int,
    destination: Pod,
) -> bool:
    peers = rule.get(peers_key) or []
    if peers and not any(_peer_matches(cluster, policy, peer, other) for peer in peers):
        return False
    ports = rule.get("ports") or []
    return not ports or any(_port_matches(p, protocol, port, destination) for p in ports)


def _direction_allows(
    cluster: Cluster, pod: Pod, other: Pod, direction: str, protocol: str, port: int, destination: Pod
) -> bool:
    kind = "Ingress" if direction == "ingress" else "Egress"
    peers_key = "from" if direction == "ingress" else "to"
    isolating = [p for p in cluster.policies if _selects(cluster, p, pod) and kind in _policy_types(p)]
    if not isolating:
        return True
    for policy in isolating:
        for rule in (policy.get("spec") or {}).get(direction) or []:
            if _rule_allows(cluster, policy, rule or {}, peers_key, other, protocol, port, destination):
                return True
    return False


def allowed(cluster: Cluster, src: str, dst: str, protocol: str, port: int) -> bool:
    """Whether a new connection from pod `src` to pod `dst` on `protocol` ("TCP", "UDP", "SCTP") and
    destination `port` is allowed: the destination's ingress and the source's egress must both allow it."""
    source, destination = cluster.pods[src], cluster.pods[dst]
    if source.tenant != destination.tenant:
        return False
    if src == dst:
        return True  # a pod's traffic to itself never leaves it
    return _direction_allows(
        cluster, destination, source, "ingress", protocol, port, destination
    ) and _direction_allows(cluster, source, destination, "egress", protocol, port, destination)


def xyz_cluster(policies: list[dict[str, Any]] | None = None) -> Cluster:
    """The upstream e2e (and cyclonus) cluster: namespaces x, y, z labelled ns=<name>; pods a, b, c in each
    labelled pod=<name>, serving 80 and 81 on TCP and UDP as serve-80-tcp, serve-80-udp, serve-81-tcp,
    serve-81-udp. Pod ids are "x/a"; addresses 10.0.<ns>.<pod> (x=1.., a=10..)."""
    namespaces = {name: ("t", {"ns": name, "kubernetes.io/metadata.name": name}) for name in "xyz"}
    ports = [
        {"name": f"serve-{port}-{proto.lower()}", "port": port, "protocol": proto}
        for port in (80, 81)
        for proto in ("TCP", "UDP")
    ]
    pods = {
        f"{ns}/{pod}": Pod(ns, {"pod": pod}, f"10.0.{i + 1}.{j + 10}", "t", list(ports))
        for i, ns in enumerate("xyz")
        for j, pod in enumerate("abc")
    }
    return Cluster(namespaces, pods, list(policies or []))
