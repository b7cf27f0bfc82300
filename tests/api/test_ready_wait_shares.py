"""Readiness waits: tenant tokens hold at most half the slots, so a node agent's wait (a pod's CNI ADD)
always finds one, however many waits a tenant keeps open."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.api import Tokens, make_app
from controller.service import Service
from lab.ovs import wait_for
from tests.api.support import BLUE, TOKENS, Wsgi, network

N1 = "node1-token"
SLOTS = 4


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
    tokens = {**TOKENS, "nodes": {"node1": [N1]}}
    return Wsgi(make_app(service, Tokens.from_dict(tokens), readiness=slow, ready_waits=SLOTS))


def test_a_tenant_holding_its_share_of_waits_leaves_the_node_agents_theirs(cluster: Wsgi, slow: Slow) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    for i in range(SLOTS):
        cluster.ok("POST", "/v1/endpoints", {"id": f"b{i}", "network": "blue/web", "node": "node1"}, token=BLUE)
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: answers.append(
                cluster.call("GET", f"/v1/endpoints/b{i}/ready", token=BLUE, query="wait=20").status
            )
        )
        for i in range(SLOTS)
    ]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: slow.waiting == SLOTS // 2 and len(answers) == SLOTS // 2, "the tenant's share", timeout=5)
        assert answers == [503] * (SLOTS // 2)  # the tenant got half the slots, no more
        made = {"id": "r1", "network": "blue/web", "node": "node1", "port_name": "tnr1"}
        cluster.ok("POST", "/v1/endpoints", made, token=N1)
        for _ in range(SLOTS - SLOTS // 2):  # the node agent's waits find every remaining slot
            threading.Thread(
                target=lambda: answers.append(
                    cluster.call("GET", "/v1/endpoints/r1/ready", token=N1, query="wait=20").status
                )
            ).start()
        wait_for(lambda: slow.waiting == SLOTS, "the node agent's waits", timeout=5)
        over = cluster.call("GET", "/v1/endpoints/r1/ready", token=N1, query="wait=20")
        assert over.status == 503 and over.error["field"] == "wait"
    finally:
        slow.release.set()
        for thread in threads:
            thread.join(timeout=10)
    wait_for(lambda: len(answers) == 2 * SLOTS - SLOTS // 2, "every wait answered", timeout=10)
    assert sorted(answers) == [200] * SLOTS + [503] * (SLOTS // 2)
