"""The agent's unix socket takes many connections at once, as a node's runtime makes them."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.server import AgentSocket


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
