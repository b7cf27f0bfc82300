"""The API server under pressure: long readiness polls cannot take every thread, silent and slow clients are
dropped after the timeout, and a client told to retry does."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from controller.api import ApiServer, Limits, Tokens, make_app, serve
from controller.client import Client, path
from controller.service import Service
from lab.ovs import wait_for
from tests.api.support import ADMIN, TOKENS

LIMITS = Limits(threads=4, ready_waits=2, timeout=1.0)


@dataclass
class Switches:
    """Stands in for the OpenFlow app's readiness: every wait blocks until `release` (or its time is up)."""

    release: threading.Event = field(default_factory=threading.Event)
    ready: bool = False
    waiting: int = 0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def readiness(self, _node: str, _port: str, ofport: int, _sequence: int, wait: float) -> dict:
        with self.lock:
            self.waiting += 1
            self.calls += 1
        try:
            if not self.ready:
                self.release.wait(wait)
            return {"ready": self.ready or self.release.is_set(), "reason": None, "ofport": ofport}
        finally:
            with self.lock:
                self.waiting -= 1


@pytest.fixture
def switches() -> Iterator[Switches]:
    switches = Switches()
    yield switches
    switches.release.set()  # let any poll still waiting finish, so the server stops at once


@pytest.fixture
def server(service: Service, switches: Switches) -> Iterator[ApiServer]:
    app = make_app(service, Tokens.from_dict(TOKENS), readiness=switches.readiness, ready_waits=LIMITS.ready_waits)
    running = serve(app, "127.0.0.1", 0, limits=LIMITS).start()
    admin = Client(running.url, ADMIN)
    admin.post(path("v1", "tenants"), {"name": "blue"})
    admin.put(path("v1", "nodes", "node1"), {"tunnel_ip": "192.168.50.1"})
    admin.post(
        path("v1", "tenants", "blue", "networks"), {"name": "w", "encap": "vxlan", "vni": 5, "subnet": "10.0.0.0/24"}
    )
    admin.post(path("v1", "endpoints"), {"id": "e1", "network": "blue/w", "node": "node1"})
    yield running
    switches.release.set()
    running.stop(timeout=10)


def get(server: ApiServer, url_path: str, *, timeout: float = 5.0) -> tuple[int, dict, dict[str, str]]:
    host, port = server.server_address
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", url_path, headers={"Authorization": f"Bearer {ADMIN}"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null"), dict(answer.getheaders())
    finally:
        connection.close()


def test_long_polls_beyond_the_cap_do_not_block_other_requests(server: ApiServer, switches: Switches) -> None:
    with ThreadPoolExecutor(max_workers=LIMITS.threads + 4) as pool:
        polls = [pool.submit(get, server, "/v1/endpoints/e1/ready?wait=30", timeout=40) for _ in range(2)]
        wait_for(lambda: switches.waiting == LIMITS.ready_waits, "both wait slots to be taken", timeout=5)
        # More long polls than there are threads: each is told at once to come back later.
        extra = [pool.submit(get, server, "/v1/endpoints/e1/ready?wait=30", timeout=5) for _ in range(LIMITS.threads)]
        for future in extra:
            status, body, headers = future.result(timeout=5)
            assert (status, body["error"]["field"], headers["Retry-After"]) == (503, "wait", "1")
            assert "readiness waits are in progress" in body["error"]["message"]
        # Every other request is served, however many at once, while the two polls still wait.
        started = time.monotonic()
        answers = list(pool.map(lambda _: get(server, "/v1/health", timeout=3), range(3 * LIMITS.threads)))
        assert all(status == 200 and body["ok"] for status, body, _ in answers)
        assert time.monotonic() - started < 3
        assert not any(poll.done() for poll in polls) and switches.waiting == 2
        status, body, _ = get(server, "/v1/endpoints/e1/ready?wait=0")  # asking without waiting takes no slot
        assert (status, body["ready"]) == (200, False)
        switches.release.set()
        assert [poll.result(timeout=10)[:2] for poll in polls] == [
            (200, {"ready": True, "reason": None, "ofport": 1000})
        ] * 2


def test_over_the_cap_a_ready_endpoint_is_answered_at_once(server: ApiServer, switches: Switches) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        polls = [pool.submit(get, server, "/v1/endpoints/e1/ready?wait=30", timeout=40) for _ in range(2)]
        wait_for(lambda: switches.waiting == 2, "both wait slots to be taken", timeout=5)
        switches.ready = True
        status, body, _ = get(server, "/v1/endpoints/e1/ready?wait=30")
        assert (status, body["ready"]) == (200, True)
        switches.release.set()
        assert all(poll.result(timeout=10)[0] == 200 for poll in polls)


def test_the_client_asks_again_when_told_to_retry(server: ApiServer, switches: Switches) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        polls = [pool.submit(get, server, "/v1/endpoints/e1/ready?wait=30", timeout=40) for _ in range(2)]
        wait_for(lambda: switches.waiting == 2, "both wait slots to be taken", timeout=5)
        patient = pool.submit(
            Client(server.url, ADMIN, timeout=20).get, path("v1", "endpoints", "e1", "ready"), wait="5"
        )
        # Two calls are the polls'; the client's first request and at least one retry are answered 503.
        wait_for(lambda: switches.calls >= 4, "the client's first request and its retry", timeout=10)
        assert not patient.done()
        switches.release.set()
        assert patient.result(timeout=20)["ready"] is True
        assert all(poll.result(timeout=10)[0] == 200 for poll in polls)


def test_silent_connections_hold_no_thread_and_are_closed(server: ApiServer) -> None:
    host, port = server.server_address
    silent = [socket.create_connection((host, port), timeout=10) for _ in range(3 * LIMITS.threads)]
    try:
        started = time.monotonic()
        assert get(server, "/v1/health", timeout=3)[0] == 200
        assert time.monotonic() - started < LIMITS.timeout  # not queued behind the silent ones
        for sock in silent:  # the server hangs up on each once the timeout has passed
            assert sock.recv(1024) == b""
        assert time.monotonic() - started < LIMITS.timeout + 5
    finally:
        for sock in silent:
            sock.close()


def test_a_request_that_stops_half_way_is_timed_out(server: ApiServer) -> None:
    host, port = server.server_address
    with socket.create_connection((host, port), timeout=10) as slow:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: tenet\r\n")  # and never the blank line
        started = time.monotonic()
        answer = b""
        while chunk := slow.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert LIMITS.timeout * 0.9 <= time.monotonic() - started < LIMITS.timeout + 5


def test_limits_that_cannot_work_are_refused(service: Service) -> None:
    app = make_app(service, Tokens.from_dict(TOKENS))
    with pytest.raises(ValueError, match=r"api_ready_waits: 4 is outside 0\.\.3"):
        serve(app, "127.0.0.1", 0, limits=Limits(threads=4, ready_waits=4))
    with pytest.raises(ValueError, match="api_timeout: want a positive number"):
        serve(app, "127.0.0.1", 0, limits=Limits(timeout=0))
