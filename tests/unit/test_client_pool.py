"""controller.client keeps its connections to the controller open, and copes when the controller closes one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controller.client import Client, ClientError


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections = 0
        self.requests: list[str] = []
        self.close_after_answer = False  # hang up after each answer, as an idle keep-alive timeout does
        self.delay = 0.0  # seconds before answering
        self.closed = 0  # connections this server has closed
        self.closing = threading.Condition()

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.closing:
            self.closed += 1
            self.closing.notify_all()

    def wait_closed(self, count: int) -> None:
        """Until this server has closed `count` connections (its thread does so after the client has the
        answer: a client quick enough would reuse the connection before that)."""
        with self.closing:
            assert self.closing.wait_for(lambda: self.closed >= count, timeout=10), self.closed

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *_: Any) -> None:
        pass

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.requests.append(self.command)
        time.sleep(self.server.delay)
        data = json.dumps({"method": self.command, "body": body}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client gave up waiting (the timeout test)
            self.close_connection = True
            return
        if self.server.close_after_answer:
            self.close_connection = True

    do_GET = do_POST = do_DELETE = answer


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(10)


def test_requests_share_one_connection(server: Server) -> None:
    client = Client(server.url, "token")
    for _ in range(3):
        assert client.get("/v1/nodes") == {"method": "GET", "body": None}
    assert client.post("/v1/endpoints", {"id": "e1"}) == {"method": "POST", "body": {"id": "e1"}}
    client.delete("/v1/endpoints/e1")
    assert (server.connections, server.requests) == (1, ["GET", "GET", "GET", "POST", "DELETE"])


def test_a_connection_the_controller_closed_is_replaced(server: Server) -> None:
    client = Client(server.url, "token")
    server.close_after_answer = True
    assert client.get("/v1/nodes")["method"] == "GET"
    server.wait_closed(1)
    # The pooled connection is closed by now: a POST (never sent twice) and a GET go out on new ones.
    assert client.post("/v1/endpoints", {"id": "e1"})["method"] == "POST"
    server.wait_closed(2)
    assert client.get("/v1/nodes")["method"] == "GET"
    assert (server.connections, server.requests) == (3, ["GET", "POST", "GET"])


def test_a_read_that_timed_out_is_not_sent_again(server: Server) -> None:
    server.delay = 1.0
    with pytest.raises(ClientError, match="timed out"):
        Client(server.url, "token", timeout=0.2).get("/v1/nodes")
    assert server.requests == ["GET"]
