"""The API over a real socket: serve() on a free port, the urllib client, concurrent writers."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from controller import records
from controller.api import ApiServer, ServeError, Tokens, make_app, serve
from controller.client import Client, ClientError, path
from controller.service import Service
from tests.api.support import ADMIN, BLUE, TOKENS


@pytest.fixture
def server(service: Service) -> Iterator[ApiServer]:
    running = serve(make_app(service, Tokens.from_dict(TOKENS)), "127.0.0.1", 0).start()
    yield running
    running.stop()


def test_client_round_trip(server: ApiServer) -> None:
    admin = Client(server.url, ADMIN)
    assert admin.post(path("v1", "tenants"), {"name": "blue"})["name"] == "blue"
    admin.put(path("v1", "nodes", "node1"), {"tunnel_ip": "192.168.50.1"})
    net = {"name": "web", "encap": "vxlan", "vni": 5, "subnet": "10.0.0.0/24"}
    assert admin.post(path("v1", "tenants", "blue", "networks"), net)["gateway"] == "10.0.0.1"
    blue = Client(server.url, BLUE)
    endpoint = blue.post(path("v1", "endpoints"), {"id": "e1", "network": "blue/web", "node": "node1"})
    assert endpoint["ip"] == "10.0.0.2"
    assert [e["id"] for e in blue.get(path("v1", "endpoints"), network="blue/web", node=None)] == ["e1"]
    assert blue.delete(path("v1", "endpoints", "e1")) is None
    with pytest.raises(ClientError) as refused:
        blue.post(path("v1", "tenants"), {"name": "red"})
    assert refused.value.status == 403 and "admin" in str(refused.value)
    with pytest.raises(ClientError) as conflict:
        admin.post(path("v1", "tenants", "blue", "networks"), net)
    assert (conflict.value.status, conflict.value.field) == (409, "network.name")
    with pytest.raises(ClientError) as unauthorized:
        Client(server.url, None).get(path("v1", "tenants"))
    assert unauthorized.value.status == 401


def test_raw_http(server: ApiServer) -> None:
    with urllib.request.urlopen(server.url + "/openapi.json") as answer:
        assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
        assert json.loads(answer.read())["paths"]
    # A body far over the limit is refused before it is read.
    big = urllib.request.Request(
        server.url + "/v1/tenants", data=b"x" * 100_000, method="POST", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(big)
    assert refused.value.code == 413


def test_port_taken_is_a_clear_error(server: ApiServer, service: Service) -> None:
    port = server.server_address[1]
    with pytest.raises(ServeError, match=f"cannot serve the API on 127.0.0.1:{port}: the port is already in use"):
        serve(make_app(service, Tokens()), "127.0.0.1", port)


def test_serving_from_the_callers_thread(service: Service) -> None:
    """As the controller's main does: bind first, then run serve_forever in a thread of its own."""
    server = serve(make_app(service, Tokens.from_dict(TOKENS)), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert Client(server.url, ADMIN).get(path("v1", "nodes")) == []
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(ClientError, match="cannot reach the controller"):
        Client(server.url, ADMIN).get(path("v1", "nodes"))


def test_unreachable_controller() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ClientError, match=f"cannot reach the controller at http://127.0.0.1:{port}: ") as error:
            Client(f"http://127.0.0.1:{port}", ADMIN).get(path("v1", "tenants"))
    assert error.value.status is None


def test_concurrent_endpoint_creation_never_shares_an_address(server: ApiServer, service: Service) -> None:
    admin = Client(server.url, ADMIN)
    admin.post(path("v1", "tenants"), {"name": "blue"})
    admin.put(path("v1", "nodes", "node1"), {"tunnel_ip": "192.168.50.1"})
    admin.post(
        path("v1", "tenants", "blue", "networks"), {"name": "w", "encap": "vlan", "vlan": 9, "subnet": "10.0.0.0/26"}
    )

    def create(i: int) -> str:
        return Client(server.url, BLUE).post(
            path("v1", "endpoints"), {"id": f"e{i}", "network": "blue/w", "node": "node1"}
        )["ip"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ips = list(pool.map(create, range(40)))
    assert len(set(ips)) == 40
    stored = {r.value["ip"] for r in service.store.list(records.key("endpoints", ""))}
    assert stored == set(ips)
