"""Hypothesis strategies for random clusters and NetworkPolicies, in the reference model's terms: two
tenants whose addresses overlap, a handful of namespaces and pods, small label vocabularies (so selectors
match often) and policies using every kind of peer and port."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

from tests.netpol_reference import Cluster, Pod

TENANTS = ("t", "u")
NAMESPACES = ("n0", "n1", "n2", "n3")
PORTS = [
    {"name": "http", "port": 80, "protocol": "TCP"},
    {"name": "dns", "port": 53, "protocol": "UDP"},
    {"name": "alt", "port": 81, "protocol": "TCP"},
    {"name": "alt-udp", "port": 81, "protocol": "UDP"},
]
PROBE_PORTS = (53, 80, 81, 82)
LABELS = {"app": ("a", "b"), "tier": ("f", "k")}
NS_LABELS = {"team": ("p", "q"), "env": ("dev",)}


def labels(vocabulary: Mapping[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in vocabulary.items()})


def selector(vocabulary: Mapping[str, tuple[str, ...]]) -> st.SearchStrategy[dict[str, Any]]:
    keys = sorted(vocabulary)
    expression = st.one_of(
        st.builds(
            lambda k, op, vs: {"key": k, "operator": op, "values": sorted(set(vs))},
            st.sampled_from(keys),
            st.sampled_from(["In", "NotIn"]),
            st.lists(st.sampled_from([v for k in keys for v in vocabulary[k]]), min_size=1, max_size=2),
        ),
        st.builds(
            lambda k, op: {"key": k, "operator": op}, st.sampled_from(keys), st.sampled_from(["Exists", "DoesNotExist"])
        ),
    )
    return st.fixed_dictionaries(
        {}, optional={"matchLabels": labels(vocabulary), "matchExpressions": st.lists(expression, max_size=2)}
    )


ip_block = st.sampled_from(
    [
        {"cidr": "10.0.0.0/16"},
        {"cidr": "10.0.0.0/24", "except": ["10.0.0.10/31"]},
        {"cidr": "10.0.0.8/29", "except": ["10.0.0.12/32", "10.0.0.8/30"]},
        {"cidr": "10.0.0.12/30"},
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.11/32"]},
    ]
)
peer = st.one_of(
    st.builds(lambda s: {"podSelector": s}, selector(LABELS)),
    st.builds(lambda s: {"namespaceSelector": s}, selector(NS_LABELS)),
    st.builds(lambda p, n: {"podSelector": p, "namespaceSelector": n}, selector(LABELS), selector(NS_LABELS)),
    st.builds(lambda b: {"ipBlock": b}, ip_block),
)
port = st.one_of(
    st.builds(lambda p: {"protocol": p}, st.sampled_from(["TCP", "UDP"])),
    st.builds(lambda n, p: {"port": n, "protocol": p}, st.sampled_from([53, 80, 81]), st.sampled_from(["TCP", "UDP"])),
    st.builds(lambda n: {"port": n}, st.sampled_from(["http", "dns", "alt", "alt-udp", "nope"])),
    st.builds(lambda n: {"port": n, "protocol": "UDP"}, st.sampled_from(["dns", "alt-udp", "http"])),
    st.builds(lambda a, b: {"port": a, "endPort": b, "protocol": "UDP"}, st.just(53), st.sampled_from([53, 80, 81])),
    st.builds(lambda a, b: {"port": a, "endPort": b}, st.sampled_from([79, 80, 81]), st.sampled_from([81, 90])),
)


def rule(peers_key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={peers_key: st.lists(peer, max_size=2), "ports": st.lists(port, max_size=2)}
    )


def policy_doc(index: int, namespace: str) -> st.SearchStrategy[dict[str, Any]]:
    spec = st.fixed_dictionaries(
        {"podSelector": selector(LABELS)},
        optional={
            "ingress": st.lists(rule("from"), max_size=2),
            "egress": st.lists(rule("to"), max_size=2),
            "policyTypes": st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]),
        },
    )
    return spec.map(
        lambda s: {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"p{index}", "namespace": namespace},
            "spec": s,
        }
    )


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    """2..4 namespaces, 2..6 pods, 0..3 policies; addresses 10.0.0.10.. per tenant (overlapping across)."""
    count = draw(st.integers(2, 4))
    namespaces = {
        NAMESPACES[i]: (
            draw(st.sampled_from(TENANTS)),
            {**draw(labels(NS_LABELS)), "kubernetes.io/metadata.name": NAMESPACES[i]},
        )
        for i in range(count)
    }
    pods: dict[str, Pod] = {}
    next_ip = {t: 10 for t in TENANTS}
    for i in range(draw(st.integers(2, 6))):
        namespace = draw(st.sampled_from([*namespaces, None]))
        tenant = namespaces[namespace][0] if namespace else draw(st.sampled_from(TENANTS))
        ports = draw(st.lists(st.sampled_from(PORTS), unique_by=lambda p: p["name"], max_size=3))
        pods[f"p{i}"] = Pod(namespace, draw(labels(LABELS)), f"10.0.0.{next_ip[tenant]}", tenant, ports)
        next_ip[tenant] += 1
    policies = [draw(policy_doc(i, draw(st.sampled_from(sorted(namespaces))))) for i in range(draw(st.integers(0, 3)))]
    return Cluster(namespaces, pods, policies)
