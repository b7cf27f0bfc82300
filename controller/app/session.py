"""One connected switch: requests with their replies, the sending path, and what went wrong.

os-ken delivers replies on its event thread; a session's work (dump, reconcile, pushes) runs on the
session's own worker thread and waits there for replies, so the event thread is never blocked.

A switch that refuses a message (an OFPT_ERROR answering any message: flow-mod, group-mod, meter-mod,
bundle control or add, barrier, multipart) or does not answer in time fails the task that sent it; the
session then resyncs (dump, diff, push: `resync`) after a delay that doubles from `BACKOFF_FIRST` up to
`BACKOFF_MAX` s until a resync succeeds, and skips change sets meanwhile (the resync sends all of them).
An OFPT_ERROR that fails no task (it answers a request that timed out already) brings a resync too.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from controller.app.reconcile import PORT_GUARD, Installed, Plan, port_guards
from controller.openflow import decode, encode, flow_stats, messages
from controller.openflow.errors import describe, error_text
from controller.openflow.ofctl import flow_text
from controller.pipeline.ir import Flow, Group

log = logging.getLogger(__name__)
REPLY_TIMEOUT = 30.0
BACKOFF_FIRST = 0.1  # s before the first resync after a failure; doubled after each failed resync
BACKOFF_MAX = 5.0  # s, the longest wait between resyncs
SEND_CHUNK_BYTES = 256 * 1024  # flow-mods are written to the socket in batches of about this size


class SwitchError(RuntimeError):
    """The switch answered with an OpenFlow error, or did not answer in time. `recorded`: the error is in
    the session's `errors` already (an OFPT_ERROR is recorded when it arrives)."""

    def __init__(self, text: str, *, recorded: bool = False) -> None:
        super().__init__(text)
        self.recorded = recorded


@dataclass(frozen=True)
class PortGuard:
    """An OFPT_PORT_MOD that guards (`guarded`) or opens port `name` (OpenFlow port `number`, with the MAC
    `hw_addr` the switch gave it: OVS refuses a port-mod naming another); noted as what was sent."""

    name: str
    number: int
    hw_addr: str
    guarded: bool

    def __str__(self) -> str:
        verb = "guarding" if self.guarded else "opening"
        return f"{verb} port {self.name} (OpenFlow port {self.number})"


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    replies: list[Any] = field(default_factory=list)
    error: str | None = None
    port_sequence: int = 0  # port-status messages that had arrived when the last part of the reply did


class SwitchSession:
    """One OpenFlow connection (`datapath`, os-ken's) to the switch of `node` (None: no node of the model).

    `ports` (name -> OpenFlow port number), `port_up` (name -> live) and `port_config` (name -> (ofp_port_config
    bits, MAC)) follow the port descriptions read by `dump` and the port-status messages handed to
    `port_status`; `in_sync` is None until the first
    reconcile, False after a failure until a resync succeeds; `errors` keeps the last 50 problems.
    """

    def __init__(self, datapath: Any, node: str | None) -> None:
        self.dp = datapath
        self.node = node
        self.ports: dict[str, int] = {}
        self.port_up: dict[str, bool] | None = None  # port name -> link up and not disabled; None until dumped
        self.port_config: dict[str, tuple[int, str]] = {}  # port name -> (ofp_port_config bits, MAC)
        self.disputed: set[str] = set()  # ports whose guard a port status contradicted (`port_status`)
        self._bound_at: dict[str, int] = {}  # guarded port -> `queued` when first seen bound (`guard_ports`)
        self.errors: collections.deque[str] = collections.deque(maxlen=50)
        self.in_sync: bool | None = None
        self.synced_sequence = -1  # the service's change sequence the switch's state includes
        self.queued_sequence = -1  # the change sequence of the last change set queued for the switch
        self.connected_at = time.monotonic()
        self.converge_ms: int | None = None  # from connecting to the first reconcile's barrier
        self.reconcile_ms: dict[str, int] = {}  # the last reconcile's steps: dump, compile, diff, push
        self.verified_flows = 0  # flows the last reconcile found installed byte for byte (dump_compare)
        self.last_plan: dict[str, int] = {}
        self.error_count = 0  # OpenFlow errors received on this connection
        self.resyncs = 0  # resyncs run after a failure
        self.refused_connections = 0  # other connections that claimed this datapath id while it answered
        self.resync: Callable[[], None] | None = None  # dump, diff and push; set by the app
        self._backoff = BACKOFF_FIRST
        self._resync_at: float | None = None  # monotonic time of the next resync; None: none pending
        self._closed = False
        self._port_sequence = 0  # port-status messages seen
        self._port_log: list[tuple[int, str, _PortDesc | None]] | None = None  # kept while ports are dumped
        self._pending: dict[int, _Pending] = {}
        # xid -> what was sent (text, or a Flow rendered only if the switch refuses it), for error reports
        self._sent: collections.OrderedDict[int, object] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=f"switch-{datapath.id:#x}", daemon=True)
        self._worker.start()

    # --- work on the session's thread ----------------------------------------------------------

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def queued(self) -> int:
        """Tasks waiting for the session's thread (change sets to push, reconciles, checks)."""
        return self._tasks.qsize()

    def close(self) -> None:
        self._closed = True
        self._tasks.put(None)
        with self._lock:
            for pending in self._pending.values():
                pending.error = "the switch disconnected"
                pending.done.set()

    @property
    def resync_pending(self) -> bool:
        """A task failed and no resync has succeeded since: change sets are skipped, the resync sends them."""
        return self._resync_at is not None

    def alive(self) -> bool:
        """The connection is open as far as os-ken knows (it may still be silent: see `answers`)."""
        return not self._closed and bool(getattr(self.dp, "is_active", True)) and self.dp.send_q is not None

    def answers(self, timeout: float) -> bool:
        """The switch answers an echo request within `timeout` s. Sent from a thread of its own: a switch
        that stopped reading fills os-ken's send queue, and then sending blocks until the socket times out."""
        answered = threading.Event()

        def probe() -> None:
            try:
                self.request(self.dp.ofproto_parser.OFPEchoRequest(self.dp), timeout=timeout)
            except SwitchError:
                return
            answered.set()

        threading.Thread(target=probe, name=f"echo-{self.dp.id:#x}", daemon=True).start()
        return answered.wait(timeout + 0.1)

    def _run(self) -> None:
        while not self._closed:
            if self._resync_at is not None and time.monotonic() >= self._resync_at:
                task: Callable[[], None] | None = self._resync
            else:
                wait = None if self._resync_at is None else max(0.0, self._resync_at - time.monotonic())
                try:
                    task = self._tasks.get(timeout=wait)
                except queue.Empty:
                    continue
            if task is None:
                return
            try:
                task()
            except Exception as error:  # a failed task must be loud, and must not stop the session
                if self._closed:
                    return
                if not getattr(error, "recorded", False):  # an OFPT_ERROR was logged and kept when it came
                    log.error(
                        "switch %s (%s): %s",
                        self.node,
                        hex(self.dp.id),
                        error,
                        exc_info=not isinstance(error, SwitchError),
                    )
                    self.errors.append(str(error))
                self.in_sync = False
                self._schedule_resync()

    def _schedule_resync(self) -> None:
        if self.resync is None:
            return
        if self._resync_at is None:
            self._backoff = BACKOFF_FIRST
        delay, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX)
        self._resync_at = time.monotonic() + delay
        log.info("switch %s (%s): resync in %.1f s", self.node, hex(self.dp.id), delay)

    def _resync(self) -> None:
        assert self.resync is not None
        self.resyncs += 1
        self.resync()  # raises on failure: the next one is scheduled with a longer delay
        log.info("switch %s (%s): in sync again (%d resync(s) so far)", self.node, hex(self.dp.id), self.resyncs)

    def park(self) -> None:
        """The switch is no node's (its node re-registered with another datapath id, or is gone): no resync
        runs until a node claims it again, and it reports no sync state."""
        self.node = None
        self._resync_at = None
        self.in_sync = None

    def mark_in_sync(self) -> None:
        """A reconcile (the first, or a resync) pushed the whole desired state and the switch took it."""
        self._resync_at = None
        self.in_sync = True

    # --- requests and replies ------------------------------------------------------------------

    def request(self, msg: Any, *, timeout: float = REPLY_TIMEOUT) -> list[Any]:
        """Send a request and wait for its whole reply (every part of a multipart reply).

        Raises SwitchError at once when the switch answers with an OFPT_ERROR or disconnects, and after
        `timeout` s without an answer."""
        return self._request(msg, timeout=timeout).replies

    def _request(self, msg: Any, *, timeout: float = REPLY_TIMEOUT) -> _Pending:
        if self._closed:
            raise SwitchError("the switch disconnected")
        xid = self.dp.set_xid(msg)
        what = describe(msg)
        self._note(xid, what)
        pending = _Pending()
        with self._lock:
            self._pending[xid] = pending
        self.dp.send_msg(msg)
        if not pending.done.wait(timeout):
            with self._lock:
                self._pending.pop(xid, None)
            raise SwitchError(f"no answer to {what} within {timeout:g} s")
        if pending.error:
            raise SwitchError(pending.error, recorded=pending.error != "the switch disconnected")
        return pending

    def deliver(self, msg: Any) -> None:
        """A reply arrived (called on os-ken's event thread)."""
        with self._lock:
            pending = self._pending.get(msg.xid)
            if pending is None:
                return
            pending.replies.append(msg)
            if not getattr(msg, "flags", 0) & self.dp.ofproto.OFPMPF_REPLY_MORE:
                del self._pending[msg.xid]
                pending.port_sequence = self._port_sequence
                pending.done.set()

    def error(self, msg: Any) -> None:
        """An OFPT_ERROR answering any message: remember it with what caused it, and fail the request it
        answers at once (a refused bundle commit, barrier or multipart request does not wait for a timeout).
        Called on os-ken's event thread."""
        with self._lock:
            what = self._sent.get(msg.xid, f"a message (xid {msg.xid})")
            if isinstance(what, PortGuard) and (
                self.ports.get(what.name) != what.number or self.port_config.get(what.name, (0, ""))[1] != what.hw_addr
            ):
                # The port went, or changed its number or MAC, before the switch read the port-mod: its port
                # status came first (one connection, in order) and brought a check of its own.
                log.info("switch %s: %s: the port changed meanwhile (%s)", self.node, what, error_text(msg))
                return
            pending = self._pending.pop(msg.xid, None)
            self.error_count += 1
        if isinstance(what, Flow):
            what = flow_text(what)
        text = f"{error_text(msg)} for {what}"
        log.error("switch %s (%s): %s", self.node, hex(self.dp.id), text)
        self.errors.append(text)
        self.in_sync = False
        if pending is not None:
            pending.error = text
            pending.done.set()
        self._tasks.put(self._resync_unless_due)  # after the task it fails, if any: that one schedules it

    def _resync_unless_due(self) -> None:
        """After an OFPT_ERROR that failed no task (it came after its request timed out, or a look such as
        `verify` caught it): a resync, as a failed task gets; nothing if one is due or a reconcile since set
        the switch right."""
        if self.in_sync is False and self._resync_at is None:
            self._schedule_resync()

    def port_status(
        self, name: str, port_no: int | None, live: bool, *, config: int = 0, hw_addr: str = "", added: bool = False
    ) -> None:
        """An OFPT_PORT_STATUS (called on os-ken's event thread): the port `name` is now `port_no` and `live`,
        with ofp_port_config bits `config` and MAC `hw_addr`, or gone when `port_no` is None; `added`: an
        OFPPR_ADD. A port's guard bits are what it was added with, the port descriptions said, or this
        session's own port-mods set: OVS reports a port-mod to the other controllers only (before OpenFlow
        1.5), so a MODIFY sent before one of ours says the bits before it. A MODIFY whose guard bits differ
        from those marks the port `disputed` instead (stale, or another controller's port-mod): the next
        `guard_ports` sets it again. One arriving while `dump` reads the port descriptions is replayed on top
        of them if it came after the reply, so it is never lost."""
        with self._lock:
            known = self.port_config.get(name)
            keep = not added and known is not None
            if port_no is None:
                self.disputed.discard(name)
                self._bound_at.pop(name, None)
            elif keep and known is not None and (config ^ known[0]) & PORT_GUARD:
                self.disputed.add(name)
            desc = None if port_no is None else _PortDesc(port_no, live, None if keep else config, hw_addr)
            self._port_sequence += 1
            _apply_port(self.ports, self.port_up, self.port_config, name, desc)
            if self._port_log is not None:
                self._port_log.append((self._port_sequence, name, desc))

    def guarded(self, name: str) -> bool:
        """Whether port `name` has a guard bit, as last set (`guard_ports`) or read."""
        return bool(self.port_config.get(name, (0, ""))[0] & PORT_GUARD)

    def guard_ports(self, planned: dict[str, int], *, opening: bool = True, queued: int = -1) -> list[PortGuard]:
        """Guard every port of the switch that `planned` (port name -> number, `Model.planned_ports`) does not
        bind, and open (when `opening`) every guarded one it binds once the switch holds the change sets that
        were queued for it (`queued`, a change sequence) when this was first called with the port bound: one
        OFPT_PORT_MOD each (`reconcile.port_guards`), then a barrier if any was sent. A guard counts from
        when it is sent, an opening once the barrier says the switch applied it. Call it on the session's
        thread only: it is the one thread that sets guards, so what it last set is what the switch has.
        Returns what was sent. Raises SwitchError if the switch refused one for a port it still has as it was
        (a port gone or changed meanwhile is guarded again, if need be, by the check its port status brings)."""
        with self._lock:
            disputed, self.disputed = self.disputed, set()
            ports = [(name, number, self.port_config.get(name, (0, ""))[0]) for name, number in self.ports.items()]
            may_open = set()
            for name, number, config in ports:
                if planned.get(name) == number and config & PORT_GUARD:  # bound, still guarded
                    since = self._bound_at.setdefault(name, queued)
                    if opening and self.synced_sequence >= since:
                        may_open.add(name)
                else:
                    self._bound_at.pop(name, None)
        changes = port_guards(planned, ports, opening=may_open, disputed=disputed)
        if not changes:
            return []
        dp, parser = self.dp, self.dp.ofproto_parser
        errors_before = self.error_count
        sent = []
        for name, number, guarded in changes:
            with self._lock:
                if self.ports.get(name) != number:  # gone or renumbered meanwhile: its port status brings a check
                    continue
                config, hw_addr = self.port_config.get(name, (0, ""))
                if guarded:
                    self.port_config[name] = (config | PORT_GUARD, hw_addr)
            guard = PortGuard(name, number, hw_addr, guarded)
            mod = parser.OFPPortMod(
                dp, port_no=number, hw_addr=hw_addr, config=PORT_GUARD if guarded else 0, mask=PORT_GUARD, advertise=0
            )
            self.send(mod, guard)
            sent.append(guard)
            log.log(
                logging.WARNING if guarded else logging.INFO,
                "switch %s: %s: %s",
                self.node,
                guard,
                "no endpoint has it as planned, so it neither sends nor receives" if guarded else "bound as planned",
            )
        if not sent:
            return sent
        self.barrier()
        refused = self.error_count - errors_before
        if refused:
            raise SwitchError(f"the switch refused {refused} port-mod(s)", recorded=True)
        with self._lock:
            for guard in sent:
                if not guard.guarded and self.ports.get(guard.name) == guard.number:
                    config, hw_addr = self.port_config.get(guard.name, (0, ""))
                    self.port_config[guard.name] = (config & ~PORT_GUARD, hw_addr)
                    self._bound_at.pop(guard.name, None)
        return sent

    def send(self, msg: Any, what: object) -> None:
        self._note(self.dp.set_xid(msg), what)
        self.dp.send_msg(msg)

    def _note(self, xid: int, what: object) -> None:
        """Remember what a message was, so an error answering its xid can name the flow."""
        self._note_all(((xid, what),))

    def _note_all(self, sent: Iterable[tuple[int, object]]) -> None:
        with self._lock:
            self._sent.update(sent)
            while len(self._sent) > 100_000:
                self._sent.popitem(last=False)

    def barrier(self) -> None:
        self.request(self.dp.ofproto_parser.OFPBarrierRequest(self.dp))

    # --- reading and writing state -------------------------------------------------------------

    def dump(
        self, *, to_repair: bool = True, raw_flows: bool = False, after_ports: Callable[[], None] | None = None
    ) -> Installed:
        """Every flow, group and meter on the switch, as IR where Tenet can read it; `to_repair=False` for a
        look only (no note that foreign flows are about to go). `raw_flows`: leave the flow-stats bodies
        undecoded in `Installed.raw_flows`, for `dump_compare.resolve` to compare with the desired flows.
        `after_ports`: called once the port descriptions are read (and `ports` set), before the flows are."""
        parser, ofp = self.dp.ofproto_parser, self.dp.ofproto
        installed = Installed()
        ports: dict[str, int] = {}
        port_up: dict[str, bool] = {}
        configs: dict[str, tuple[int, str]] = {}
        with self._lock:
            self._port_log = []
        try:
            read = self._request(parser.OFPPortDescStatsRequest(self.dp, 0))  # a multipart reply: every part
        except BaseException:
            with self._lock:
                self._port_log = None
            raise
        for reply in read.replies:
            for port in reply.body:
                if port.port_no <= ofp.OFPP_MAX:
                    desc = _PortDesc(port.port_no, port_live(port, ofp), port.config, port.hw_addr)
                    _apply_port(ports, port_up, configs, _text(port.name), desc)
        with self._lock:
            # Port-status messages that came after the reply (os-ken's thread may have run them while this
            # one built the table) are newer than it: apply them again, in the order they arrived. The log is
            # kept until the table is in place, under the lock `port_status` takes, so none falls in between.
            log_, self._port_log = self._port_log or [], None
            for sequence, name, status in log_:
                if sequence > read.port_sequence:
                    _apply_port(ports, port_up, configs, name, status)
            self.ports, self.port_up, self.port_config = ports, port_up, configs
        if after_ports is not None:  # e.g. ports guarded before the flows are read (a reconcile's first step)
            after_ports()
        reader = flow_stats.FlowStatsReader()
        for reply in self.request(parser.OFPFlowStatsRequest(self.dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY)):
            if raw_flows and isinstance(reply.body, flow_stats.RawBody):
                installed.raw_flows.append((reply.body.buf, reply.body.offset, reply.body.end))
                continue
            for entry in _flow_entries(reply.body, reader):
                if isinstance(entry, tuple):
                    installed.flows.append(entry)
                else:
                    if to_repair:
                        log.info(
                            "switch %s: a flow Tenet did not write (table %s): removing it", self.node, entry.table_id
                        )
                    installed.foreign_flows.append(entry)
        for reply in self.request(parser.OFPGroupDescStatsRequest(self.dp, 0)):
            for group in _group_entries(reply.body, reader):
                if isinstance(group, Group):
                    installed.groups.append(group)
                else:
                    installed.foreign_groups.append(group.group_id)
        for reply in self.request(parser.OFPMeterConfigStatsRequest(self.dp, 0, ofp.OFPM_ALL)):
            for stats in reply.body:
                try:
                    installed.meters.append(decode.decode_meter(stats))
                except decode.Foreign:
                    installed.foreign_meters.append(stats.meter_id)
        return installed

    def execute(self, plan: Plan, *, round_: int) -> None:
        """Send a plan: meters and groups, one bundle of flow-mods, removals, then wait for a barrier."""
        dp = self.dp
        started = time.monotonic()
        errors_before = self.error_count
        for meter in plan.meter_adds:
            self.send(messages.meter_mod(dp, meter, command="add"), f"meter {meter.meter_id}")
        for meter in plan.meter_mods:
            self.send(messages.meter_mod(dp, meter, command="modify"), f"meter {meter.meter_id}")
        for group in plan.group_adds:
            self.send(messages.group_mod(dp, group, command="add"), f"group {group.group_id}")
        for group in plan.group_mods:
            self.send(messages.group_mod(dp, group, command="modify"), f"group {group.group_id}")
        if plan.flow_mod_count():
            self._bundle(self._flow_mods(plan, round_), round_)  # encoded as sent: the switch starts at once
        for group_id in plan.group_deletes:
            self.send(messages.group_mod(dp, messages.Group(group_id, ()), command="delete"), f"group {group_id}")
        for meter_id in plan.meter_deletes:
            self.send(messages.meter_mod(dp, messages.Meter(meter_id, 1, 1), command="delete"), f"meter {meter_id}")
        for zone in plan.ct_flush_zones:  # after the flows that could track into it are gone
            self.send(messages.ct_flush_zone(dp, zone), f"conntrack zone {zone} flush")
        self.barrier()
        refused = self.error_count - errors_before
        if refused:  # messages sent without waiting: their errors came before the barrier's reply
            raise SwitchError(f"the switch refused {refused} message(s) of the plan", recorded=True)
        self.last_plan = {
            "flow_mods": plan.flow_mod_count(),
            "messages": len(plan),
            "ms": round((time.monotonic() - started) * 1000),
        }

    def _flow_mods(self, plan: Plan, round_: int) -> Iterable[tuple[Any, object]]:
        """(command, flow) for each IR flow, (os-ken message, what it is) for the others, in sending order."""
        dp, parser, ofp = self.dp, self.dp.ofproto_parser, self.dp.ofproto
        for flow in plan.flow_deletes:
            yield "delete", flow
        for stats in plan.foreign_flow_deletes:
            yield (
                parser.OFPFlowMod(
                    dp,
                    table_id=stats.table_id,
                    priority=stats.priority,
                    match=stats.match,
                    command=ofp.OFPFC_DELETE_STRICT,
                    out_port=ofp.OFPP_ANY,
                    out_group=ofp.OFPG_ANY,
                ),
                f"foreign flow in table {stats.table_id}",
            )
        for flow in plan.flow_adds:
            yield "add", flow
        for value, mask in plan.round_deletes:
            yield messages.delete_by_cookie(dp, value, mask), f"old round {value >> 56}"

    def _bundle(self, flow_mods: Iterable[tuple[Any, object]], round_: int) -> None:
        """All flow-mods in one atomic ONF bundle (OpenFlow 1.3 + the ONF extension OVS implements)."""
        dp, parser, ofp = self.dp, self.dp.ofproto_parser, self.dp.ofproto
        bundle_id = (dp.id ^ int(time.monotonic() * 1000)) & 0xFFFFFFFF
        flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
        self.request(parser.ONFBundleCtrlMsg(dp, bundle_id, ofp.ONF_BCT_OPEN_REQUEST, flags, []))
        try:
            self._bundle_adds(flow_mods, round_, bundle_id, flags)
        except BaseException:  # a flow that cannot be encoded: the switch drops what it has of the bundle
            with contextlib.suppress(Exception):
                discard = parser.ONFBundleCtrlMsg(dp, bundle_id, ofp.ONF_BCT_DISCARD_REQUEST, flags, [])
                self.send(discard, "bundle discard")
            raise
        self.request(parser.ONFBundleCtrlMsg(dp, bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, flags, []))

    def _bundle_adds(self, flow_mods: Iterable[tuple[Any, object]], round_: int, bundle_id: int, flags: int) -> None:
        """Each flow-mod in a bundle-add message, encoded as it is sent: the switch starts on the first ones
        while the last are encoded."""
        dp, ofp = self.dp, self.dp.ofproto
        chunk: list[bytes] = []
        size = 0
        bundled = encode.bundled_flow_mod_bytes
        notes = []  # (xid, what): recorded under the lock once per chunk, not once per flow
        for msg, what in flow_mods:
            if isinstance(msg, str):  # an IR flow: encoded straight into its bundle-add message
                dp.xid = xid = (dp.xid + 1) & ofp.MAX_XID  # as os-ken's Datapath.set_xid counts
                buf = bundled(what, command=msg, round_=round_, bundle_id=bundle_id, flags=flags, xid=xid)  # type: ignore[arg-type]
            else:  # the few flow-mods not built from IR (foreign flows, old rounds)
                xid = dp.set_xid(msg)
                msg.serialize()
                buf = encode.bundle_add_bytes(bundle_id, flags, msg.buf, xid)
            notes.append((xid, what))
            chunk.append(buf)
            size += len(buf)
            if size >= SEND_CHUNK_BYTES:  # one socket write for many messages, not one each
                self._note_all(notes)
                dp.send(b"".join(chunk))
                chunk, size, notes = [], 0, []
        if chunk:
            self._note_all(notes)
            dp.send(b"".join(chunk))


def _flow_entries(body: Any, reader: flow_stats.FlowStatsReader) -> Iterable[tuple[Flow, int] | Any]:
    """(flow, round) for each Tenet flow of a reply, os-ken's stats object for each foreign one."""
    if isinstance(body, flow_stats.RawBody):
        yield from body.flows(reader)
        return
    for stats in body:  # os-ken parsed the body (the fast reader is not installed)
        try:
            yield decode.decode_flow(stats)
        except decode.Foreign:
            yield stats


def _group_entries(body: Any, reader: flow_stats.FlowStatsReader) -> Iterable[Group | Any]:
    if isinstance(body, flow_stats.RawBody):
        yield from body.groups(reader)
        return
    for stats in body:
        try:
            yield decode.decode_group(stats)
        except decode.Foreign:
            yield stats


def port_live(port: Any, ofp: Any) -> bool:
    """A port carries traffic: its link is up (no OFPPS_LINK_DOWN) and it is not disabled (OFPPC_PORT_DOWN)."""
    return not (port.state & ofp.OFPPS_LINK_DOWN or port.config & ofp.OFPPC_PORT_DOWN)


class _PortDesc(NamedTuple):
    """What a port description or status says of a port."""

    number: int
    live: bool
    config: int | None  # ofp_port_config bits; None: as they were (a port modified, not added)
    hw_addr: str


def _apply_port(
    ports: dict[str, int],
    port_up: dict[str, bool] | None,
    configs: dict[str, tuple[int, str]],
    name: str,
    desc: _PortDesc | None,
) -> None:
    if desc is None:
        ports.pop(name, None)
        configs.pop(name, None)
        if port_up is not None:
            port_up.pop(name, None)
    else:
        ports[name] = desc.number
        config = configs.get(name, (0, ""))[0] if desc.config is None else desc.config
        configs[name] = (config, desc.hw_addr)
        if port_up is not None:
            port_up[name] = desc.live


def _text(name: bytes | str) -> str:
    return name.decode(errors="replace") if isinstance(name, bytes) else name
