"""The agent's unix socket: many connections at once, as a node's runtime makes them; the compiled plugin's
EXEC requests, run by cni.plugin inside the agent."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.server import AgentSocket
from cni import protocol
from cni.install import build


def test_connections_queue_until_the_agent_accepts_them(tmp_path: Path) -> None:
    server = AgentSocket(str(tmp_path / "agent.sock"), lambda request: {"ok": True})
    clients = []
    try:
        for _ in range(64):  # not accepted yet: the kernel must queue every one
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            client.settimeout(5)  # as the plugin does: a full queue is then EAGAIN at once, not a wait
            client.connect(server.server_address)
    finally:
        for client in clients:
            client.close()
        server.server_close()
    assert len(clients) == 64


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[AgentSocket, list[dict[str, Any]]]]:
    asked: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request)
        if request["verb"] == "DEL" and request["container_id"] == "c2":
            raise protocol.AgentError(protocol.IO_FAILURE, "could not remove port tn1", "OVSDB said no")
        return {"ok": True, "interface": {"name": "eth0", "mac": "02:00:0a:01:00:05", "sandbox": request["netns"]}}

    server = AgentSocket(str(tmp_path / "agent.sock"), _answering(handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _answering(handler: Any) -> Any:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        result = handler(request)
        if request["verb"] == "ADD":
            result |= {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "default_route": True}
        return result

    return answer


def exec_compiled(plugin: Path, server: AgentSocket, command: str, **env: str) -> tuple[int, Any]:
    config = {"cniVersion": "1.0.0", "name": "tenet", "type": "tenet", "tenant": "a", "network": "b"}
    config["agentSocket"] = str(server.server_address)
    variables = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/p", "CNI_IFNAME": "eth0"}
    done = subprocess.run(
        [str(plugin)], input=json.dumps(config).encode(), env=variables | env, capture_output=True, timeout=30
    )
    assert done.stderr == b""
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def test_the_compiled_plugin_is_served_in_the_agent(
    tmp_path: Path, serving: tuple[AgentSocket, list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    server, asked = serving
    build(tmp_path / "tenet")
    with caplog.at_level(logging.INFO, logger="agent.server"):
        status, result = exec_compiled(tmp_path / "tenet", server, "ADD", CNI_ARGS="K8S_POD_NAMESPACE=shop")
    assert status == 0 and result["ips"] == [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}]
    assert [(r["verb"], r["container_id"], r["tenant"], r.get("pod")) for r in asked] == [
        ("ADD", "c1", "a", {"namespace": "shop", "name": ""})
    ]
    assert "ADD c1/eth0: ok in " in caplog.text  # the line bench/cni.py reads
    assert exec_compiled(tmp_path / "tenet", server, "DEL") == (0, None)
    status, error = exec_compiled(tmp_path / "tenet", server, "DEL", CNI_CONTAINERID="c2")
    assert (status, error) == (
        1,
        {"cniVersion": "1.0.0", "code": 5, "msg": "could not remove port tn1", "details": "OVSDB said no"},
    )


def test_a_malformed_exec_request_is_answered_with_an_error(serving: tuple[AgentSocket, list[dict[str, Any]]]) -> None:
    server, asked = serving
    answer = protocol.decode(_ask(str(server.server_address), {"verb": "EXEC", "env": "CNI_COMMAND=ADD"}))
    assert answer["exit"] == 1 and answer["stdout"]["code"] == 999 and "env" in answer["stdout"]["msg"]
    assert asked == []


def test_undecodable_bytes_reach_the_plugin_as_os_environ_has_them(
    serving: tuple[AgentSocket, list[dict[str, Any]]],
) -> None:
    server, _ = serving
    request = b'{"verb": "EXEC", "env": {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c\xff"}, "stdin": "{}"}'
    answer = protocol.decode(_ask(str(server.server_address), request))
    assert answer["exit"] == 1 and answer["stdout"]["code"] == 4  # named as invalid, not a decoding failure


def _ask(path: str, request: dict[str, Any] | bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(request if isinstance(request, bytes) else protocol.encode(request))
        client.shutdown(socket.SHUT_WR)
        return protocol.read_all(client)
