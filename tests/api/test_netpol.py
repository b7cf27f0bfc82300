"""Namespaces, endpoint labels and NetworkPolicies through the API: tenant scoping, validation errors
naming the field, all or nothing, and persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import records
from controller.api import Tokens, make_app
from controller.pipeline.compile import Compiler
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import ADMIN, BLUE, RED, TOKENS, Wsgi, network
from tests.unit.test_diff import assert_same

POLICY = "/v1/namespaces/shop/networkpolicies/web"


def netpol(spec: dict[str, Any], name: str = "web") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]}


@pytest.fixture
def shop(cluster: Wsgi) -> Wsgi:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/tenants/red/networks", network("web", "10.0.0.0/24", vni=200))
    cluster.ok("POST", "/v1/namespaces", {"name": "shop", "tenant": "blue", "labels": {"team": "a"}}, token=BLUE)
    cluster.ok("POST", "/v1/namespaces", {"name": "bank", "tenant": "red"}, token=RED)
    pod = {"namespace": "shop", "labels": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1", **pod}, token=BLUE)
    return cluster


def test_namespaces_are_scoped_to_their_tenant(shop: Wsgi) -> None:
    assert [n["name"] for n in shop.ok("GET", "/v1/namespaces", token=BLUE)] == ["shop"]
    assert [n["name"] for n in shop.ok("GET", "/v1/namespaces")] == ["bank", "shop"]
    assert shop.ok("GET", "/v1/namespaces/shop", token=BLUE) == {
        "name": "shop",
        "tenant": "blue",
        "labels": {"team": "a", "kubernetes.io/metadata.name": "shop"},
        "endpoints": 1,
        "networkpolicies": [],
    }
    for method, body in (("GET", None), ("PATCH", {"labels": {}}), ("DELETE", None)):
        assert shop.call(method, "/v1/namespaces/shop", body, token=RED).status == 404
    answer = shop.post("/v1/namespaces", {"name": "mine", "tenant": "blue"}, token=RED)
    assert (answer.status, answer.error["field"]) == (400, "namespace.tenant")


def test_another_tenants_namespace_answers_like_an_unknown_one_to_a_tenant(shop: Wsgi) -> None:
    """An endpoint POSTed into red's namespace by blue's token gets the answer a missing namespace gets, word
    for word; the admin is told why."""

    def refusal(namespace: str, token: str) -> tuple[int, dict[str, Any]]:
        body = {"id": "b9", "network": "blue/web", "node": "node1", "namespace": namespace}
        answer = shop.post("/v1/endpoints", body, token=token)
        return answer.status, answer.error

    foreign, missing = refusal("bank", BLUE), refusal("nosuch", BLUE)
    assert foreign == (400, {"message": "endpoint.namespace: unknown namespace 'bank'", "field": "endpoint.namespace"})
    assert missing == (
        400,
        {"message": "endpoint.namespace: unknown namespace 'nosuch'", "field": "endpoint.namespace"},
    )
    status, error = refusal("bank", ADMIN)
    assert status == 400 and "belongs to another tenant than the network's" in error["message"]
    # The other paths that name a namespace answer alike too: 404, the same words.
    for path in ("/v1/namespaces/{}", "/v1/namespaces/{}/networkpolicies", "/v1/namespaces/{}/networkpolicies/web"):
        answers = [shop.get(path.format(name), token=BLUE) for name in ("bank", "nosuch")]
        assert [a.status for a in answers] == [404, 404]
        assert answers[0].error["message"].replace("bank", "nosuch") == answers[1].error["message"]
    for name in ("bank", "nosuch"):
        put = shop.put(f"/v1/namespaces/{name}/networkpolicies/web", netpol(SPEC), token=BLUE)
        patch = shop.call("PATCH", f"/v1/namespaces/{name}", {"labels": {}}, token=BLUE)
        assert (put.status, patch.status) == (404, 404)
        assert put.error["message"] == patch.error["message"] == f"unknown namespace {name!r}"


def test_an_endpoint_carries_namespace_labels_and_ports_and_its_labels_change(shop: Wsgi) -> None:
    endpoint = shop.ok("GET", "/v1/endpoints/b1", token=BLUE)
    assert endpoint["namespace"] == "shop" and endpoint["labels"] == {"app": "web"}
    assert endpoint["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert shop.ok("PATCH", "/v1/endpoints/b1", {"labels": {"app": "db"}}, token=BLUE)["labels"] == {"app": "db"}
    assert shop.call("PATCH", "/v1/endpoints/b1", {"labels": {}}, token=RED).status == 404
    answer = shop.call("PATCH", "/v1/endpoints/b1", {"labels": {"app": "a b"}}, token=BLUE)
    assert (answer.status, answer.error["field"]) == (400, "endpoint.labels.app")
    wrong = {"id": "r1", "network": "red/web", "node": "node1", "namespace": "shop"}
    answer = shop.post("/v1/endpoints", wrong, token=RED)
    assert (answer.status, answer.error["field"]) == (400, "endpoint.namespace")


def test_an_endpoint_s_labels_and_ports_change_together_or_not_at_all(shop: Wsgi) -> None:
    ports = [{"name": "web", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    done = shop.ok("PATCH", "/v1/endpoints/b1", {"labels": {"app": "api"}, "ports": ports}, token=BLUE)
    assert (done["labels"], done["ports"]) == ({"app": "api"}, ports)
    assert shop.ok("PATCH", "/v1/endpoints/b1", {"ports": []}, token=BLUE)["labels"] == {"app": "api"}
    for body, field in (
        ({"labels": {"app": "db"}, "ports": [{"name": "http", "port": 0}]}, "endpoint.ports[0].port"),
        ({"labels": {"app": "db"}, "ports": [{"name": "Bad_Name", "port": 80}]}, "endpoint.ports[0].name"),
        (
            {"labels": {"app": "db"}, "ports": [{"name": "a", "port": 80, "protocol": "ICMP"}]},
            "endpoint.ports[0].protocol",
        ),
        ({"labels": {"app": "a b"}, "ports": [{"name": "http", "port": 80}]}, "endpoint.labels.app"),
        ({"labels": {"app": "db"}, "ports": {"http": 80}}, "endpoint.ports"),
        ({}, "endpoint.labels"),
        ({"ports": [], "mac": "02:00:00:00:00:01"}, "endpoint.mac"),
    ):
        answer = shop.call("PATCH", "/v1/endpoints/b1", body, token=BLUE)
        assert (answer.status, answer.error["field"]) == (400, field), body
    unchanged = shop.ok("GET", "/v1/endpoints/b1", token=BLUE)
    assert (unchanged["labels"], unchanged["ports"]) == ({"app": "api"}, [])
    assert shop.call("PATCH", "/v1/endpoints/b1", {"ports": ports}, token=RED).status == 404


def test_a_named_port_patched_onto_an_endpoint_changes_what_a_policy_allows(shop: Wsgi) -> None:
    shop.ok("PUT", POLICY, netpol(SPEC), token=BLUE)
    node = "node1"
    before = shop.ok("GET", f"/v1/nodes/{node}/flows")
    shop.ok("PATCH", "/v1/endpoints/b1", {"ports": [{"name": "http", "port": 8080}]}, token=BLUE)
    after = shop.ok("GET", f"/v1/nodes/{node}/flows")
    assert "8080" in str(after) and "8080" not in str(before)


def test_a_policy_is_put_shown_listed_replaced_and_deleted(shop: Wsgi) -> None:
    created = shop.call("PUT", POLICY, netpol(SPEC), token=BLUE)
    assert created.status == 201 and created.headers["Location"] == POLICY
    assert created.body == {**netpol(SPEC), "metadata": {"name": "web", "namespace": "shop"}}
    assert shop.ok("GET", POLICY, token=BLUE) == created.body
    assert shop.ok("GET", "/v1/namespaces/shop/networkpolicies", token=BLUE) == [created.body]
    assert shop.ok("GET", "/v1/namespaces/shop", token=BLUE)["networkpolicies"] == ["web"]
    assert shop.call("PUT", POLICY, netpol({"podSelector": {}}), token=BLUE).status == 200
    assert shop.ok("GET", POLICY)["spec"] == {"podSelector": {}}
    assert shop.call("GET", POLICY, token=RED).status == 404
    assert shop.call("PUT", POLICY, netpol(SPEC), token=RED).status == 404
    assert shop.call("DELETE", POLICY, token=RED).status == 404
    assert shop.call("DELETE", "/v1/namespaces/shop", token=BLUE).status == 409  # it still holds the policy
    assert shop.call("DELETE", POLICY, token=BLUE).status == 204
    assert shop.call("GET", POLICY, token=BLUE).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            netpol({"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"port": 90, "endPort": 85}]}]}),
            "spec.ingress[0].ports[1].endPort",
        ),
        (netpol({"podSelector": {}}, name="other"), "metadata.name"),
        ({**netpol({}), "kind": "Pod"}, "kind"),
        ({**netpol({}), "metadata": {"name": "web", "namespace": "bank"}}, "metadata.namespace"),
        (
            netpol(
                {
                    "podSelector": {},
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}],
                }
            ),
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field_and_nothing_is_stored(
    shop: Wsgi, service: Service, body: dict[str, Any], field: str
) -> None:
    revision = service.store.revision()
    answer = shop.put(POLICY, body, token=BLUE)
    assert (answer.status, answer.error["field"]) == (400, field)
    assert service.store.revision() == revision and not service.model.policies


def test_namespaces_labels_and_policies_are_restored(shop: Wsgi, service: Service, db_path: Path) -> None:
    shop.ok("PUT", POLICY, netpol(SPEC), token=BLUE)
    shop.ok("PATCH", "/v1/namespaces/shop", {"labels": {"team": "b"}}, token=BLUE)
    shop.ok("PATCH", "/v1/endpoints/b1", {"labels": {"app": "web", "tier": "front"}}, token=BLUE)
    shop.ok("PATCH", "/v1/endpoints/b1", {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}, token=BLUE)
    views = ["/v1/namespaces", "/v1/namespaces/shop/networkpolicies", "/v1/endpoints"]
    before = {path: shop.ok("GET", path) for path in views}
    reopened = SqliteStore(db_path)
    try:
        stored = reopened.list(records.PREFIX)
        assert sorted((r.key, r.value) for r in stored) == sorted(records.all_records(service.model))
        restored = Service(reopened)
        restored.restore()
        again = Wsgi(make_app(restored, Tokens.from_dict(TOKENS)))
        assert {path: again.ok("GET", path) for path in views} == before
        assert [p.port for p in restored.model.endpoints["b1"].ports] == [8080]
        fresh = Compiler(service.model).compile_all()  # the patched named port resolves the same every way
        for name, state in fresh.items():
            assert_same(service.compiler.states[name], state, f"{name}: incremental vs full")
            assert_same(restored.compiler.states[name], state, f"{name}: restored vs full")
    finally:
        reopened.close()


def test_a_policy_change_reaches_only_the_switch_it_concerns(shop: Wsgi, service: Service) -> None:
    published: list[dict] = []
    service.subscribe(published.append)
    shop.ok("PUT", POLICY, netpol(SPEC), token=BLUE)
    assert set(published[-1]) == {"node1"}  # only the node of the selected pod
    flows = shop.ok("GET", "/v1/nodes/node1/flows")["flows"]
    assert "table=ingress_policy" in flows and "conjunction(" in flows and "ct(commit" in flows
    shop.ok("PATCH", "/v1/endpoints/b1", {"labels": {"app": "db"}}, token=BLUE)  # no longer selected
    assert "conjunction(" not in shop.ok("GET", "/v1/nodes/node1/flows")["flows"]


def test_with_kubernetes_watched_a_tenant_token_may_not_make_move_or_delete_namespaces(
    shop: Wsgi, service: Service
) -> None:
    """Namespaces are Kubernetes' then (the watcher makes each in the tenant its Network maps it to): a tenant
    token that could make one could take a name a Network claims for another tenant, keep that tenant's pods
    out and get its NetworkPolicies. 403 whatever the name, its own, another tenant's or none; the admin
    still may; reading is unchanged."""
    watched = Wsgi(make_app(service, Tokens.from_dict(TOKENS), k8s=object()))
    revision = service.store.revision()
    refused = [
        watched.post("/v1/namespaces", {"name": "vault", "tenant": "blue"}, token=BLUE),
        watched.post("/v1/namespaces", {"name": "shop", "tenant": "blue"}, token=BLUE),
        *(
            watched.call(method, f"/v1/namespaces/{name}", body, token=BLUE)
            for method, body in (("PATCH", {"labels": {"x": "y"}}), ("DELETE", None))
            for name in ("shop", "bank", "nosuch")
        ),
    ]
    assert [a.status for a in refused] == [403] * 8
    assert "this controller watches Kubernetes, where namespaces come from" in refused[0].error["message"]
    assert {a.error["message"].split(":", 1)[1] for a in refused} == {refused[0].error["message"].split(":", 1)[1]}
    assert service.store.revision() == revision and sorted(service.model.namespaces) == ["bank", "shop"]
    assert watched.ok("GET", "/v1/namespaces/shop", token=BLUE)["tenant"] == "blue"
    assert watched.get("/v1/namespaces/bank", token=BLUE).status == 404
    watched.ok("PUT", POLICY, netpol(SPEC), token=BLUE)  # its namespaces' policies: as before
    watched.ok("POST", "/v1/namespaces", {"name": "vault", "tenant": "red"})  # the admin
    watched.ok("PATCH", "/v1/namespaces/vault", {"labels": {"x": "y"}})
    assert watched.delete("/v1/namespaces/vault").status == 204
    # Without Kubernetes, the tenant's namespaces are its own to manage.
    shop.ok("POST", "/v1/namespaces", {"name": "vault", "tenant": "blue"}, token=BLUE)
