"""Hitless restarts of ovs-vswitchd: the agent ends `flow-restore-wait` once the controller has replayed the
node's flows.

With `other_config:flow-restore-wait=true` in the Open_vSwitch table (ovs-ctl sets it while it restarts
ovs-vswitchd and restores saved flows; an operator sets it for a restart that must not forward with an empty
flow table), ovs-vswitchd forwards nothing and connects to no controller until the flag is cleared
(ovs-vswitchd.conf.db(5), other_config:flow-restore-wait). Left alone, the switch would never get its flows
from Tenet. The bridge's management socket (`<OVS rundir>/br-int.mgmt`) is served all the same, so the agent
relays it to the controller's OpenFlow address: the controller sees the switch connect and reconciles it as on
any connect (dump, diff, one bundle, barrier). When the controller reports the node's switch in sync over that
connection (`GET /v1/nodes/{name}`: `switch.in_sync`, with a new `switch.connections` count), the agent closes
the relay and clears the flag, and ovs-vswitchd connects to the controller itself.

An operator may also set the flag on a running ovs-vswitchd, which keeps its controller connection then. The
relay would claim the switch's datapath id a second time, and the controller refuses such a claim while the
holder answers. So the relay is used only while the switch has no controller connection of its own
(Controller.is_connected in OVSDB): when its own connection is up and the controller reports the switch in
sync, its flows are in place and the agent clears the flag at once. After an attempt that did not end the
flag, the agent waits RETRY_AFTER s, doubling up to MAX_RETRY_AFTER s, so a controller that refuses never
sees a stream of connections.

Not quite hitless: when the flag goes, ovs-vswitchd configures br-int's controller target, and going from no
controller to one makes it flush its flow tables (OVS 3.1 ofproto/connmgr.c, connmgr_set_controllers), so the
controller's own connection installs them again, tens of milliseconds later (~30 ms measured here). Antrea's
bridge has no controller target, only the management socket, and keeps its flows; Tenet's switch reaching the
controller by itself is what `fail_mode=secure` forwarding relies on when the agent is gone.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any

from agent.ovsdb import Ovsdb, OvsdbError
from controller.client import Client, ClientError, path

log = logging.getLogger(__name__)
RETRY_AFTER = 2.0  # seconds after a failed attempt, doubled after each further one
MAX_RETRY_AFTER = 30.0


class FlowRestore:
    """Watches OVSDB for `flow-restore-wait` (every `interval` s) and ends it as the module says, in a thread."""

    def __init__(
        self,
        ovsdb: Ovsdb,
        client: Client,
        node: str,
        *,
        mgmt_socket: str,
        openflow: str,
        bridge: str = "br-int",
        interval: float = 0.5,
        timeout: float = 60.0,
    ) -> None:
        """`mgmt_socket`: path of the bridge's management socket; `openflow`: the controller's "tcp:HOST:PORT";
        `bridge`: the bridge whose controller connection counts; `timeout`: seconds to wait for the controller
        before trying again."""
        self.ovsdb, self.client, self.node, self.bridge = ovsdb, client, node, bridge
        self.mgmt_socket, self.openflow = mgmt_socket, openflow
        self.interval, self.timeout = interval, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="flow-restore", daemon=True)

    def start(self) -> FlowRestore:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        retry = RETRY_AFTER
        while not self._stop.is_set():
            pause = self.interval
            try:
                if self.ovsdb.flow_restore_wait() and not self.restore():
                    pause, retry = retry, min(retry * 2, MAX_RETRY_AFTER)
                else:
                    retry = RETRY_AFTER
            except (OvsdbError, ClientError, OSError, ValueError) as error:
                log.warning("flow-restore-wait: %s; trying again in %g s", error, retry)
                pause, retry = retry, min(retry * 2, MAX_RETRY_AFTER)  # ovs-vswitchd starting, or the controller away
            self._stop.wait(pause)

    def restore(self) -> bool:
        """End the flag: at once when the switch's own controller connection is up and the controller reports
        it in sync; else relay the management socket to the controller until it reports the switch in sync,
        then clear the flag. False if the flag stays (the switch's own connection is up but not in sync yet,
        or the controller did not get there within `timeout`); raises OvsdbError, ClientError or OSError."""
        switch = self._switch()
        if self.ovsdb.controller_connected(self.bridge):
            if not (switch.get("connected") and switch.get("in_sync")):
                log.info("flow-restore-wait is set; %s is connected to the controller, not in sync yet", self.bridge)
                return False
            self.ovsdb.clear_flow_restore_wait()
            log.info("flow-restore-wait cleared: %s is connected to the controller and in sync", self.bridge)
            return True
        before = switch.get("connections", 0)
        started = time.monotonic()
        log.info("flow-restore-wait is set: relaying %s to the controller at %s", self.mgmt_socket, self.openflow)
        with _Relay(self.mgmt_socket, _tcp_address(self.openflow)) as relay:
            while True:
                switch = self._switch()
                if switch.get("connected") and switch.get("in_sync") and switch.get("connections", 0) > before:
                    break
                if relay.done.is_set() or time.monotonic() - started > self.timeout or self._stop.is_set():
                    log.warning("flow-restore-wait: the controller did not sync the switch; the flag stays")
                    return False
                self._stop.wait(0.05)
        self.ovsdb.clear_flow_restore_wait()
        log.info("flow-restore-wait cleared: the controller replayed the flows in %.0f ms", _ms_since(started))
        return True

    def _switch(self) -> dict[str, Any]:
        return self.client.get(path("v1", "nodes", self.node)).get("switch") or {}


class _Relay:
    """Bytes both ways between the bridge's management socket and the controller, until either side closes."""

    def __init__(self, mgmt_socket: str, controller: tuple[str, int]) -> None:
        self.switch = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.controller: socket.socket | None = None
        try:
            try:
                self.switch.connect(mgmt_socket)
            except OSError as error:  # the message of a failed connect names no path: say which socket
                raise OSError(error.errno, f"connecting to {mgmt_socket}: {error.strerror or error}") from None
            try:
                self.controller = socket.create_connection(controller, timeout=10)
            except OSError as error:
                where = f"{controller[0]}:{controller[1]}"
                raise OSError(
                    error.errno, f"connecting to the controller at {where}: {error.strerror or error}"
                ) from None
            self.controller.settimeout(None)
        except BaseException:
            self.close()
            raise
        self.done = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.switch, self.controller), daemon=True),
            threading.Thread(target=self._pump, args=(self.controller, self.switch), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> _Relay:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self.done.set()
            for side in (source, sink):
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for side in (self.switch, self.controller):
            if side is not None:
                with contextlib.suppress(OSError):
                    side.shutdown(socket.SHUT_RDWR)
        for thread in getattr(self, "_threads", []):
            thread.join(timeout=5)
        for side in (self.switch, self.controller):
            if side is not None:
                side.close()


def _tcp_address(target: str) -> tuple[str, int]:
    """("HOST", PORT) of an OVS controller target "tcp:HOST:PORT"; ValueError naming it otherwise."""
    kind, _, rest = target.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit():
        raise ValueError(f"--openflow {target!r}: flow-restore-wait needs a tcp:HOST:PORT controller target")
    return host.strip("[]"), int(port)


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def mgmt_socket_path(ovsdb: str, bridge: str) -> str:
    """Where ovs-vswitchd serves `bridge`'s management socket: its rundir, which is where the OVSDB socket
    lives when OVSDB is a unix socket (/var/run/openvswitch by default)."""
    rundir = "/var/run/openvswitch"
    if ovsdb.startswith("unix:"):
        rundir = ovsdb[len("unix:") :].rsplit("/", 1)[0] or "/"
    return f"{rundir}/{bridge}.mgmt"
