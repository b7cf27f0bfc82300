"""The agent's OVSDB adapter: br-int and the pods' ports, through ovsdbapp over one IDL connection.

The connection stays open for the agent's lifetime; ovsdbapp runs it in a thread of its own, which also
runs every transaction, so callers in many threads are serialized there. Reads are served from the IDL's
replica under the connection's lock, without a round trip.

Writes are ovs-vsctl-like: a transaction that changed something bumps `next_cfg` and returns once
ovs-vswitchd has applied it (`cur_cfg` caught up), so a port's `ofport` is known when `add_port` returns
and an interface OVS could not open is reported as an error, not discovered later. Port changes made by
several threads at once share one transaction (and one such wait); `add_port(wait=False)` returns once the
database has the port and leaves the wait to the caller (`wait_applied`), so an ADD can ask the controller
meanwhile. A transaction that would change nothing writes nothing at all, so `ensure_bridge` on a bridge
already as wanted is a no-op for the database and for ovs-vswitchd (the controller connection is not
touched).

Only the tables and columns used here are monitored (not, say, Interface statistics, which ovs-vswitchd
rewrites every few seconds for every port).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovsdbapp.backend.ovs_idl import command, idlutils, transaction
from ovsdbapp.backend.ovs_idl import connection as ovs_connection
from ovsdbapp.schema.open_vswitch import impl_idl

from agent import ovsjson

log = logging.getLogger(__name__)

SCHEMA = "Open_vSwitch"
COLUMNS = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg", "ssl", "other_config"],
    "SSL": ["private_key", "certificate", "ca_cert", "bootstrap_ca_cert"],
    "Bridge": ["name", "datapath_type", "fail_mode", "protocols", "other_config", "controller", "ports"],
    "Controller": ["target", "connection_mode", "is_connected"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "options", "ofport", "ofport_request", "external_ids", "error", "mtu_request", "mac"],
}
OPENFLOW = ["OpenFlow13"]
FLOW_RESTORE_WAIT = "flow-restore-wait"


class OvsdbError(Exception):
    """An OVSDB read or write failed, or OVS could not apply it; the message says what."""


class Ovsdb:
    """br-int and its ports, over one OVSDB connection kept open; safe to call from many threads."""

    def __init__(self, connection: str, *, timeout: float = 10.0) -> None:
        """Connect to ovsdb-server at `connection` (e.g. "unix:/var/run/openvswitch/db.sock")."""
        ovsjson.install()  # python-ovs's JSON lexer in Python was a fifth of the agent's CPU per ADD
        self.target = connection
        self.timeout = timeout
        idl = None
        try:
            helper = idlutils.get_schema_helper(connection, SCHEMA)
            for table, columns in COLUMNS.items():
                helper.register_columns(table, columns)
            idl = self._idl = _Idl(connection, helper)
            self._connection = ovs_connection.Connection(idl, timeout)
            # ovsdbapp keeps the connection on the API class, shared by all its instances: one class each.
            api_class = type("OvsApi", (_Api,), {})
            self._api: _Api = api_class(self._connection)
        except Exception as error:
            if idl is not None:
                idl.close()
            raise OvsdbError(f"cannot connect to OVSDB at {connection}: {error}") from None
        self._closed = False
        self._batch_lock = threading.Lock()
        self._batch: list[_Waiting] = []
        self._leading = False  # a caller is committing batches: others add their steps and wait

    # --- writes --------------------------------------------------------------------------------------

    def ensure_bridge(
        self,
        bridge: str,
        *,
        datapath_type: str,
        datapath_id: int,
        controller: str,
        tunnel_port: str = "tenet-tun",
        tunnel_ofport: int = 1,
        uplink: str | None = None,
        uplink_ofport: int = 2,
        connection_mode: str | None = "out-of-band",
    ) -> None:
        """`bridge` as Tenet wants it; only what differs is written (nothing, the second time).

        `connection_mode` is the controller's: out-of-band by default, since the controller is never reached
        through the bridge itself (in-band mode would add hidden flows and log warnings); None leaves it.
        """
        if not 0 <= datapath_id < 1 << 64:
            raise OvsdbError(f"datapath id {datapath_id:#x} does not fit in 64 bits")
        ports = [(tunnel_port, tunnel_ofport, "vxlan", {"remote_ip": "flow", "key": "flow"})]
        if uplink:
            ports.append((uplink, uplink_ofport, "", {}))
        self._commit(
            _EnsureBridge(
                self._api,
                bridge,
                datapath_type=datapath_type,
                datapath_id=f"{datapath_id:016x}",
                controller=controller,
                connection_mode=connection_mode,
                ports=ports,
            ),
            f"setting up bridge {bridge}",
        )
        for name, *_ in ports:
            problem = self._failure(name)
            if problem:
                raise OvsdbError(f"bridge {bridge}: OVS could not add port {name}: {problem}")

    def ensure_ssl(self, private_key: str, certificate: str, ca_cert: str) -> None:
        """OVS's SSL settings (what `ovs-vsctl set-ssl` writes), used for ssl: controller targets: absolute
        paths of this switch's PEM key and certificate and of the CA that signed the controller's; only what
        differs is written."""
        self._commit(_EnsureSsl(self._api, private_key, certificate, ca_cert), "setting the SSL files")

    def add_port(
        self, bridge: str, name: str, *, ofport: int, external_ids: dict[str, str], wait: bool = True
    ) -> int | None:
        """The Linux interface `name` as a port of `bridge`, in one transaction; the same call again is a no-op.

        Raises OvsdbError if OVS cannot open the interface (the port is then removed again if this call
        made it). `wait=False`: return once the database has the port, without waiting for ovs-vswitchd to
        apply it (nor making the transactions of other callers queue behind that wait); the caller waits
        later with `wait_applied(returned value)` and learns of a failure from `failure`. Returns the
        configuration number that includes the change (None if it changed nothing).
        """
        step = _AddPort(self._api, bridge, name, ofport=ofport, external_ids=dict(external_ids))
        step.wait = wait
        self._commit_batched(step, f"adding port {name} to {bridge}")
        if not wait:
            return step.next_cfg
        problem = self._failure(name)
        if problem:
            if step.created:
                self._commit(_DelPort(self._api, bridge, name), f"removing port {name} from {bridge}")
            raise OvsdbError(f"OVS could not add port {name} to {bridge}: {problem}")
        return step.next_cfg

    def wait_applied(self, next_cfg: int | None) -> None:
        """Until ovs-vswitchd has applied configuration `next_cfg` (see `add_port`); OvsdbError after the
        adapter's timeout."""
        if next_cfg is None:
            return
        deadline, applied = time.monotonic() + self.timeout, self._idl.applied
        while True:
            with applied:  # never held with the connection's lock: the connection thread takes them the other way
                seen = self._idl.applied_changes
            if self._read(lambda idl: self._api._ovs.cur_cfg) >= next_cfg:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OvsdbError(f"ovs-vswitchd has not applied the change within {self.timeout:g} s")
            with applied:
                if self._idl.applied_changes == seen:  # no news since the read above
                    applied.wait(remaining)

    def ensure_internal_port(self, bridge: str, name: str, *, ofport: int, mtu: int, mac: str) -> None:
        """An internal port `name` of `bridge` (an interface of this host's stack) with `ofport_request`,
        `mtu_request` (bytes; without it the port follows the bridge's smallest MTU) and MAC; idempotent.
        Raises OvsdbError if OVS cannot open it."""
        self._commit(_InternalPort(self._api, bridge, name, ofport=ofport, mtu=mtu, mac=mac), f"adding port {name}")
        problem = self._failure(name)
        if problem:
            raise OvsdbError(f"OVS could not add port {name} to {bridge}: {problem}")

    def del_port(self, bridge: str, name: str, *, owned_by: dict[str, str] | None = None) -> bool:
        """Remove port `name` from `bridge`; nothing to do if it is not there. With `owned_by`, only if its
        interface's `external_ids` hold every one of those items (checked in the same transaction), so a
        port someone else made under that name stays. Returns whether a port was removed."""
        step = _DelPort(self._api, bridge, name, owned_by=owned_by)
        self._commit_batched(step, f"removing port {name} from {bridge}")
        return step.changed

    # --- reads ---------------------------------------------------------------------------------------

    def ports(self, bridge: str) -> dict[str, dict[str, str]]:
        """Every port of `bridge` (none if there is no such bridge) -> its interface's external_ids."""

        def read(idl: Any) -> dict[str, dict[str, str]]:
            row = idlutils.row_by_value(idl, "Bridge", "name", bridge, None)
            if row is None:
                return {}
            found = {}
            for port in row.ports:
                interface = _interface_of(port)
                found[port.name] = dict(interface.external_ids) if interface is not None else {}
            return found

        return self._read(read)

    def flow_restore_wait(self) -> bool:
        """Whether `other_config:flow-restore-wait` is true in the Open_vSwitch table (see agent.restore)."""

        def read(idl: Any) -> bool:
            row = next(iter(idl.tables["Open_vSwitch"].rows.values()), None)
            return row is not None and _or_empty(row, "other_config", {}).get(FLOW_RESTORE_WAIT) == "true"

        return self._read(read)

    def controller_connected(self, bridge: str) -> bool:
        """Whether ovs-vswitchd reports a connection of `bridge` to one of its controllers as up
        (Controller.is_connected, ovs-vswitchd.conf.db(5)); False for an unknown bridge."""

        def read(idl: Any) -> bool:
            row = idlutils.row_by_value(idl, "Bridge", "name", bridge, None)
            controllers = _or_empty(row, "controller", []) if row is not None else []
            return any(_or_empty(controller, "is_connected", False) is True for controller in controllers)

        return self._read(read)

    def clear_flow_restore_wait(self) -> None:
        """Remove `other_config:flow-restore-wait` and wait for ovs-vswitchd to apply it; raises OvsdbError."""
        self._commit(_ClearFlowRestoreWait(self._api), f"clearing other_config:{FLOW_RESTORE_WAIT}")

    def ofport(self, name: str) -> int | None:
        """The OpenFlow port number OVS gave interface `name`; None if none (yet), failed or absent."""

        def read(idl: Any) -> int | None:
            row = idlutils.row_by_value(idl, "Interface", "name", name, None)
            number = _optional(row.ofport) if row is not None else None
            return number if number is not None and number > 0 else None

        return self._read(read)

    def failure(self, name: str) -> str | None:
        """Why OVS could not open interface `name` (its `error` column), if it tried and could not."""
        return self._failure(name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connection.stop(timeout=self.timeout)

    # --- plumbing ------------------------------------------------------------------------------------

    def _commit(self, step: _Step, doing: str) -> None:
        self._commit_steps([step], doing)

    def _commit_batched(self, step: _Step, doing: str) -> None:
        """Commit `step` together with the steps other threads are committing meanwhile: one transaction and
        one wait for ovs-vswitchd for a whole batch, not one each, so concurrent ADDs do not queue on the
        connection. The caller that finds no batch in progress commits what has gathered (it leads), then
        hands the lead to the first caller that gathered meanwhile; the others wait. A batch that fails is
        committed again step by step, so each step gets its own error."""
        waiting = _Waiting(step, doing)
        with self._batch_lock:
            self._batch.append(waiting)
            if not self._leading:
                self._leading = waiting.lead = True
        if not waiting.lead:
            waiting.wake.wait()  # committed by a leader, or made the leader
        if not waiting.committed:
            try:
                with self._batch_lock:
                    batch, self._batch = self._batch, []  # this caller's step is in it
                try:
                    self._commit_all(batch)
                except BaseException:  # never leave a waiter behind
                    for other in batch:
                        if not other.committed:
                            other.finish(OvsdbError(f"{other.doing}: the commit was interrupted"))
                    raise
            finally:
                with self._batch_lock:
                    if self._batch:
                        self._batch[0].lead = True
                        self._batch[0].wake.set()
                    else:
                        self._leading = False
        if waiting.error is not None:
            raise waiting.error

    def _commit_all(self, batch: list[_Waiting]) -> None:
        if len(batch) > 1:
            try:
                self._commit_steps([w.step for w in batch], f"{batch[0].doing} and {len(batch) - 1} more")
            except OvsdbError as error:  # one of them failed: commit them one by one, so each gets its own answer
                log.info("%d OVSDB changes committed together failed (%s): one by one now", len(batch), error)
            else:
                for waiting in batch:
                    waiting.finish(None)
                return
        for waiting in batch:
            try:
                self._commit(waiting.step, waiting.doing)
            except OvsdbError as error:
                waiting.finish(error)
            else:
                waiting.finish(None)

    def _commit_steps(self, steps: list[_Step], doing: str) -> None:
        if self._closed:
            raise OvsdbError(f"{doing}: the OVSDB connection is closed")
        try:
            with self._api.transaction(check_error=True, log_errors=False) as txn:
                txn.wait_applied = any(step.wait for step in steps)
                for step in steps:
                    txn.add(step)
        except OvsdbError as error:
            raise OvsdbError(f"{doing}: {error}") from None
        except Exception as error:  # ovsdbapp raises RuntimeError, TimeoutException, ...
            raise OvsdbError(f"{doing} ({self.target}): {error}") from None

    def _read(self, read: Callable[[Any], Any]) -> Any:
        if self._closed:
            raise OvsdbError("the OVSDB connection is closed")
        with self._connection.lock:  # the connection thread holds it while it updates the replica
            return read(self._connection.idl)

    def _failure(self, name: str) -> str | None:
        """Why OVS could not open interface `name`, if it could not."""

        def read(idl: Any) -> str | None:
            row = idlutils.row_by_value(idl, "Interface", "name", name, None)
            if row is None or _optional(row.ofport) != -1:
                return None
            return _optional(row.error) or "no OpenFlow port number"

        return self._read(read)


def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded (or built in) or can be loaded."""
    if Path("/sys/module/openvswitch").is_dir():
        return True
    modules = Path("/lib/modules") / os.uname().release
    for listing in ("modules.dep", "modules.builtin"):
        try:
            text = (modules / listing).read_text()
        except OSError:
            continue
        if re.search(r"(^|/)openvswitch\.ko(\.[a-z]+)?(:|$)", text, re.MULTILINE):
            return True
    return False


# --- ovsdbapp underneath ---------------------------------------------------------------------------------


class _Idl(ovs_connection.OvsdbIdl):
    """ovsdbapp's IDL without its per-row yield (time.sleep(0), for green threads: on native threads each one
    can wait a whole GIL switch interval while other threads run), telling `applied` waiters when
    ovs-vswitchd reports a configuration applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applied = threading.Condition()
        self.applied_changes = 0  # updates of the Open_vSwitch row seen

    def cooperative_yield(self) -> None:
        pass

    def notify(self, event: Any, row: Any, updates: Any = None) -> None:
        super().notify(event, row, updates)
        if row._table.name == "Open_vSwitch":
            with self.applied:
                self.applied_changes += 1
                self.applied.notify_all()


class _Transaction(transaction.Transaction):
    """ovsdbapp's ovs-vsctl transaction, except that next_cfg is bumped (and ovs-vswitchd waited for) only
    when a step changed something, and that ovs-vswitchd not catching up in time is an error."""

    wait_applied = True  # False: return once ovsdb-server has committed, not waiting for ovs-vswitchd

    def pre_commit(self, txn: Any) -> None:
        txn.expected_ifaces = set()

    def post_commit(self, txn: Any) -> None:
        super().post_commit(txn)
        try:
            next_cfg = txn.get_increment_new_value()
        except AttributeError:  # the python IDL has no value to give when nothing was incremented
            return
        if next_cfg is None:
            return
        for step in self.commands:
            step.next_cfg = next_cfg
        if not self.wait_applied:
            return
        idl, poller = self.api.idl, self.ovsdb_connection.poller
        while True:
            idl.run()
            if self.api._ovs.cur_cfg >= next_cfg:
                return
            remaining = self.time_remaining()
            if remaining <= 0:
                raise OvsdbError(f"ovs-vswitchd has not applied the change within {self.timeout:g} s")
            poller.timer_wait(remaining * 1000)
            idl.wait(poller)
            poller.block()


class _Api(impl_idl.OvsdbIdl):
    def create_transaction(self, check_error: bool = False, log_errors: bool = True, **_: Any) -> _Transaction:
        return _Transaction(self, self.ovsdb_connection, check_error=check_error, log_errors=log_errors)


class _Step(command.BaseCommand):
    """One idempotent change, run by the connection thread: writes only columns that differ."""

    wait = True  # the transaction waits for ovs-vswitchd to apply it (see _Transaction)
    next_cfg: int | None = None  # the configuration number ovs-vswitchd reaches once it has applied the step

    def run_idl(self, txn: Any) -> None:
        self.txn = txn
        self.changed = False
        self.apply()
        if self.changed and not getattr(txn, "next_cfg_incremented", False):  # once per transaction
            txn.next_cfg_incremented = True
            self.api._ovs.increment("next_cfg")

    def apply(self) -> None:
        raise NotImplementedError

    def set(self, row: Any, column: str, value: Any) -> None:
        try:
            current = getattr(row, column)
        except AttributeError:  # a row this transaction inserted, column not written yet
            current = None
        if current != value:
            row.verify(column)  # someone else changed it meanwhile: ovsdbapp retries the step
            setattr(row, column, value)
            self.changed = True

    def insert(self, table: str) -> Any:
        self.changed = True
        return self.txn.insert(self.api.tables[table])

    def bridge(self, name: str) -> Any:
        row = idlutils.row_by_value(self.api.idl, "Bridge", "name", name, None)
        if row is None:
            raise OvsdbError(f"there is no bridge {name}")
        return row

    def port(self, bridge: Any, name: str) -> tuple[Any, bool]:
        """Port `name` with its one interface on `bridge`, inserted if missing; and whether it was."""
        row = idlutils.row_by_value(self.api.idl, "Port", "name", name, None)
        if row is None:
            interface = self.insert("Interface")
            interface.name = name
            row = self.insert("Port")
            row.name = name
            row.interfaces = [interface]
            bridge.addvalue("ports", row)
            return row, True
        if row.uuid not in {port.uuid for port in bridge.ports}:
            raise OvsdbError(f"port {name} belongs to another bridge")
        if _interface_of(row) is None:
            raise OvsdbError(f"port {name} has no interface called {name}")
        return row, False


class _EnsureBridge(_Step):
    def __init__(
        self,
        api: Any,
        name: str,
        *,
        datapath_type: str,
        datapath_id: str,
        controller: str,
        connection_mode: str | None,
        ports: list[tuple[str, int, str, dict[str, str]]],
    ) -> None:
        super().__init__(api)
        self.name, self.datapath_type, self.datapath_id = name, datapath_type, datapath_id
        self.controller, self.connection_mode, self.ports = controller, connection_mode, ports

    def apply(self) -> None:
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.name, None)
        if bridge is None:
            bridge = self.insert("Bridge")
            bridge.name = self.name
            self.api._ovs.addvalue("bridges", bridge)
            local, _ = self.port(bridge, self.name)
            local.interfaces[0].type = "internal"
        self.set(bridge, "datapath_type", self.datapath_type)
        self.set(bridge, "fail_mode", ["secure"])
        self.set(bridge, "protocols", OPENFLOW)
        other_config = dict(_or_empty(bridge, "other_config", {}))
        other_config["datapath-id"] = self.datapath_id
        self.set(bridge, "other_config", other_config)
        controllers = _or_empty(bridge, "controller", [])
        if [row.target for row in controllers] != [self.controller]:
            row = self.insert("Controller")
            row.target = self.controller
            self.set(bridge, "controller", [row])
        else:
            row = controllers[0]
        if self.connection_mode is not None:
            self.set(row, "connection_mode", [self.connection_mode])
        for name, ofport, kind, options in self.ports:
            port, _ = self.port(bridge, name)
            interface = _interface_of(port)
            self.set(interface, "type", kind)
            self.set(interface, "options", {**_or_empty(interface, "options", {}), **options})
            self.set(interface, "ofport_request", [ofport])


class _EnsureSsl(_Step):
    def __init__(self, api: Any, private_key: str, certificate: str, ca_cert: str) -> None:
        super().__init__(api)
        self.files = {"private_key": private_key, "certificate": certificate, "ca_cert": ca_cert}

    def apply(self) -> None:
        rows = _or_empty(self.api._ovs, "ssl", [])
        if rows:
            row = rows[0]
        else:
            row = self.insert("SSL")
            self.api._ovs.ssl = [row]
        for column, value in self.files.items():
            self.set(row, column, value)
        self.set(row, "bootstrap_ca_cert", False)


class _AddPort(_Step):
    def __init__(self, api: Any, bridge: str, name: str, *, ofport: int, external_ids: dict[str, str]) -> None:
        super().__init__(api)
        self.bridge_name, self.name, self.ofport, self.external_ids = bridge, name, ofport, external_ids
        self.created = False

    def apply(self) -> None:
        port, self.created = self.port(self.bridge(self.bridge_name), self.name)
        interface = _interface_of(port)
        self.set(interface, "ofport_request", [self.ofport])
        self.set(interface, "external_ids", self.external_ids)


class _InternalPort(_Step):
    def __init__(self, api: Any, bridge: str, name: str, *, ofport: int, mtu: int, mac: str) -> None:
        super().__init__(api)
        self.bridge_name, self.name, self.ofport, self.mtu, self.mac = bridge, name, ofport, mtu, mac

    def apply(self) -> None:
        port, _ = self.port(self.bridge(self.bridge_name), self.name)
        interface = _interface_of(port)
        self.set(interface, "type", "internal")
        self.set(interface, "ofport_request", [self.ofport])
        self.set(interface, "mtu_request", [self.mtu])
        self.set(interface, "mac", [self.mac])


class _ClearFlowRestoreWait(_Step):
    def apply(self) -> None:
        for row in self.api.idl.tables["Open_vSwitch"].rows.values():
            other_config = dict(_or_empty(row, "other_config", {}))
            if other_config.pop(FLOW_RESTORE_WAIT, None) is not None:
                self.set(row, "other_config", other_config)


class _DelPort(_Step):
    def __init__(self, api: Any, bridge: str, name: str, *, owned_by: dict[str, str] | None = None) -> None:
        super().__init__(api)
        self.bridge_name, self.name, self.owned_by = bridge, name, owned_by or {}

    def apply(self) -> None:
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge_name, None)
        port = idlutils.row_by_value(self.api.idl, "Port", "name", self.name, None)
        if bridge is None or port is None or port.uuid not in {row.uuid for row in bridge.ports}:
            return
        interface = _interface_of(port)
        ids = dict(interface.external_ids) if interface is not None else {}
        if any(ids.get(key) != value for key, value in self.owned_by.items()):
            return  # not the owner's: left alone
        if self.owned_by:
            interface.verify("external_ids")  # changed meanwhile: ovsdbapp retries the step
        bridge.delvalue("ports", port)
        for interface in port.interfaces:
            interface.delete()
        port.delete()
        self.changed = True


@dataclass
class _Waiting:
    """A step waiting to be committed with others (`Ovsdb._commit_batched`)."""

    step: _Step
    doing: str
    wake: threading.Event = field(default_factory=threading.Event)  # committed, or made the leader
    lead: bool = False
    committed: bool = False
    error: OvsdbError | None = None

    def finish(self, error: OvsdbError | None) -> None:
        self.error, self.committed = error, True
        self.wake.set()


def _interface_of(port: Any) -> Any:
    """The port's interface of the same name (a pod port has just that one)."""
    for interface in port.interfaces:
        if interface.name == port.name:
            return interface
    return port.interfaces[0] if len(port.interfaces) == 1 else None


def _or_empty(row: Any, column: str, empty: Any) -> Any:
    try:
        return getattr(row, column)
    except AttributeError:  # inserted by this transaction and not written yet
        return empty


def _optional(value: Any) -> Any:
    """An optional column's value: the IDL gives [] or [x]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value
