"""The reference model pinned on the upstream e2e cluster: every named scenario's hand-written truth table,
and the tenant boundary."""

from __future__ import annotations

import pytest

from tests.netpol_reference import Cluster, Pod, allowed, xyz_cluster
from tests.netpol_scenarios import PODS, PROBES, SCENARIOS, Scenario, policy


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_reference_follows_each_scenarios_truth_table(scenario: Scenario) -> None:
    cluster = xyz_cluster(scenario.policies)
    wrong = [
        (src, dst, protocol, port)
        for src in PODS
        for dst in PODS
        if src != dst
        for protocol, port in PROBES
        if allowed(cluster, src, dst, protocol, port) != scenario.expect(src, dst, protocol, port)
    ]
    assert not wrong


def test_without_policies_every_pod_reaches_every_pod_and_itself() -> None:
    cluster = xyz_cluster()
    assert all(allowed(cluster, s, d, p, n) for s in PODS for d in PODS for p, n in PROBES)


def test_a_pod_always_reaches_itself_even_when_isolated() -> None:
    cluster = xyz_cluster([policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})])
    assert allowed(cluster, "x/a", "x/a", "TCP", 80)
    assert not allowed(cluster, "x/a", "x/b", "TCP", 80)


def other_tenant(cluster: Cluster) -> Cluster:
    """Namespace w of tenant u, labelled like x, with pod w/a at x/a's very address."""
    cluster.namespaces["w"] = ("u", {"ns": "x", "kubernetes.io/metadata.name": "w"})
    cluster.pods["w/a"] = Pod("w", {"pod": "a"}, "10.0.1.10", "u", list(cluster.pods["x/a"].ports))
    return cluster


def test_pods_of_different_tenants_never_connect() -> None:
    cluster = other_tenant(xyz_cluster())
    assert not allowed(cluster, "w/a", "x/b", "TCP", 80)
    assert not allowed(cluster, "x/b", "w/a", "TCP", 80)


def test_selectors_and_ip_blocks_never_match_another_tenant() -> None:
    spec = {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}],
    }
    cluster = other_tenant(xyz_cluster([policy("all-of-tenant", "w", spec)]))
    cluster.pods["w/b"] = Pod("w", {"pod": "b"}, "10.0.1.11", "u")
    assert allowed(cluster, "w/b", "w/a", "TCP", 80)  # its own tenant's namespace matches
    assert not allowed(cluster, "x/b", "w/a", "TCP", 80)
