"""The index of NetworkPolicies by the namespace labels their namespaceSelector peers need
(controller/pipeline/netpol_state.py `selector_needs`, `namespace_keys`): a pod change looks up only the
policies that may name its pod, and the index never leaves one out that does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from controller.pipeline.compile import Compiler
from controller.pipeline.netpol_state import namespace_keys, selector_needs
from tests.netpol_strategies import NS_LABELS, labels, policy_doc, selector
from topology.labels import parse_selector
from topology.model import Model
from topology.netpol_spec import parse_policy

POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}


@given(selector(NS_LABELS), labels(NS_LABELS))
@settings(max_examples=400, deadline=None)
def test_a_namespace_a_selector_matches_carries_one_of_the_labels_it_needs(
    doc: dict[str, Any], namespace_labels: dict[str, str]
) -> None:
    chosen = parse_selector("namespaceSelector", doc)
    needs = selector_needs(chosen)
    if needs is None or not chosen.matches(namespace_labels):
        return
    carried = set(namespace_labels.items()) | {(k, None) for k in namespace_labels}
    assert carried & set(needs), f"{doc} matches {namespace_labels} but needs one of {needs}"


@given(policy_doc(0, "x"), labels(NS_LABELS))
@settings(max_examples=300, deadline=None)
def test_a_policy_that_may_name_a_pod_of_another_namespace_is_found_under_its_labels(
    doc: dict[str, Any], namespace_labels: dict[str, str]
) -> None:
    policy = parse_policy(doc)
    keys = namespace_keys(policy)
    if keys is None:
        return  # looked up for a pod of any namespace
    carried = set(namespace_labels.items()) | {(k, None) for k in namespace_labels}
    for rule in (*policy.ingress, *policy.egress):
        for peer in rule.peers:
            if peer.namespace_selector is not None and peer.namespace_selector.matches(namespace_labels):
                assert carried & set(keys), f"{doc}: a pod of a namespace labelled {namespace_labels} is missed"


def two_teams() -> tuple[Model, Compiler]:
    model = Model()
    model.add_node("n0", tunnel_ip="192.168.0.1")
    model.add_tenant("t")
    model.add_network("t", "pods", encap="vxlan", segment=5000, subnet="10.0.0.0/16")
    for name, team in (("x", "p"), ("y", "p"), ("z", "q")):
        model.add_namespace(name, tenant="t", labels={"team": team})
        model.add_endpoint(f"{name}-a", network="t/pods", node="n0", namespace=name, labels={"app": "a"})
    peers = [{"namespaceSelector": {"matchLabels": {"team": "p"}}, "podSelector": {"matchLabels": {"app": "b"}}}]
    spec = {"podSelector": {}, "ingress": [{"from": peers}]}
    model.apply_policy({**POLICY, "metadata": {"name": "from-p", "namespace": "x"}, "spec": spec})
    anywhere: dict[str, Any] = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    model.apply_policy({**POLICY, "metadata": {"name": "from-all", "namespace": "x"}, "spec": anywhere})
    compiler = Compiler(model)
    compiler.compile_all()
    return model, compiler


def test_a_pod_change_looks_up_the_namespace_selector_policies_its_namespace_labels_call_for() -> None:
    model, compiler = two_teams()
    may_name = compiler.policies._may_name
    assert may_name(model.endpoints["x-a"]) == {"x/from-p", "x/from-all"}  # its own namespace's
    assert may_name(model.endpoints["y-a"]) == {"x/from-p", "x/from-all"}  # team p: named by from-p
    assert may_name(model.endpoints["z-a"]) == {"x/from-all"}  # team q: from-p cannot name it
    model.set_namespace_labels("z", {"team": "p"})
    assert may_name(model.endpoints["z-a"]) == {"x/from-p", "x/from-all"}  # relabelled: looked up again
    compiler.update(model.remove_policy("x/from-all").merge(model.remove_policy("x/from-p")))
    assert not may_name(model.endpoints["z-a"])
    assert not compiler.policies.cache_sizes()["policy_namespace_labels"]
