"""Named NetworkPolicy scenarios on the upstream e2e cluster (namespaces x, y, z; pods a, b, c; ports 80
and 81 on TCP and UDP), each with its truth table written by hand, as the upstream e2e suite
(`test/e2e/network/netpol/network_policy.go`) writes its expected reachability.

`expect(src, dst, protocol, port)` takes pod ids "ns/pod" of two different pods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Expect = Callable[[str, str, str, int], bool]
PODS = [f"{ns}/{pod}" for ns in "xyz" for pod in "abc"]
PROBES = [(protocol, port) for protocol in ("TCP", "UDP") for port in (80, 81)]


def policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ns(pod: str) -> str:
    return pod.split("/")[0]


def name(pod: str) -> str:
    return pod.split("/")[1]


ALL: dict[str, str] = {}
POD_A = {"matchLabels": {"pod": "a"}}


def ns_is(value: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"ns": value}}}


@dataclass(frozen=True)
class Scenario:
    name: str
    policies: list[dict[str, Any]]
    expect: Expect


SCENARIOS = [
    Scenario(
        "default-deny-ingress",
        [policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]})],
        lambda s, d, p, n: ns(d) != "x",
    ),
    Scenario(
        "default-deny-all",
        [policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
        lambda s, d, p, n: ns(d) != "x" and ns(s) != "x",
    ),
    Scenario(
        "default-deny-egress",
        [policy("deny", "x", {"podSelector": {}, "policyTypes": ["Egress"]})],
        lambda s, d, p, n: ns(s) != "x",
    ),
    Scenario(
        "allow-ingress-same-namespace",
        [policy("same", "x", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})],
        lambda s, d, p, n: ns(d) != "x" or ns(s) == "x",
    ),
    Scenario(
        "deny-ingress-to-one-pod",
        [policy("deny-a", "x", {"podSelector": POD_A})],
        lambda s, d, p, n: d != "x/a",
    ),
    Scenario(
        "allow-ingress-from-namespace",
        [policy("from-y", "x", {"podSelector": POD_A, "ingress": [{"from": [ns_is("y")]}]})],
        lambda s, d, p, n: d != "x/a" or ns(s) == "y",
    ),
    Scenario(
        "allow-ingress-from-pod-in-namespace-and",
        [
            policy(
                "from-y-b",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [{"from": [{**ns_is("y"), "podSelector": {"matchLabels": {"pod": "b"}}}]}],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or s == "y/b",
    ),
    Scenario(
        "allow-ingress-from-namespace-or-pod",
        [
            policy(
                "from-y-or-b",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [{"from": [ns_is("y"), {"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or ns(s) == "y" or s == "x/b",
    ),
    Scenario(
        "namespace-selector-not-in",
        [
            policy(
                "not-y",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or ns(s) != "y",
    ),
    Scenario(
        "pod-selector-in",
        [
            policy(
                "deny-a-b",
                "x",
                {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]}},
            )
        ],
        lambda s, d, p, n: d not in ("x/a", "x/b"),
    ),
    Scenario(
        "namespace-selector-does-not-exist",
        [
            policy(
                "none",
                "x",
                {
                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]},
                    "ingress": [
                        {
                            "from": [
                                {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "DoesNotExist"}]}}
                            ]
                        }
                    ],
                },
            )
        ],
        lambda s, d, p, n: ns(d) != "x",
    ),
    Scenario(
        "ingress-port-81-tcp",
        [policy("p81", "x", {"podSelector": POD_A, "ingress": [{"ports": [{"port": 81, "protocol": "TCP"}]}]})],
        lambda s, d, p, n: d != "x/a" or (p, n) == ("TCP", 81),
    ),
    Scenario(
        "ingress-port-80-udp-from-namespace",
        [
            policy(
                "u80",
                "x",
                {"podSelector": POD_A, "ingress": [{"from": [ns_is("y")], "ports": [{"port": 80, "protocol": "UDP"}]}]},
            )
        ],
        lambda s, d, p, n: d != "x/a" or (ns(s) == "y" and (p, n) == ("UDP", 80)),
    ),
    Scenario(
        "ingress-named-port",
        [policy("named", "x", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]})],
        lambda s, d, p, n: ns(d) != "x" or (p, n) == ("TCP", 81),
    ),
    Scenario(
        "ingress-named-port-udp",
        [
            policy(
                "named", "x", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}
            )
        ],
        lambda s, d, p, n: ns(d) != "x" or (p, n) == ("UDP", 80),
    ),
    Scenario(
        "ingress-named-port-wrong-protocol",
        [
            policy(
                "named", "x", {"podSelector": {}, "ingress": [{"ports": [{"port": "serve-80-tcp", "protocol": "UDP"}]}]}
            )
        ],
        lambda s, d, p, n: ns(d) != "x",
    ),
    Scenario(
        "ingress-end-port",
        [policy("range", "x", {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81}]}]})],
        lambda s, d, p, n: ns(d) != "x" or p == "TCP",
    ),
    Scenario(
        "ingress-end-port-udp-81-90",
        [
            policy(
                "range",
                "x",
                {"podSelector": {}, "ingress": [{"ports": [{"port": 81, "endPort": 90, "protocol": "UDP"}]}]},
            )
        ],
        lambda s, d, p, n: ns(d) != "x" or (p, n) == ("UDP", 81),
    ),
    Scenario(
        "egress-to-namespace",
        [policy("to-y", "x", {"podSelector": {}, "egress": [{"to": [ns_is("y")]}]})],
        lambda s, d, p, n: ns(d) != "x" and (ns(s) != "x" or ns(d) == "y"),  # Ingress defaulted too
    ),
    Scenario(
        "egress-named-port",
        [
            policy(
                "to-81u",
                "x",
                {"podSelector": POD_A, "egress": [{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]},
            )
        ],
        lambda s, d, p, n: d != "x/a" and (s != "x/a" or (p, n) == ("UDP", 81)),
    ),
    Scenario(
        "egress-ip-block-except",
        [
            policy(
                "cidr",
                "x",
                {
                    "podSelector": POD_A,
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.11/32"]}}]}],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" and (s != "x/a" or d != "y/b"),
    ),
    Scenario(
        "ingress-ip-block",
        [policy("cidr", "x", {"podSelector": POD_A, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.3.0/24"}}]}]})],
        lambda s, d, p, n: d != "x/a" or ns(s) == "z",
    ),
    Scenario(
        "ingress-ip-block-except-own-namespace",
        [
            policy(
                "cidr",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]}],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or ns(s) != "x",
    ),
    Scenario(
        "two-policies-union",
        [
            policy("from-y", "x", {"podSelector": POD_A, "ingress": [{"from": [ns_is("y")]}]}),
            policy("from-z", "x", {"podSelector": POD_A, "ingress": [{"from": [ns_is("z")]}]}),
        ],
        lambda s, d, p, n: d != "x/a" or ns(s) in ("y", "z"),
    ),
    Scenario(
        "policy-in-other-namespace",
        [policy("deny-a", "y", {"podSelector": POD_A})],
        lambda s, d, p, n: d != "y/a",
    ),
    Scenario(
        "egress-deny-meets-ingress-allow",
        [
            policy("deny-out", "x", {"podSelector": {}, "policyTypes": ["Egress"]}),
            policy("from-x", "y", {"podSelector": {}, "ingress": [{"from": [ns_is("x")]}]}),
        ],
        lambda s, d, p, n: ns(s) != "x" and ns(d) != "y",
    ),
    Scenario(
        "egress-allow-all",
        [policy("all", "x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})],
        lambda s, d, p, n: True,
    ),
    Scenario(
        "ingress-protocol-only",
        [policy("udp", "x", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]})],
        lambda s, d, p, n: ns(d) != "x" or p == "UDP",
    ),
    Scenario(
        "ingress-from-pod-in-any-namespace",
        [
            policy(
                "any-c",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}]}],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or name(s) == "c",
    ),
    Scenario(
        "policy-types-ingress-ignores-egress-rules",
        [policy("in", "x", {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{"to": [ns_is("y")]}]})],
        lambda s, d, p, n: ns(d) != "x",
    ),
    Scenario(
        "egress-default-types-from-rules",
        [
            policy(
                "out", "x", {"podSelector": POD_A, "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}
            )
        ],
        lambda s, d, p, n: d != "x/a" and (s != "x/a" or d == "x/b"),
    ),
    Scenario(
        "namespace-name-label",
        [
            policy(
                "by-name",
                "x",
                {
                    "podSelector": POD_A,
                    "ingress": [
                        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}
                    ],
                },
            )
        ],
        lambda s, d, p, n: d != "x/a" or ns(s) == "z",
    ),
]
