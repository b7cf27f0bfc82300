"""The resolver: its helpers exactly, its output shape, and agreement with the reference model on the
e2e scenarios and on random clusters and policies."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.netpol_reference import Cluster, xyz_cluster
from tests.netpol_reference import allowed as reference_allowed
from tests.netpol_scenarios import PODS, PROBES, SCENARIOS, Scenario, policy
from tests.netpol_strategies import PROBE_PORTS, clusters
from tests.unit.netpol_support import endpoint_id, model_from_cluster
from topology.netpol import EGRESS, INGRESS, Clause, PortMatch, allowed, cidr_minus, port_masks, resolve

prefixes = st.builds(
    lambda address, length: IPv4Network((address, length), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(16, 32),
)


@given(st.integers(0, 2**32 - 1), st.integers(0, 28), st.lists(prefixes, max_size=4), st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_cidr_minus_is_exactly_the_difference_as_the_fewest_disjoint_prefixes(
    address: int, length: int, excepts: list[IPv4Network], probe: int
) -> None:
    cidr = IPv4Network((address, length), strict=False)
    excepts = [e for e in excepts if e.subnet_of(cidr)] or [IPv4Network((int(cidr.network_address), 32))]
    result = cidr_minus(cidr, excepts)
    for a, b in itertools.pairwise(result):
        assert not a.overlaps(b)
    assert list(collapse_addresses(result)) == result  # nothing left to merge: the fewest prefixes
    sample = IPv4Address(int(cidr.network_address) + probe % cidr.num_addresses)
    assert any(sample in n for n in result) == (not any(sample in e for e in excepts))
    total = sum(n.num_addresses for n in result)
    covered = sum(n.num_addresses for n in collapse_addresses(excepts))
    assert total == cidr.num_addresses - covered


def test_cidr_minus_of_the_documentation_example() -> None:
    result = cidr_minus(IPv4Network("172.17.0.0/16"), [IPv4Network("172.17.1.0/24")])
    assert [str(n) for n in result] == [
        "172.17.0.0/24",
        "172.17.2.0/23",
        "172.17.4.0/22",
        "172.17.8.0/21",
        "172.17.16.0/20",
        "172.17.32.0/19",
        "172.17.64.0/18",
        "172.17.128.0/17",
    ]


def minimal_count(first: int, last: int) -> int:
    """The fewest aligned blocks covering first..last, counted independently (by prefix collapsing)."""
    return len(list(collapse_addresses([IPv4Network(n) for n in _summarise(first, last)])))


def _summarise(first: int, last: int) -> list[str]:
    from ipaddress import summarize_address_range

    return [str(n) for n in summarize_address_range(IPv4Address(first), IPv4Address(last))]


@given(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535))
@settings(max_examples=500, deadline=None)
def test_port_masks_match_exactly_the_range_with_the_fewest_pairs(a: int, b: int, probe: int) -> None:
    first, last = min(a, b), max(a, b)
    pairs = port_masks(first, last)
    assert any(probe & mask == value for value, mask in pairs) == (first <= probe <= last)
    assert len(pairs) == minimal_count(first, last)


def test_port_masks_of_small_ranges() -> None:
    assert port_masks(80, 80) == [(80, 0xFFFF)]
    assert port_masks(80, 81) == [(80, 0xFFFE)]
    assert port_masks(1, 65535)[0] == (1, 0xFFFF)
    assert port_masks(0, 65535) == [(0, 0)]
    assert port_masks(1000, 1999) == [
        (1000, 0xFFF8),
        (1008, 0xFFF0),
        (1024, 0xFE00),
        (1536, 0xFF00),
        (1792, 0xFF80),
        (1920, 0xFFC0),
        (1984, 0xFFF0),
    ]
    with pytest.raises(ValueError):
        port_masks(10, 9)


def test_a_rule_is_a_few_clauses_not_a_product() -> None:
    spec = {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                "ports": [{"port": 80, "endPort": 81}, {"port": "serve-80-udp", "protocol": "UDP"}],
            }
        ],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.11/32"]}}]}],
    }
    model = model_from_cluster(xyz_cluster([policy("p", "x", spec)]))
    resolved = resolve(model, model.policies["x/p"])
    assert resolved.selected == {"x.a"} and resolved.tenant == "t"
    assert resolved.isolates_ingress and resolved.isolates_egress
    ingress, egress = resolved.rules
    assert (ingress.direction, ingress.index, egress.direction) == (INGRESS, 0, EGRESS)
    assert ingress.clauses == (
        Clause(
            frozenset({"x.a"}),
            frozenset({"y.a", "y.b", "y.c"}),
            (),
            False,
            (PortMatch("TCP", 80, 0xFFFE), PortMatch("UDP", 80, 0xFFFF)),
        ),
    )
    (clause,) = egress.clauses
    assert clause.ports is None and not clause.peers and len(clause.cidrs) == 16


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_resolver_agrees_with_each_scenario(scenario: Scenario) -> None:
    cluster = xyz_cluster(scenario.policies)
    model = model_from_cluster(cluster)
    wrong = [
        (src, dst, protocol, port)
        for src in PODS
        for dst in PODS
        for protocol, port in PROBES
        if allowed(model, endpoint_id(src), endpoint_id(dst), protocol, port)
        != reference_allowed(cluster, src, dst, protocol, port)
    ]
    assert not wrong


@given(clusters())
@settings(max_examples=300, deadline=None)
def test_the_resolver_agrees_with_the_reference_on_random_clusters(cluster: Cluster) -> None:
    model = model_from_cluster(cluster)
    for src in cluster.pods:
        for dst in cluster.pods:
            for protocol in ("TCP", "UDP"):
                for port in PROBE_PORTS:
                    want = reference_allowed(cluster, src, dst, protocol, port)
                    assert allowed(model, endpoint_id(src), endpoint_id(dst), protocol, port) == want, (
                        src,
                        dst,
                        protocol,
                        port,
                    )
