"""The agent socket's protocol, shared by `tenet-cni` and `tenet-agent`. Standard library only.

One request per connection over a unix stream socket (mode 0600, root). The client writes one JSON object
and shuts its side down; the agent answers with one JSON object and closes.

Request::

    {"verb": "ADD" | "DEL" | "CHECK" | "STATUS" | "GC",
     "container_id": str, "ifname": str, "netns": str,      # from CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS
     "tenant": str, "network": str,                           # resolved by the plugin from the config
     "cni_network": str,                                      # the config's "name": with container_id and
                                                              # ifname it keys an attachment; scopes GC
     "pod": {"namespace": str, "name": str},                  # from CNI_ARGS when the runtime gives them
     "ip": str,                                               # ADD: the IPv4 address asked (runtimeConfig.ips
                                                              # or CNI_ARGS IP=), when the runtime asks one
     "valid_attachments": [{"containerID": str, "ifname": str}, ...]   # GC only
    }

The compiled plugin (cni/plugin.c) sends instead the runtime's call itself, and the agent runs cni.plugin
on it in its own process (`cni.plugin.forwarded`), answering what that plugin would print and its exit
status, in exactly this layout (the C side reads it as text; OUTPUT is the printed JSON, or null)::

    {"verb": "EXEC", "env": {"CNI_COMMAND": str, ...every CNI_* variable}, "stdin": str}
    -> {"exit": int, "stdout": OUTPUT}

Answer, on success::

    {"ok": true, "interface": {"name", "mac", "sandbox", "mtu"}, "ip": "10.1.0.5/24", "gateway": "10.1.0.1",
     "host_interface": {"name", "mac", "mtu"},                # the veth's host end, the OVS port
     "default_route": bool,                                   # false: the pod's default route was another's
     "endpoint": str}                                         # ADD; CHECK and the others answer {"ok": true}

and on failure ``{"ok": false, "code": int, "msg": str, "details": str}`` with a CNI well-known code.
"""

from __future__ import annotations

import _socket  # the C module: `socket` would import enum and selectors, ~4 ms of every plugin run
import time as _time  # built in: no import cost

from cni import fastjson

TYPE_CHECKING = False  # typing costs milliseconds at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/run/tenet/agent.sock"
VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC")
MAX_MESSAGE = 1 << 20  # far above any real request; a bound so a bad peer cannot exhaust memory

# CNI 1.1 well-known error codes (https://www.cni.dev/docs/spec/#error).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_READY = 50  # STATUS: the plugin cannot serve ADDs now
GENERIC_FAILURE = 999  # plugin-specific codes start at 100; this one is Tenet's "it failed, read msg"


class AgentError(Exception):
    """The agent refused or failed a request: carries the CNI code, message and details it gave."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def answer(self) -> dict[str, Any]:
        return {"ok": False, "code": self.code, "msg": self.msg, "details": self.details}


def call(path: str, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Send one request to the agent and return its answer; AgentError (code 11) if the agent is not there."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            _connect(sock, path, timeout)
            sock.sendall(encode(request))
            sock.shutdown(_socket.SHUT_WR)
            answer = decode(read_all(sock))
        finally:
            sock.close()
    except (FileNotFoundError, ConnectionRefusedError) as error:
        raise AgentError(TRY_AGAIN_LATER, "the Tenet agent is not running", f"{path}: {error}") from error
    except TimeoutError as error:
        raise AgentError(TRY_AGAIN_LATER, f"the Tenet agent did not answer within {timeout:g} s", path) from error
    except (OSError, ValueError) as error:
        raise AgentError(TRY_AGAIN_LATER, "the Tenet agent could not be reached", f"{path}: {error}") from error
    return checked(answer)


def checked(answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` if it says ok; else the AgentError it carries."""
    if not answer.get("ok"):
        raise AgentError(
            int(answer.get("code", GENERIC_FAILURE)), str(answer.get("msg")), str(answer.get("details", ""))
        )
    return answer


def _connect(sock: Any, path: str, timeout: float) -> None:
    """Connect, waiting while the agent's listen backlog is full: a unix socket with a timeout answers that
    with EAGAIN at once rather than waiting (many plugins starting together). TimeoutError at `timeout` s."""
    deadline = _time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if _time.monotonic() >= deadline:
                raise TimeoutError(f"{path}: the agent's backlog stayed full for {timeout:g} s") from None
            _time.sleep(0.005)


def read_all(sock: Any) -> bytes:
    chunks, size = [], 0
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_MESSAGE:
            raise ValueError(f"message longer than {MAX_MESSAGE} bytes")
    return b"".join(chunks)


def decode(data: bytes) -> dict[str, Any]:
    """One message. Bytes that are not UTF-8 decode as surrogates (surrogateescape, as `os.environ` does):
    the compiled plugin forwards the runtime's environment and stdin byte for byte (EXEC, below)."""
    message = fastjson.loads(data.decode("utf-8", "surrogateescape"))
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


def encode(message: dict[str, Any]) -> bytes:
    return fastjson.dumps(message).encode()
