"""Endpoint readiness and health: the arguments are checked, other tenants' endpoints stay hidden."""

from __future__ import annotations

from tests.api.support import BLUE, RED, Wsgi, network


def test_readiness_without_switches_says_why(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=10))
    cluster.ok("POST", "/v1/endpoints", {"id": "e1", "network": "blue/web", "node": "node1"})
    state = cluster.ok("GET", "/v1/endpoints/e1/ready", query="wait=0")
    assert state == {"ready": False, "reason": "this controller runs without switches", "ofport": None}
    assert cluster.ok("GET", "/v1/endpoints/e1/ready", token=BLUE)["ready"] is False


def test_readiness_checks_its_wait_and_hides_other_tenants(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=10))
    cluster.ok("POST", "/v1/endpoints", {"id": "e1", "network": "blue/web", "node": "node1"})
    for bad in ("wait=-1", "wait=61", "wait=soon", "wait=nan"):
        answer = cluster.get("/v1/endpoints/e1/ready", query=bad)
        assert (answer.status, answer.error["field"]) == (400, "wait"), bad
    assert cluster.get("/v1/endpoints/e1/ready", token=RED).status == 404
    assert cluster.get("/v1/endpoints/nope/ready").status == 404


def test_health_answers_any_valid_token(cluster: Wsgi) -> None:
    assert cluster.ok("GET", "/v1/health", token=BLUE) == {"ok": True, "switches": 0}
    assert cluster.get("/v1/health", token=None).status == 401
