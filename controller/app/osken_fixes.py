"""Two fixes for os-ken 4 on native threads.

A switch that disconnects is never reported dead. When the receive loop ends, `Datapath.serve` joins the
send thread, which sits in `send_q.get()` for ever (native threads cannot be killed), so DEAD_DISPATCHER
never comes and the session is never closed. Waking the send thread with a close marker lets `serve`
finish the way it does under eventlet.

A connection that fails leaves no trace: the native hub drops every exception of a connection's thread.
`apply()` also puts controller/app/openflow_listener.py's listener, which logs them, in its place, and
leaves out os-ken's own shorter line about them, which the listener's replaces.

This reaches into os-ken's `Datapath` (`_recv_loop`, `_send_loop`, `send_q`, `_send_q_sem`) and the
`StreamServer` name `os_ken.controller.controller` listens with: setup.cfg pins the os-ken versions it was
checked on, and tests/unit/test_osken_internals.py fails naming what changed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from typing import Any

from os_ken.controller import controller

from controller.app.openflow_listener import OSKEN_LOGGER, DropOsKenSessionError, LoggingStreamServer

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


def apply() -> None:
    controller.Datapath._recv_loop = _recv_loop_then_wake_sender
    controller.StreamServer = LoggingStreamServer  # the name server_loop listens with
    osken_log = logging.getLogger(OSKEN_LOGGER)
    if not any(isinstance(known, DropOsKenSessionError) for known in osken_log.filters):
        osken_log.addFilter(DropOsKenSessionError())
