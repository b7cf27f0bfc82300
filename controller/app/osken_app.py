"""The os-ken application: a thin shim between switches and the pure code.

Each handler looks up the session, hands the message over and returns; the work (dump, reconcile, sending
change sets) runs on the session's own thread. Handlers are wrapped so an exception is logged loudly
instead of vanishing into os-ken's event loop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3

from controller.app import osken_fixes, reconcile, verify
from controller.app.claims import PROBE_TIMEOUT, PROBES, certificate_problem, holder_gone
from controller.app.session import SwitchSession, port_live
from controller.openflow import dump_compare, flow_stats
from controller.openflow.ofctl import flow_text
from controller.pipeline.state import ChangeSet
from controller.service import Service

log = logging.getLogger(__name__)
osken_fixes.apply()
flow_stats.keep_stats_raw()


class Runtime:
    """What the app needs from the process that starts it; set before os-ken instantiates the app."""

    service: Service | None = None
    round_: int = 1
    app: TenetApp | None = None
    ready = threading.Event()


def loud(handler: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(handler)
    def wrapper(self: TenetApp, ev: Any) -> None:
        try:
            handler(self, ev)
        except Exception:
            log.exception("handler %s failed on %s", handler.__name__, type(ev).__name__)

    return wrapper


class TenetApp(app_manager.OSKenApp):
    OFP_VERSIONS: ClassVar[list[int]] = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if Runtime.service is None:
            raise RuntimeError("Runtime.service must be set before the app starts")
        self.service = Runtime.service
        self.round_ = Runtime.round_
        self.sessions: dict[int, SwitchSession] = {}  # by datapath id
        self.connections: dict[int, int] = {}  # datapath id -> times it connected
        self.changed = threading.Condition()  # notified when a switch syncs, a port appears, a switch goes
        self._links_seen: tuple[int, int] | None = None  # (model, its links_version) when last checked
        self.service.subscribe(self.publish)
        Runtime.app = self
        Runtime.ready.set()

    # --- switch lifecycle ----------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @loud
    def on_features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        previous = self.sessions.get(dp.id)
        node = self._node_for(dp.id)
        problem = certificate_problem(dp, node) if node is not None else None
        if problem is not None:
            self._refuse(
                previous,
                dp,
                f"refused a connection from {_address(dp)} claiming node {node}'s datapath id {dp.id:#x}: {problem}",
            )
            return
        if previous is not None and previous.dp is not dp and previous.alive():
            # A second connection claims a datapath id that has a session: probe the holder off this thread
            # (its echo reply comes through this app's event thread).
            threading.Thread(target=self._arbitrate, args=(previous, dp), name=f"probe-{dp.id:#x}", daemon=True).start()
            return
        self._adopt(dp)

    def _refuse(self, previous: SwitchSession | None, dp: Any, text: str) -> None:
        """Close `dp`, log why at ERROR, and count it on the holder of its datapath id, if any."""
        dp.close()
        log.error("switch %#x: %s", dp.id, text)
        if previous is not None:  # the reason first: a status read in between never counts one without it
            if text not in list(previous.errors):  # a switch retrying every second is one problem, not many
                previous.errors.append(text)
            previous.refused_connections += 1
        self._notify()

    def _arbitrate(self, previous: SwitchSession, dp: Any) -> None:
        """Keep the session of a switch that still answers and refuse (close) the newcomer claiming its
        datapath id; a holder is replaced only once its connection is gone or it missed PROBES echo requests
        in a row (`holder_gone`)."""
        try:
            if not holder_gone(previous):
                text = (
                    f"refused a connection from {_address(dp, port=False)} claiming datapath id {dp.id:#x}: "
                    f"the switch at {_address(previous.dp, port=False)} holds it and answers"
                )
                self._refuse(previous, dp, text)
                return
            log.warning(
                "switch %#x at %s missed %d echo requests (%s s each): the connection from %s takes over",
                dp.id,
                _address(previous.dp),
                PROBES,
                PROBE_TIMEOUT,
                _address(dp),
            )
            previous.dp.close()
            self._adopt(dp)
        except Exception:
            log.exception("switch %#x: deciding between two connections failed", dp.id)

    def _adopt(self, dp: Any) -> None:
        """Make `dp` the connection of its datapath id, closing any earlier one, and reconcile it."""
        # Under the service's lock: a node registered at this moment is either seen here or, once the session
        # is in `sessions`, adopted by `publish`; never missed by both.
        with self.service.lock:
            node = self._node_for(dp.id)
            previous = self.sessions.pop(dp.id, None)
            if previous is not None:
                previous.close()
            session = self.sessions[dp.id] = SwitchSession(dp, node)
            session.resync = functools.partial(self._reconcile, session)
        self.connections[dp.id] = self.connections.get(dp.id, 0) + 1
        if node is None:
            log.warning("switch %#x is no node of the model; leaving it alone", dp.id)
            return
        log.info("switch %#x is node %s: reconciling", dp.id, node)
        session.submit(lambda: self._reconcile(session))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    @loud
    def on_dead(self, ev: Any) -> None:
        session = self.sessions.get(ev.datapath.id) if ev.datapath.id is not None else None
        if session is not None and session.dp is ev.datapath:
            del self.sessions[ev.datapath.id]
            session.close()
            log.info("switch %#x (%s) disconnected", ev.datapath.id, session.node)
            self._notify()

    def _reconcile(self, session: SwitchSession) -> None:
        started = time.monotonic()
        # Ports no endpoint has as planned are guarded as soon as they are known, before the flows are read: after
        # an ovs-vswitchd restart (OVS keeps no port config) an orphaned pod's port is open until then.
        installed = session.dump(raw_flows=True, after_ports=functools.partial(self._guard, session, opening=False))
        dumped = time.monotonic()
        with self.service.lock:  # the desired state and the change sets after it stay in order
            known = self.service.model.nodes.get(session.node) if session.node is not None else None
            if known is None or known.datapath_id != session.dp.id:
                log.info("switch %#x is no node's now: not reconciling it", session.dp.id)
                session.park()
                return
            assert session.node is not None  # `known` is its node
            self._check_ports(session)
            self._sync_links(session)  # link ports down on this switch: the desired state avoids them
            desired = self.service.compiler.compile_node(session.node)
            compiled = time.monotonic()
            for stats in dump_compare.resolve(installed, desired, round_=self.round_):
                log.info("switch %s: a flow Tenet did not write (table %s): removing it", session.node, stats.table_id)
            plan = reconcile.reconcile(desired, installed, round_=self.round_)
            # Change sets queued before this point are part of `desired`: they must not be sent again (they
            # run after this task, on the session's thread, and see `synced_sequence`).
            sequence = self.service.sequence
        if not plan.round_deletes:  # the same round: any difference is drift, worth seeing
            for flow in plan.flow_deletes[:3]:
                log.info("switch %s: removing %s", session.node, flow_text(flow))
            for flow in plan.flow_adds[:3]:
                log.info("switch %s: setting %s", session.node, flow_text(flow))
        diffed = time.monotonic()
        session.execute(plan, round_=self.round_)  # raises if the switch refuses any of it: a resync follows
        session.synced_sequence = max(session.synced_sequence, sequence)
        done = time.monotonic()
        session.converge_ms = round((done - session.connected_at) * 1000)
        session.reconcile_ms = {
            "dump": round((dumped - started) * 1000),
            "compile": round((compiled - dumped) * 1000),
            "diff": round((diffed - compiled) * 1000),
            "push": round((done - diffed) * 1000),
        }
        session.verified_flows = len(installed.verified)
        session.mark_in_sync()
        self._guard(session)  # the flows are in: bound ports guarded before open now
        self._notify()
        log.info("switch %s reconciled: %s in %s ms", session.node, session.last_plan, session.reconcile_ms)

    def _check_ports(self, session: SwitchSession, name: str | None = None) -> dict[str, int]:
        """Flows use the planned port numbers (the agent requests them): say loudly when OVS gave others. Every
        port of the switch (at its reconcile, and when the fabric links change), or only port `name` (its port
        status: one lookup, not the node's whole plan built, sorted and compared for each of an ADD's statuses).
        An endpoint's own port is checked again by the readiness wait of the ADD that adds it. Returns the plan
        it checked against (port name -> number; {} for a switch of no node)."""
        model = self.service.model
        if session.node not in model.nodes:
            return {}
        if name is None:
            planned = model.planned_ports(session.node)
        else:
            ofport = model.planned_port(session.node, name)
            planned = {} if ofport is None else {name: ofport}
        for problem in reconcile.port_mismatches(planned, session.ports):
            if problem not in session.errors:
                log.error("switch %s: %s", session.node, problem)
                session.errors.append(problem)
        return planned

    def _guard(self, session: SwitchSession, *, opening: bool = True) -> None:
        """On the session's thread, after what it pushed: guard the switch's ports the model does not bind
        (`SwitchSession.guard_ports`), and open (when `opening`) each one it binds once the switch holds the
        change sets queued for it when the binding was first seen, and no resync is due: until then flows
        from before may still send another endpoint's traffic to a reused port number. Each change set queued
        has a check after it, as has a resync, so a port that may not open yet is opened by a later one.
        Wakes the readiness waits when a port opened."""
        with self.service.lock:
            node = session.node
            if node is None or node not in self.service.model.nodes:
                return
            planned = self.service.model.planned_ports(node)
            queued = session.queued_sequence
        opening = opening and session.in_sync is True and not session.resync_pending
        if any(not guard.guarded for guard in session.guard_ports(planned, opening=opening, queued=queued)):
            self._notify()

    def _link_changes(self, session: SwitchSession) -> dict[str, bool]:
        """Fabric link ports of the session's node whose state on the switch differs from the model's
        (port name -> up); a port missing from the switch is down. Call with the service lock held."""
        model = self.service.model
        if session.port_up is None or session.node not in model.nodes or not model.links:
            return {}
        changes = {}
        for port in model.link_ports(session.node):
            up = session.port_up.get(port, False)
            if up != model.link_port_up(session.node, port):
                changes[port] = up
        return changes

    def _sync_links(self, session: SwitchSession) -> None:
        """Tell the model what the switch says of its link ports: a link down or up again recompiles the
        flood tree and the paths, and the service publishes the change sets to every switch they touch."""
        with self.service.lock:
            changes = self._link_changes(session)
            if changes and session.node is not None:  # changes come only from a node's switch
                self.service.set_link_ports(session.node, changes)

    def _node_for(self, dpid: int) -> str | None:
        with self.service.lock:
            for node in self.service.model.nodes.values():
                if node.datapath_id == dpid:
                    return node.name
        return None

    # --- model changes -------------------------------------------------------------------------

    def publish(self, changes: dict[str, ChangeSet]) -> None:
        """Called by the service, under its lock, after each change: queue each node's change set."""
        model = self.service.model
        links_changed = (id(model), model.links_version) != self._links_seen
        self._links_seen = (id(model), model.links_version)
        moved: dict[str, str] = {}  # node -> host of its switch still connected under the old datapath id
        for session in list(self.sessions.values()):
            known = model.nodes.get(session.node) if session.node is not None else None
            if session.node is not None and (known is None or known.datapath_id != session.dp.id):
                # The node re-registered with another datapath id (or is gone): match the switch again.
                log.info("switch %#x is no longer node %s: matching it again", session.dp.id, session.node)
                if known is not None and session.alive():
                    moved[session.node] = _address(session.dp, port=False)
                session.park()  # no resync for a node it is no longer
        for session in list(self.sessions.values()):
            if session.node is None:
                # A node registered after its switch connected: adopt the switch now. Not a switch of another
                # host while the node's own is still connected: its new id must not hand it someone's switch
                # (its own switch reconnects with the new id, and is adopted then).
                node = self._node_for(session.dp.id)
                if node in moved and _address(session.dp, port=False) != moved[node]:
                    log.error(
                        "switch %#x at %s: not adopted as node %s, whose switch at %s is still connected",
                        session.dp.id,
                        _address(session.dp),
                        node,
                        moved[node],
                    )
                    continue
                session.node = node
                problem = certificate_problem(session.dp, session.node) if session.node is not None else None
                if problem is not None:  # closing it ends the session (on_dead)
                    log.error(
                        "switch %#x: closing the connection from %s: node %s registered its datapath id, but %s",
                        session.dp.id,
                        _address(session.dp),
                        session.node,
                        problem,
                    )
                    session.node = None
                    session.dp.close()
                elif session.node is not None:
                    session.submit(functools.partial(self._reconcile, session))
                continue
            node_changes = changes.get(session.node)
            if node_changes:
                plan = reconcile.from_changes(node_changes)
                sequence = self.service.sequence
                session.queued_sequence = sequence  # no port opens before the switch holds it (`_guard`)
                session.submit(functools.partial(self._push, session, plan, sequence))
            elif links_changed:  # a link added or gone: its port's binding too (`_push` checks them otherwise)
                session.submit(functools.partial(self._guard, session))
            if links_changed:
                self._check_ports(session)  # a link's port the switch reported before: no port status follows
                if self._link_changes(session):  # a link added after the switch reported its ports
                    session.submit(functools.partial(self._sync_links, session))

    def _push(self, session: SwitchSession, plan: reconcile.Plan, sequence: int) -> None:
        """Send a change set, then check the ports' guards (`_guard`): an endpoint gone or added is a port
        guarded or opened, in one task with the push that follows from it."""
        if sequence <= session.synced_sequence or session.resync_pending:
            # A reconcile that ran after this change already sent it, or the pending resync will; guarding
            # (never opening while a resync is due) is still right now.
            self._guard(session)
            return
        session.execute(plan, round_=self.round_)
        session.synced_sequence = sequence
        self._notify()
        self._guard(session)

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def endpoint_ready(self, node: str, port: str, ofport: int, sequence: int, wait: float) -> dict[str, Any]:
        """Wait up to `wait` s until the port is on the node's switch as planned and the switch holds change
        `sequence` (the endpoint's flows); say why not if it does not happen."""
        deadline = time.monotonic() + wait
        with self.changed:
            while True:
                state = self._endpoint_state(node, port, ofport, sequence)
                remaining = deadline - time.monotonic()
                if state["ready"] or remaining <= 0:
                    return state
                self.changed.wait(remaining)

    def _endpoint_state(self, node: str, port: str, ofport: int, sequence: int) -> dict[str, Any]:
        session = next((s for s in list(self.sessions.values()) if s.node == node), None)
        if session is None:
            return {"ready": False, "reason": f"the switch of node {node} is not connected", "ofport": None}
        actual = session.ports.get(port)
        if actual is None:
            reason = f"port {port} is not on the switch of node {node} yet"
        elif actual != ofport:
            reason = f"port {port} is OpenFlow port {actual} on the switch, but flows use {ofport}"
        elif session.guarded(port):
            reason = f"port {port} is guarded on the switch of node {node} until it holds the endpoint's flows"
        elif session.synced_sequence < sequence:
            reason = f"the switch of node {node} does not hold the endpoint's flows yet"
        elif session.in_sync is False:
            # Not the error itself: it may name any tenant's flow, and tenants may ask (the admin's `tenetctl
            # node show` lists them).
            reason = f"the switch of node {node} reported errors (tenetctl node show {node} lists them)"
        else:
            reason = None
        return {"ready": reason is None, "reason": reason, "ofport": actual}

    def verify(self, node: str, timeout: float) -> dict[str, Any]:
        """Dump the node's switch now and compare it with the desired state (`controller.app.verify`)."""
        session = next((s for s in list(self.sessions.values()) if s.node == node), None)
        if session is None:
            return {"checked": False, "reason": f"the switch of node {node} is not connected"}
        checked = verify.check(self.service, session, round_=self.round_, timeout=timeout)
        session.submit(functools.partial(self._guard, session))  # the guards as its dump found them, set again
        return checked

    def status(self, node: str) -> dict[str, Any]:
        """What `tenetctl node show` tells about a node's switch."""
        for session in list(self.sessions.values()):
            if session.node == node:
                return {
                    "connected": True,
                    "connections": self.connections.get(session.dp.id, 0),
                    "datapath_id": f"{session.dp.id:#x}",
                    "in_sync": session.in_sync,
                    "last_push": session.last_plan,
                    "converge_ms": session.converge_ms,
                    "reconcile_ms": session.reconcile_ms,
                    "verified_flows": session.verified_flows,  # found right byte for byte by the last reconcile
                    "resyncs": session.resyncs,
                    "refused_connections": session.refused_connections,
                    "errors": list(session.errors),
                    "guarded_ports": sorted(name for name in list(session.port_config) if session.guarded(name)),
                }
        return {"connected": False}

    # --- replies -------------------------------------------------------------------------------

    @set_ev_cls(
        [
            ofp_event.EventOFPFlowStatsReply,
            ofp_event.EventOFPGroupDescStatsReply,
            ofp_event.EventOFPMeterConfigStatsReply,
            ofp_event.EventOFPPortDescStatsReply,
            ofp_event.EventOFPBarrierReply,
            ofp_event.EventONFBundleCtrlMsg,
            ofp_event.EventOFPEchoReply,
        ],
        MAIN_DISPATCHER,
    )
    @loud
    def on_reply(self, ev: Any) -> None:
        session = self._session_of(ev.msg.datapath)
        if session is not None:
            session.deliver(ev.msg)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @loud
    def on_error(self, ev: Any) -> None:
        session = self._session_of(ev.msg.datapath)
        if session is not None:
            session.error(ev.msg)
        else:
            log.error("switch %s: OpenFlow error %s", ev.msg.datapath.id, ev.msg)

    def _session_of(self, dp: Any) -> SwitchSession | None:
        """The session of this very connection: not another one's that claims the same datapath id."""
        session = self.sessions.get(dp.id) if dp.id is not None else None
        return session if session is not None and session.dp is dp else None

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @loud
    def on_port_status(self, ev: Any) -> None:
        session = self._session_of(ev.msg.datapath)
        if session is None:
            return
        port, ofp = ev.msg.desc, ev.msg.datapath.ofproto
        if port.port_no > ofp.OFPP_MAX:  # the bridge's LOCAL port: no flow names it (and `dump` skips it)
            return
        name = port.name.decode() if isinstance(port.name, bytes) else port.name
        deleted = ev.msg.reason == ofp.OFPPR_DELETE
        live = port_live(port, ofp)
        added = ev.msg.reason == ofp.OFPPR_ADD
        number = None if deleted else port.port_no
        session.port_status(name, number, live, config=port.config, hw_addr=port.hw_addr, added=added)
        with self.service.lock:
            check = False
            if ev.msg.reason != ofp.OFPPR_DELETE:
                planned = self._check_ports(session, name)
                # A port bound as planned, open and not disputed needs no check (a pod's port on its ADD).
                bound = planned.get(name) == number
                check = not bound or session.guarded(name) or name in session.disputed
            if self._link_changes(session):  # the work runs on the session's thread, after its reconcile
                session.submit(lambda: self._sync_links(session))
        if check:  # on the session's thread, the one that sets guards, after what is queued before
            session.submit(functools.partial(self._guard, session))
        self._notify()


def _address(dp: Any, *, port: bool = True) -> str:
    """A connection's peer as `host:port` (or `host`)."""
    address = getattr(dp, "address", None)
    if not isinstance(address, tuple) or len(address) < 2:
        return str(address)
    return f"{address[0]}:{address[1]}" if port else str(address[0])
