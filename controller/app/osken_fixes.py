"""Two fixes for os-ken 4 on native threads.

A switch that disconnects is never reported dead. When the receive loop ends, `Datapath.serve` joins the
send thread, which sits in `send_q.get()` for ever (native threads cannot be killed), so DEAD_DISPATCHER
never comes and the session is never closed. Waking the send thread with a close marker lets `serve`
finish the way it does under eventlet.

A connection that fails before it is a switch session leaves no trace. The native hub runs each accepted
connection in a thread whose `TaskExit` is `Exception`, so it swallows every exception silently: alone, os-ken
says nothing of a switch whose TLS handshake it refuses (a certificate another CA signed, or none), and only
the switch's own log tells why. The OpenFlow listener here logs such a connection's end: a refused TLS
handshake as one warning with the peer's address and the TLS library's reason, a connection closed
mid-handshake (a port probe) at info, anything else with its traceback.

This reaches into os-ken's `Datapath` (`_recv_loop`, `_send_loop`, `send_q`, `_send_q_sem`) and the
`StreamServer` name `os_ken.controller.controller` listens with: setup.cfg pins the os-ken versions it was
checked on, and tests/unit/test_osken_internals.py fails naming what changed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
from typing import Any

from os_ken.controller import controller
from os_ken.lib import hub

log = logging.getLogger("controller.app.openflow_listener")

_original_recv_loop = controller.Datapath._recv_loop


def _recv_loop_then_wake_sender(self: Any) -> None:
    try:
        _original_recv_loop(self)
    finally:
        send_q = self.send_q
        # An empty write that tells the send loop to stop, counted in the semaphore like any `send` (the
        # send loop releases one per message). If the queue is full the send loop is busy: it fails on the
        # dead socket and stops by itself.
        if send_q is not None and self._send_q_sem.acquire(blocking=False):
            try:
                send_q.put_nowait((b"", True))
            except queue.Full:
                with contextlib.suppress(ValueError):
                    self._send_q_sem.release()


class LoggingStreamServer(hub.StreamServer):
    """os-ken's listener (`hub.StreamServer`, same arguments), except that a connection whose handling ends
    in an exception is logged (see the module docstring) instead of being dropped without a word."""

    def __init__(self, listen_info: Any, handle: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(listen_info, handle, *args, **kwargs)
        self.handle: Any = _logged(self.handle)


def _logged(handle: Any) -> Any:
    def handle_and_log(sock: Any, address: Any) -> None:
        try:
            handle(sock, address)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as error:  # closed mid-handshake, e.g. a port probe
            log.info("OpenFlow: the connection of %s ended before its TLS handshake: %s", _peer(address), error)
        except ssl.SSLError as error:  # from the handshake: os-ken wraps the socket before it reads a message
            log.warning("OpenFlow: refused the TLS handshake of %s: %s", _peer(address), _tls_reason(error))
        except OSError as error:  # the peer went away, or was reset, mid-handshake
            log.info("OpenFlow: the connection of %s ended before it began: %s", _peer(address), error)
        except Exception:
            log.exception("OpenFlow: the connection of %s ended with an error", _peer(address))

    return handle_and_log


def _peer(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _tls_reason(error: ssl.SSLError) -> str:
    """E.g. "certificate verify failed: unable to get local issuer certificate" (no CA of --ofp-tls-ca
    signed the switch's certificate), "peer did not return a certificate"."""
    detail = getattr(error, "verify_message", None)
    reason = (error.reason or str(error)).lower().replace("_", " ")
    if error.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"):
        return f"{reason} (the peer does not speak TLS: a switch set to tcp: rather than ssl:?)"
    return f"{reason}: {detail}" if detail else reason


def apply() -> None:
    controller.Datapath._recv_loop = _recv_loop_then_wake_sender
    controller.StreamServer = LoggingStreamServer  # the name server_loop listens with
