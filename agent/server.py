"""The agent's unix socket: one JSON request per connection (see `cni.protocol`), each on its own thread.

A request from the compiled plugin (verb EXEC: the runtime's CNI_* environment and stdin) runs cni.plugin here,
in the agent, whose requests to the agent then go straight to the handler rather than through the socket.
"""

from __future__ import annotations

import logging
import os
import socketserver
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cni import plugin, protocol
from cni.protocol import AgentError

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class _Connection(socketserver.BaseRequestHandler):
    server: AgentSocket

    def handle(self) -> None:
        try:
            request = protocol.decode(protocol.read_all(self.request))
        except OSError as error:  # the plugin went away before it finished asking
            log.warning("could not read a request: %s", error)
            return
        except ValueError as error:
            request = {}
            answer = AgentError(protocol.DECODE_FAILURE, "the request is not a JSON object", str(error)).answer()
            log.info("a request that is not a JSON object: %s", error)
        else:
            if request.get("verb") == "EXEC":
                answer = plugin.forwarded(request, self.server.call)
            else:
                answer = self.server.answer(request)
        try:
            self.request.sendall(protocol.encode(answer))
        except OSError as error:  # the plugin went away (killed by its runtime): nothing to tell
            log.warning("could not answer %s: %s", request.get("verb"), error)


class AgentSocket(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # Connections the kernel queues before the agent accepts them. socketserver's default (5) is less than a
    # node's runtime starts at once: a plugin whose connect finds the queue full fails at once (EAGAIN).
    request_queue_size = 256

    def __init__(self, path: str, handler: Handler) -> None:
        self.handler = handler
        socket_path = Path(path)
        socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        socket_path.unlink(missing_ok=True)  # left by an agent that was killed
        old_mask = os.umask(0o177)  # created 0600: only root may ask for ports
        try:
            super().__init__(path, _Connection)
        finally:
            os.umask(old_mask)
        os.chmod(path, 0o600)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The handler's answer to one request (an error answer if it raised), logged with its time."""
        started = time.monotonic()
        try:
            answer = self.handler(request)
        except AgentError as error:
            answer = error.answer()
        except Exception as error:  # a bug must reach the runtime as an error, and the log with its trace
            log.exception("%s failed", request.get("verb"))
            answer = AgentError(protocol.GENERIC_FAILURE, f"the agent failed: {error}").answer()
        log.info(
            "%s %s/%s: %s in %.0f ms",
            request.get("verb"),
            str(request.get("container_id", ""))[:12],
            request.get("ifname", ""),
            "ok" if answer.get("ok") else f"error {answer.get('code')}: {answer.get('msg')}",
            (time.monotonic() - started) * 1000,
        )
        return answer

    def call(self, _path: str, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """`cni.protocol.call` for cni.plugin run in the agent: the handler's answer, AgentError if not ok.
        The socket path is this one (the compiled plugin found it in the same configuration); the runtime's
        plugin process keeps the timeout."""
        return protocol.checked(self.answer(request))

    def server_close(self) -> None:
        super().server_close()
        assert isinstance(self.server_address, str)  # a unix socket's path
        Path(self.server_address).unlink(missing_ok=True)
