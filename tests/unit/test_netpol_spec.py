"""NetworkPolicy documents are validated as the Kubernetes API server validates them, naming the field."""

from __future__ import annotations

import copy
from ipaddress import ip_network
from typing import Any

import pytest

from topology.errors import ValidationError
from topology.labels import parse_selector
from topology.netpol_spec import IpBlock, PolicyPort, parse_policy


def doc(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "x", **metadata},
        "spec": spec,
    }


def ingress_ports(*ports: dict[str, Any]) -> dict[str, Any]:
    return doc({"podSelector": {}, "ingress": [{"ports": list(ports)}]})


BAD = [
    (
        ingress_ports({"port": 80}, {"port": 90, "endPort": 85}),
        "spec.ingress[0].ports[1].endPort",
        "must not be below port",
    ),
    (ingress_ports({"port": 0}), "spec.ingress[0].ports[0].port", "between 1 and 65535"),
    (ingress_ports({"port": 65536}), "spec.ingress[0].ports[0].port", "between 1 and 65535"),
    (ingress_ports({"port": 80, "endPort": 65536}), "spec.ingress[0].ports[0].endPort", "between 1 and 65535"),
    (ingress_ports({"port": "http", "endPort": 90}), "spec.ingress[0].ports[0].endPort", "non-numeric"),
    (ingress_ports({"endPort": 90}), "spec.ingress[0].ports[0].endPort", "`port` is not specified"),
    (ingress_ports({"port": 80, "protocol": "ICMP"}), "spec.ingress[0].ports[0].protocol", "TCP, UDP, SCTP"),
    (ingress_ports({"port": 80, "protocol": "tcp"}), "spec.ingress[0].ports[0].protocol", "TCP, UDP, SCTP"),
    (ingress_ports({"port": "80"}), "spec.ingress[0].ports[0].port", "at least one letter"),
    (ingress_ports({"port": "Http"}), "spec.ingress[0].ports[0].port", "only a-z"),
    (ingress_ports({"port": "a-very-long-port-name"}), "spec.ingress[0].ports[0].port", "at most 15"),
    (ingress_ports({"port": "web--x"}), "spec.ingress[0].ports[0].port", "two in a row"),
    (ingress_ports({"port": "-web"}), "spec.ingress[0].ports[0].port", "either end"),
    (ingress_ports({"port": True}), "spec.ingress[0].ports[0].port", "integer"),
    (doc({"podSelector": {"matchLabels": {"a b": "c"}}}), "spec.podSelector.matchLabels['a b']", "label key"),
    (doc({"podSelector": {"matchLabels": {"app": "-x"}}}), "spec.podSelector.matchLabels.app", "label value"),
    (doc({"podSelector": {"matchLabels": {"a/b/c": "x"}}}), "spec.podSelector.matchLabels['a/b/c']", "label key"),
    (
        doc({"podSelector": {"matchLabels": {"Bad_Prefix/x": "x"}}}),
        "spec.podSelector.matchLabels['Bad_Prefix/x']",
        "prefix",
    ),
    (
        doc({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
        "spec.podSelector.matchExpressions[0].values",
        "must be specified",
    ),
    (
        doc({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}),
        "spec.podSelector.matchExpressions[0].values",
        "may not be specified",
    ),
    (
        doc({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}),
        "spec.podSelector.matchExpressions[0].operator",
        "not a valid selector operator",
    ),
    (doc({"podSelector": {}, "ingress": [{"from": [{}]}]}), "spec.ingress[0].from[0]", "must specify a peer"),
    (
        doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
        "spec.egress[0].to[0]",
        "both ipBlock and another peer",
    ),
    (doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {}}]}]}), "spec.egress[0].to[0].ipBlock.cidr", "required"),
    (
        doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]}),
        "spec.egress[0].to[0].ipBlock.cidr",
        "CIDR",
    ),
    (
        doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
        "spec.egress[0].to[0].ipBlock.cidr",
        "CIDR",
    ),
    (
        doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]}),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    ),
    (
        doc({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}]}]}),
        "spec.egress[0].to[0].ipBlock.except[0]",
        "strict subset",
    ),
    (doc({"podSelector": {}, "policyTypes": ["ingress"]}), "spec.policyTypes[0]", "Ingress, Egress"),
    (doc({"podSelector": {}, "policyTypes": ["Ingress", "Egress", "Ingress"]}), "spec.policyTypes", "more than two"),
    (doc({"podSelector": {}, "ingres": []}), "spec.ingres", "unknown field"),
    (doc({"podSelector": {}, "ingress": [{"to": []}]}), "spec.ingress[0].to", "unknown field"),
    (doc({}, name="Bad_Name"), "metadata.name", "RFC 1123 subdomain"),
    (doc({}, namespace="X"), "metadata.namespace", "RFC 1123 label"),
    ({**doc({}), "kind": "Pod"}, "kind", "NetworkPolicy"),
    ({**doc({}), "apiVersion": "extensions/v1beta1"}, "apiVersion", "networking.k8s.io/v1"),
]


@pytest.mark.parametrize(("bad", "path", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_a_bad_policy_is_refused_naming_the_field(bad: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_policy(bad)
    assert raised.value.path == path
    assert words in raised.value.message


def test_the_example_of_the_documentation_is_read_field_by_field() -> None:
    spec = {
        "podSelector": {"matchLabels": {"role": "db"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                ],
                "ports": [{"protocol": "TCP", "port": 6379}],
            }
        ],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}],
    }
    original = doc(spec, name="test-network-policy", namespace="default")
    submitted = copy.deepcopy(original)
    policy = parse_policy(submitted)
    assert submitted == original  # nothing changed in what was given
    assert policy.doc == original  # kept as submitted
    assert policy.key == "default/test-network-policy"
    assert policy.pod_selector == parse_selector("s", {"matchLabels": {"role": "db"}})
    peers = policy.ingress[0].peers
    assert peers[0].ip_block == IpBlock(ip_network("172.17.0.0/16"), (ip_network("172.17.1.0/24"),))
    assert peers[1].namespace_selector is not None and peers[1].pod_selector is None
    assert peers[2].pod_selector is not None and peers[2].namespace_selector is None
    assert policy.ingress[0].ports == (PolicyPort("TCP", 6379),)
    assert policy.isolates_ingress and policy.isolates_egress


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"podSelector": {}}, ("Ingress",)),
        ({"podSelector": {}, "ingress": [{}]}, ("Ingress",)),
        ({"podSelector": {}, "egress": [{}]}, ("Ingress", "Egress")),
        ({"podSelector": {}, "egress": []}, ("Ingress",)),
        ({"podSelector": {}, "policyTypes": [], "egress": [{}]}, ("Ingress", "Egress")),
        ({"podSelector": {}, "policyTypes": ["Egress"]}, ("Egress",)),
        ({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}, ("Ingress", "Egress")),
    ],
)
def test_policy_types_default_as_the_api_server_sets_them(spec: dict[str, Any], types: tuple[str, ...]) -> None:
    assert parse_policy(doc(spec)).policy_types == types


def test_the_namespace_comes_from_the_document_or_the_caller_and_must_agree() -> None:
    no_namespace = doc({})
    del no_namespace["metadata"]["namespace"]
    with pytest.raises(ValidationError, match=r"metadata\.namespace: is required"):
        parse_policy(no_namespace)
    assert parse_policy(no_namespace, namespace="y").key == "y/p"
    with pytest.raises(ValidationError, match="does not match the namespace 'y'"):
        parse_policy(doc({}), namespace="y")


def test_a_path_prefixes_every_field() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_policy(ingress_ports({"port": 70000}), path="policies[3]")
    assert raised.value.path == "policies[3].spec.ingress[0].ports[0].port"


def test_an_absent_pod_selector_selects_every_pod_and_a_port_defaults_to_tcp() -> None:
    policy = parse_policy(doc({"ingress": [{"ports": [{"port": 53}]}]}))
    assert policy.pod_selector.empty
    assert policy.ingress[0].ports == (PolicyPort("TCP", 53),)
