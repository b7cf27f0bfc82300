"""POST /v1/networkpolicies: several NetworkPolicies in one change, all or nothing, scoped to the caller's
namespaces exactly as one policy is; errors name the document and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import records
from controller.pipeline.compile import Compiler
from controller.service import Service
from controller.service_netpol import DocumentError
from controller.store.sqlite import SqliteStore
from tests.api.support import BLUE, Wsgi
from tests.api.test_netpol import SPEC, netpol, shop
from tests.unit.test_diff import assert_same

__all__ = ["shop"]  # the fixture
BATCH = "/v1/networkpolicies"


def in_namespace(doc: dict, namespace: str) -> dict:
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


def test_a_batch_is_applied_in_one_change_and_says_what_happened(shop: Wsgi, service: Service) -> None:
    sequence = service.sequence
    items = [netpol(SPEC, "web"), in_namespace(netpol({"podSelector": {}}, "deny"), "shop")]
    answer = shop.ok("POST", BATCH, {"items": items, "namespace": "shop"}, token=BLUE)
    assert answer == {
        "items": [
            {"namespace": "shop", "name": "web", "result": "created"},
            {"namespace": "shop", "name": "deny", "result": "created"},
        ]
    }
    assert service.sequence == sequence + 1  # one change, compiled and published once
    assert sorted(service.model.policies) == ["shop/deny", "shop/web"]
    changed = netpol({"podSelector": {"matchLabels": {"app": "db"}}}, "web")
    answer = shop.ok("POST", BATCH, {"items": [changed, items[1]], "namespace": "shop"}, token=BLUE)
    assert [i["result"] for i in answer["items"]] == ["configured", "unchanged"]
    assert shop.ok("GET", "/v1/namespaces/shop/networkpolicies/web", token=BLUE) == in_namespace(changed, "shop")
    fresh = Compiler(service.model).compile_all()
    for name, state in fresh.items():
        assert_same(service.compiler.states[name], state, f"{name}: incremental vs full")


@pytest.mark.parametrize("namespace", ["nosuch", "bank"])  # missing, and another tenant's: the same answer
def test_a_batch_with_an_unknown_namespace_applies_nothing(
    shop: Wsgi, service: Service, db_path: Path, namespace: str
) -> None:
    revision, sequence = service.store.revision(), service.sequence
    items = [in_namespace(netpol(SPEC, "web"), "shop"), in_namespace(netpol(SPEC, "other"), namespace)]
    answer = shop.post(BATCH, {"items": items}, token=BLUE)
    assert answer.status == 404
    assert answer.error == {
        "message": f"document 2: metadata.namespace: unknown namespace {namespace!r}",
        "field": "metadata.namespace",
    }
    assert not service.model.policies and service.store.revision() == revision and service.sequence == sequence
    reopened = SqliteStore(db_path)
    try:
        restored = Service(reopened)
        restored.restore()
        assert not restored.model.policies
        assert not [r for r in reopened.list(records.PREFIX) if "networkpolicies" in r.key]
    finally:
        reopened.close()


def test_a_bad_document_is_named_and_nothing_is_applied(shop: Wsgi, service: Service) -> None:
    revision = service.store.revision()
    bad = netpol({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "bad")
    answer = shop.post(BATCH, {"items": [netpol(SPEC), bad], "namespace": "shop"}, token=BLUE)
    assert (answer.status, answer.error["field"]) == (400, "spec.ingress[0].ports[0].endPort")
    assert answer.error["message"].startswith("document 2: spec.ingress[0].ports[0].endPort: ")
    answer = shop.post(BATCH, {"items": [netpol(SPEC), netpol(SPEC, "b")]}, token=BLUE)
    assert (answer.status, answer.error["field"]) == (400, "metadata.namespace")
    assert answer.error["message"].startswith("document 1: metadata.namespace: is required")
    answer = shop.post(BATCH, {"items": [in_namespace(netpol(SPEC), "bank")], "namespace": "shop"}, token=BLUE)
    assert answer.error["message"] == "document 1: metadata.namespace: 'bank' does not match the namespace 'shop'"
    for body, field in (({"items": []}, "networkpolicies.items"), ({"items": [], "x": 1}, "networkpolicies.x")):
        assert (shop.post(BATCH, body, token=BLUE).error["field"]) == field
    assert not service.model.policies and service.store.revision() == revision


def test_the_service_rolls_back_every_document_of_a_refused_batch(shop: Wsgi, service: Service) -> None:
    shop.ok("PUT", "/v1/namespaces/shop/networkpolicies/web", netpol(SPEC), token=BLUE)
    before, ids, revision = dict(service.model.policies), dict(service.model.policy_ids), service.store.revision()
    changed = in_namespace(netpol({"podSelector": {}}, "web"), "shop")
    with pytest.raises(DocumentError) as refused:
        service.apply_policies([changed, in_namespace(netpol(SPEC, "new"), "shop"), in_namespace(netpol(SPEC), "x")])
    assert (refused.value.document, refused.value.path) == (3, "metadata.namespace")
    assert str(refused.value) == "document 3: metadata.namespace: unknown namespace 'x'"
    assert service.model.policies == before and service.model.policy_ids == ids
    assert service.store.revision() == revision
    fresh = Compiler(service.model).compile_all()
    for name, state in fresh.items():
        assert_same(service.compiler.states[name], state, f"{name}: rolled back vs full")
