"""The plugin waits while the agent's listen backlog is full, as it is when many pods start at once."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from cni import protocol


def test_a_full_backlog_is_waited_for_not_reported_as_an_unreachable_agent(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    for client in waiting:  # fill the backlog: the next connect with a timeout gets EAGAIN at once
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            client.connect(path)
    full = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    full.settimeout(1)
    try:
        full.connect(path)
        backlog_full = False
    except BlockingIOError:
        backlog_full = True
    finally:
        full.close()
    assert backlog_full, "the test needs a full backlog to mean anything"
    tried = threading.Event()

    def agent() -> None:
        tried.wait(5)
        while True:  # drain the queue, answer the plugin's request, ignore the fillers
            connection, _ = server.accept()
            data = connection.recv(65536)
            if data:
                connection.sendall(protocol.encode({"ok": True, "answer": "ready"}))
                connection.close()
                return
            connection.close()

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    real_connect = protocol._connect

    def connect(sock: object, path: str, timeout: float) -> None:  # named as protocol._connect's
        tried.set()
        real_connect(sock, path, timeout)

    try:
        protocol._connect = connect
        for client in waiting:
            client.close()  # a closed filler stays queued until accepted: the backlog is still full
        answer = protocol.call(path, {"verb": "STATUS"}, timeout=5)
    finally:
        protocol._connect = real_connect
        server.close()
    thread.join(5)
    assert answer == {"ok": True, "answer": "ready"}
