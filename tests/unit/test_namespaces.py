"""Namespaces, endpoint labels and NetworkPolicies in the model: validation, Touched, all or nothing,
stored and restored with the rest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller import records
from controller.store.base import Record
from tests.netpol_scenarios import policy
from topology.errors import ValidationError
from topology.model import Model, Touched
from topology.namespaces import NAME_LABEL, ContainerPort

PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]


def build() -> Model:
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1")
    for i, tenant in enumerate(("blue", "red")):
        model.add_tenant(tenant)
        model.add_network(tenant, "web", encap="vxlan", segment=5001 + i, subnet="10.1.0.0/24")
    model.add_namespace("shop", tenant="blue", labels={"team": "a"})
    model.add_namespace("bank", tenant="red")
    model.add_endpoint("e1", network="blue/web", node="n1", namespace="shop", labels={"app": "web"}, ports=PORTS)
    return model


def snapshot(model: Model) -> Any:
    return records.all_records(model)


def test_a_namespace_carries_its_name_label_and_belongs_to_one_tenant() -> None:
    model = build()
    assert model.namespaces["shop"].label_map == {"team": "a", NAME_LABEL: "shop"}
    assert model.endpoints["e1"].ports == (ContainerPort("http", 80, "TCP"), ContainerPort("dns", 53, "UDP"))
    assert model.endpoints["e1"].label_map == {"app": "web"}


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda m: m.add_namespace("Shop", tenant="blue"), "namespace.name", "RFC 1123 label"),
        (lambda m: m.add_namespace("x", tenant="green"), "namespace.tenant", "unknown tenant"),
        (lambda m: m.add_namespace("shop", tenant="red"), "namespace.name", "already exists"),
        (lambda m: m.add_namespace("x", tenant="red", labels={"a": "b c"}), "namespace.labels.a", "label value"),
        (
            lambda m: m.add_endpoint("e2", network="red/web", node="n1", namespace="shop"),
            "endpoint.namespace",
            "another tenant",
        ),
        (
            lambda m: m.add_endpoint("e2", network="red/web", node="n1", namespace="nope"),
            "endpoint.namespace",
            "unknown",
        ),
        (
            lambda m: m.add_endpoint("e2", network="red/web", node="n1", ports=[{"name": "http", "port": 0}]),
            "endpoint.ports[0].port",
            "1..65535",
        ),
        (
            lambda m: m.add_endpoint("e2", network="red/web", node="n1", ports=[*PORTS, {"name": "http", "port": 8}]),
            "endpoint.ports[2].name",
            "used twice",
        ),
        (
            lambda m: m.add_endpoint(
                "e2", network="red/web", node="n1", ports=[{"name": "x", "port": 8, "protocol": "ICMP"}]
            ),
            "endpoint.ports[0].protocol",
            "TCP, UDP, SCTP",
        ),
        (lambda m: m.set_endpoint_labels("e1", {"-": "x"}), "endpoint.labels['-']", "label key"),
        (lambda m: m.remove_namespace("shop"), "namespace", "still has 1 endpoint"),
        (lambda m: m.remove_tenant("red"), "tenant", "still has"),
        (lambda m: m.apply_policy(policy("p", "nowhere", {})), "metadata.namespace", "unknown namespace"),
        (lambda m: m.remove_policy("shop/none"), "networkpolicy", "unknown NetworkPolicy"),
    ],
)
def test_a_refused_change_names_the_field_and_changes_nothing(change: Any, path: str, words: str) -> None:
    model = build()
    before = snapshot(model)
    with pytest.raises(ValidationError) as raised:
        change(model)
    assert raised.value.path == path and words in raised.value.message
    assert snapshot(model) == before


def test_changes_report_what_they_touched() -> None:
    model = build()
    assert model.set_endpoint_labels("e1", {"app": "db"}) == Touched(labels={"e1"})
    assert model.set_endpoint_labels("e1", {"app": "db"}) == Touched()  # the same labels: nothing
    assert model.set_namespace_labels("shop", {"team": "b"}) == Touched(namespaces={"shop"})
    assert model.namespaces["shop"].label_map == {"team": "b", NAME_LABEL: "shop"}
    _policy, touched = model.apply_policy(policy("p", "shop", {"podSelector": {}}))
    assert touched == Touched(policies={"shop/p"})
    assert model.apply_policy(policy("p", "shop", {"podSelector": {}}))[1] == Touched()
    assert model.apply_policy(policy("p", "shop", {"podSelector": {}, "ingress": [{}]}))[1] == Touched(
        policies={"shop/p"}
    )
    with pytest.raises(ValidationError, match=r"still has NetworkPolicies \(p\): delete them first"):
        model.remove_endpoint("e1") and model.remove_namespace("shop")
    assert model.remove_policy("shop/p") == Touched(policies={"shop/p"})
    assert model.remove_namespace("shop") == Touched(namespaces={"shop"})
    assert Touched(labels={"a"}).merge(Touched(policies={"b"}, namespaces={"c"})) == Touched(
        labels={"a"}, policies={"b"}, namespaces={"c"}
    )


def test_the_model_is_stored_and_restored_with_namespaces_labels_ports_and_policies() -> None:
    model = build()
    doc = policy(
        "p", "shop", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]}
    )
    submitted = copy.deepcopy(doc)
    model.apply_policy(doc)
    stored = records.all_records(model)
    assert (records.key("networkpolicies", "shop/p"), {"id": 1, "policy": submitted}) in stored
    restored = records.restore(Record(key, value, i + 1) for i, (key, value) in enumerate(stored))
    assert records.all_records(restored) == stored
    assert restored.policies["shop/p"] == model.policies["shop/p"]
    assert restored.endpoints["e1"] == model.endpoints["e1"]
    assert restored.namespaces == model.namespaces


def test_records_written_before_namespaces_still_restore() -> None:
    model = build()
    old = [
        (k, {f: v for f, v in d.items() if f not in ("namespace", "labels", "ports")})
        for k, d in records.all_records(model)
    ]
    old = [(k, d) for k, d in old if "/namespaces/" not in k]
    restored = records.restore(Record(key, value, i + 1) for i, (key, value) in enumerate(old))
    assert restored.endpoints["e1"].namespace is None and restored.endpoints["e1"].labels == ()


def test_a_policy_keeps_its_id_when_replaced_and_ids_are_reused_after_removal() -> None:
    model = build()
    model.apply_policy(policy("a", "shop", {}))
    model.apply_policy(policy("b", "shop", {}))
    model.apply_policy(policy("a", "shop", {"podSelector": {}, "ingress": [{}]}))
    assert model.policy_ids == {"shop/a": 1, "shop/b": 2}
    model.remove_policy("shop/a")
    model.apply_policy(policy("c", "shop", {}))
    assert model.policy_ids == {"shop/b": 2, "shop/c": 1}
