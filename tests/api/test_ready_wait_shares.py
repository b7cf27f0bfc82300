"""Readiness waits: tenant tokens hold at most half the slots, so a node agent's wait (a pod's CNI ADD)
always finds one, however many waits tenants keep open; and each tenant holds at most its own part of that
half, so one tenant cannot take every tenant's slot."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.api import Tokens, make_app
from controller.service import Service
from lab.ovs import wait_for
from tests.api.support import ADMIN, BLUE, RED, Wsgi, network

N1 = "node1-token"
GREEN = "green-token"
SLOTS = 4  # tenant tokens: 2 together, 1 each


class Slow:
    """A switch whose endpoints only become ready when the test says so; counts the waits in progress."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = 0
        self.lock = threading.Lock()

    def __call__(self, node: str, port: str, ofport: int, sequence: int, wait: float) -> dict[str, Any]:
        if wait <= 0:
            return {"ready": False, "reason": "port not on switch", "ofport": None}
        with self.lock:
            self.waiting += 1
        try:
            ready = self.release.wait(wait)
        finally:
            with self.lock:
                self.waiting -= 1
        return {"ready": ready, "reason": None if ready else "port not on switch", "ofport": ofport if ready else None}


@pytest.fixture
def slow() -> Slow:
    return Slow()


@pytest.fixture
def api(service: Service, slow: Slow) -> Wsgi:
    tokens = {
        "admin": [ADMIN],
        "tenants": {"blue": [BLUE], "red": [RED], "green": [GREEN]},
        "nodes": {"node1": [N1]},
    }
    return Wsgi(make_app(service, Tokens.from_dict(tokens), readiness=slow, ready_waits=SLOTS))


def waiter(cluster: Wsgi, answers: list[tuple[str, int]], endpoint: str, token: str) -> threading.Thread:
    """A thread that waits up to 20 s for `endpoint` and appends (endpoint, status) to `answers`."""

    def run() -> None:
        answers.append(
            (endpoint, cluster.call("GET", f"/v1/endpoints/{endpoint}/ready", token=token, query="wait=20").status)
        )

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_tenant_holds_only_its_own_part_of_the_tenants_share(cluster: Wsgi, slow: Slow) -> None:
    cluster.ok("POST", "/v1/tenants", {"name": "green"})
    for tenant, token, subnet in (
        ("blue", BLUE, "10.0.0.0/24"),
        ("red", RED, "10.1.0.0/24"),
        ("green", GREEN, "10.2.0.0/24"),
    ):
        cluster.ok("POST", f"/v1/tenants/{tenant}/networks", network("web", subnet, vni=100 + len(tenant)))
        for i in range(2):
            made = {"id": f"{tenant}{i}", "network": f"{tenant}/web", "node": "node1"}
            cluster.ok("POST", "/v1/endpoints", made, token=token)
    answers: list[tuple[str, int]] = []
    threads = [waiter(cluster, answers, "blue0", BLUE)]
    try:
        wait_for(lambda: slow.waiting == 1, "blue's wait", timeout=5)
        over = cluster.call("GET", "/v1/endpoints/blue1/ready", token=BLUE, query="wait=20")
        assert (over.status, over.error["field"], over.headers["Retry-After"]) == (503, "wait", "1")
        assert over.error["message"] == (
            "tenant 'blue' already holds 1 readiness wait(s), the per-tenant limit (the most one tenant may hold "
            "at once); ask again in 1 s"
        )
        threads.append(waiter(cluster, answers, "red0", RED))  # blue at its cap: red still finds a slot
        wait_for(lambda: slow.waiting == 2, "red's wait", timeout=5)
        assert answers == []
        full = cluster.call("GET", "/v1/endpoints/green0/ready", token=GREEN, query="wait=20")
        assert full.status == 503 and "by tenant tokens" in full.error["message"]  # the share: 2 together
        admin = cluster.call("GET", "/v1/endpoints/blue1/ready", query="wait=0.2")  # the admin's: not blue's
        assert admin.status == 200 and admin.body["ready"] is False
    finally:
        slow.release.set()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(answers) == [("blue0", 200), ("red0", 200)]
    slow.release.clear()
    threads = [waiter(cluster, answers, "blue1", BLUE)]  # a wait given back is blue's again
    wait_for(lambda: slow.waiting == 1, "blue's wait once more", timeout=5)
    slow.release.set()
    threads[0].join(timeout=10)
    assert answers[-1] == ("blue1", 200)


def test_tenants_holding_their_share_of_waits_leave_the_node_agents_theirs(cluster: Wsgi, slow: Slow) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/tenants/red/networks", network("web", "10.0.0.0/24", vni=200))
    for i in range(SLOTS):
        cluster.ok("POST", "/v1/endpoints", {"id": f"b{i}", "network": "blue/web", "node": "node1"}, token=BLUE)
        cluster.ok("POST", "/v1/endpoints", {"id": f"r{i}", "network": "red/web", "node": "node1"}, token=RED)
    answers: list[tuple[str, int]] = []
    threads = [
        waiter(cluster, answers, f"{name}{i}", token) for i in range(SLOTS) for name, token in (("b", BLUE), ("r", RED))
    ]
    try:
        tenants = SLOTS // 2
        wait_for(
            lambda: slow.waiting == tenants and len(answers) == 2 * SLOTS - tenants, "the tenants' share", timeout=5
        )
        assert sorted(status for _, status in answers) == [503] * (2 * SLOTS - tenants)  # half the slots, no more
        made = {"id": "n1", "network": "blue/web", "node": "node1", "port_name": "tnn1"}
        cluster.ok("POST", "/v1/endpoints", made, token=N1)
        threads += [waiter(cluster, answers, "n1", N1) for _ in range(SLOTS - tenants)]  # the agent's: the rest
        wait_for(lambda: slow.waiting == SLOTS, "the node agent's waits", timeout=5)
        over = cluster.call("GET", "/v1/endpoints/n1/ready", token=N1, query="wait=20")
        assert over.status == 503 and over.error["field"] == "wait"
    finally:
        slow.release.set()
        for thread in threads:
            thread.join(timeout=10)
    waited = sorted(status for _, status in answers)
    assert waited == [200] * SLOTS + [503] * (2 * SLOTS - SLOTS // 2)
