"""On the userspace datapath, the datapath's flows are purged after every change to the tables that decide what
traffic may pass: the NetworkPolicy tables, and egress_gateway, where a network's node ports are opened.

Why: in the 3-node lab, with UDP probes, a connection a new policy denies was answered (or one it allows
dropped) for seconds on end, in about one of 200 policy changes, while the switch held exactly the
controller's flows and `ovs-appctl ofproto/trace` of that datapath flow's own key gave the right verdict:
ovs-vswitchd's userspace datapath (dpif-netdev; OVS 3.1 as Debian 12 ships it) kept a datapath flow
(megaflow) with the actions an earlier version of the tables gave it, and kept it for as long as packets
kept it alive (its idle timeout, 10 s, never came). The likely cause, in OVS's source: when the tables
change, the revalidators translate every datapath flow again and modify those whose actions changed, and
dpif-netdev finds the flow to modify by a lookup of its key in the datapath's classifier, not by its flow
id, so where two megaflows overlap the other one may be modified. After `ct(table=...)` overlaps are
ordinary: the megaflows of one recirculation id are wildcarded by whatever each policy's flows looked at.
The kernel datapath modifies a flow by its id.

So, on the userspace datapath only, the agent watches those tables of its bridge with an OpenFlow flow
monitor (`ovs-ofctl --unixctl=none monitor BRIDGE.mgmt watch:!initial`, OVS's flow monitor extension, printed as
ONFST_FLOW_MONITOR in OpenFlow 1.3; the events of those tables picked out of it) and, once a burst of
changes is over (QUIET_S without an event, at most MAX_DELAY_S after its first, and at least MIN_INTERVAL_S
after the last purge: a tenant changing its policies without pause costs every tenant of the node at most
four purges a second, not one per change), runs `ovs-appctl
revalidator/purge` and `ovs-appctl dpctl/del-flows`: the datapath's flows go, those the revalidators track
and any they do not, and packets after it are translated again from the tables as they are now; and once
more AGAIN_S later, for a flow an upcall translated from the tables as they were and installed around the
first. A purge that failed (ovs-vswitchd busy or restarting) is tried again after RETRY_S, doubled for every
failure in a row up to MAX_RETRY_S, until one succeeds. It purges once as well as soon as OVS has
answered the monitor's watch (from then on no change goes unseen), for what changed before: at the
agent's start and after each restart of the monitor (an ovs-vswitchd restarted), which comes after
RESTART_S, doubled for every start in a row that did not get that far, up to MAX_RESTART_S. A purge costs
one upcall per active flow. What it leaves: the moments between a change and its purge (tens of ms), and
changes to the other tables (ports, addresses, routes; README, "On the userspace datapath").
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from agent.gateway import appctl_args

log = logging.getLogger(__name__)

QUIET_S = 0.01  # a bundle's events arrive together: purge once they stop
MAX_DELAY_S = 0.1  # ... but no later than this after the first
MIN_INTERVAL_S = 0.25  # ... and no sooner than this after the last purge: a storm of changes, 4 purges a second
AGAIN_S = 0.5  # and purge once more this long after
RETRY_S = 0.5  # a purge ovs-vswitchd refused or did not answer: again after this, doubled up to MAX_RETRY_S
MAX_RETRY_S = 8.0
RESTART_S = 1.0  # doubled for every start in a row that did not get its watch answered, up to MAX_RESTART_S
MAX_RESTART_S = 8.0
PURGE_TIMEOUT_S = 10.0
PURGE_FAILED = "purging the datapath's flows after a policy change"
_TABLE = re.compile(r" table=(\d+) ")  # in an event line: " event=ADDED table=8 cookie=... "
# The answer to the watch request: a FLOW_MONITOR reply with the request's own xid (events come with xid 0).
_REPLY = re.compile(r"FLOW_MONITOR reply .*\(xid=0x0*[1-9a-f][0-9a-f]*\)")


def _spawn(args: Sequence[str]) -> subprocess.Popen[str]:
    # The monitor prints the events on stderr: read both. Through setpriv (util-linux) it gets SIGTERM when the
    # agent dies, also of SIGKILL, instead of living on beside the next agent's.
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    return subprocess.Popen(
        [*prefix, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=PURGE_TIMEOUT_S, check=False)


class PolicyFlowPurge:
    """Purges the datapath's flows after the flows of `tables` (OpenFlow table ids) change (module doc).

    `mgmt_socket`: the bridge's management socket (`<rundir>/br-int.mgmt`); `rundir`: ovs-vswitchd's rundir,
    whose `ovs-vswitchd.ctl` (else the pidfile's) takes the purge. `spawn` and `run` run the monitor and
    ovs-appctl (subprocess by default). `purges` counts the purges done.
    """

    def __init__(
        self,
        mgmt_socket: str,
        rundir: str,
        tables: Sequence[int],
        *,
        spawn: Callable[[Sequence[str]], Any] = _spawn,
        run: Callable[..., subprocess.CompletedProcess[str]] = _run,
    ) -> None:
        self.mgmt_socket, self.rundir, self.tables = mgmt_socket, rundir, list(tables)
        self.spawn, self.run = spawn, run
        self.purges = 0
        self._stopped = threading.Event()
        self._changed = threading.Condition()
        self._first: float | None = None  # monotonic time of the first event not purged yet
        self._last = 0.0
        self._process: Any = None
        self._threads: list[threading.Thread] = []

    def command(self) -> list[str]:
        """The monitor's command line: one watch of every table (ovs-ofctl takes one `watch:` only, and a watch
        one table at most), the tables' events picked out of its output (`_read`). `--unixctl=none`: without
        it, `ovs-ofctl monitor` opens a control socket of its own in OVS's default rundir (OVS_RUNDIR, else
        /var/run/openvswitch) once its watch is answered, and exits with status 1 where that directory does
        not exist or is not writable (an ovs-vswitchd with another rundir, a node where the OVS service never
        ran): restarted every second, each time after a purge, and blind in between. Nothing sends it
        commands."""
        return [
            "ovs-ofctl", "-O", "OpenFlow13", "--unixctl=none", "monitor", f"unix:{self.mgmt_socket}", "watch:!initial"
        ]  # fmt: skip

    def start(self) -> PolicyFlowPurge:
        for target, name in ((self._watch, "policy-flow-monitor"), (self._purge_loop, "datapath-purge")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Ends the monitor (and waits for it) and both threads."""
        self._stopped.set()
        with self._changed:
            self._changed.notify_all()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        for thread in self._threads:
            thread.join(timeout=5)

    def changed(self) -> None:
        """A change to the watched tables: a purge follows within MAX_DELAY_S, or MIN_INTERVAL_S after the start
        of the last purge if that is later."""
        now = time.monotonic()
        with self._changed:
            if self._first is None:
                self._first = now
            self._last = now
            self._changed.notify_all()

    def purge(self) -> bool:
        """Now: `ovs-appctl revalidator/purge` (every datapath flow the revalidators know of, with its record)
        and then `ovs-appctl dpctl/del-flows` (every flow of the datapath, known or not). False (logged) when
        ovs-vswitchd refused or did not answer."""
        for command in ("revalidator/purge", "dpctl/del-flows"):
            try:
                done = self.run(*appctl_args(self.rundir, command))
            except (OSError, subprocess.TimeoutExpired) as error:
                log.warning("%s (%s): %s", PURGE_FAILED, command, error)
                return False
            if done.returncode != 0:
                log.warning("%s (%s): %s", PURGE_FAILED, command, done.stderr.strip() or done.returncode)
                return False
        self.purges += 1
        return True

    def _watch(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            subscribed = False
            try:
                process = self._process = self.spawn(self.command())
            except OSError as error:
                reason = str(error)
            else:
                if self._stopped.is_set():  # stopped while it started
                    process.terminate()
                try:
                    subscribed = self._read(process.stdout)
                except Exception as error:  # an unreadable line: the monitor is started again
                    log.warning("reading the flow monitor: %s", error)
                    process.terminate()
                process.wait()
                reason = f"exit status {process.returncode}"
            if self._stopped.is_set():
                return
            failures = 0 if subscribed else failures + 1
            if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... failure in a row
                log.warning("the flow monitor of %s: %s; %d failure(s) in a row", self.mgmt_socket, reason, failures)
            self._stopped.wait(min(RESTART_S * 2 ** min(failures, 8), MAX_RESTART_S))

    def _read(self, stream: IO[str]) -> bool:
        """Follow the monitor's output: once OVS has answered the watch (then nothing can change unseen), a purge
        for what changed before; then one for each burst of events in `tables`. True if it got that far."""
        answered = False
        watched = {str(table) for table in self.tables}
        for line in stream:
            if line.startswith(" event="):
                found = _TABLE.search(line)
                if found is not None and found.group(1) in watched:
                    self.changed()
            elif not answered and _REPLY.search(line):
                answered = True
                self.changed()
        return answered

    def _purge_loop(self) -> None:
        again: float | None = None  # when the second purge of the last burst, or a failed one's retry, is due
        failures = 0  # purges failed in a row
        purged = float("-inf")  # when the last purge started
        owed = False  # a burst's purge failed: its second purge is still owed once a retry succeeds
        while True:
            with self._changed:
                while self._first is None and not self._stopped.is_set():
                    if again is not None and time.monotonic() >= again:
                        break
                    self._changed.wait(None if again is None else max(0.0, again - time.monotonic()))
                if self._stopped.is_set():
                    return
                burst = self._first is not None
                if burst:
                    first = self._first or 0.0
                    while not self._stopped.is_set():
                        now = time.monotonic()
                        due = max(min(self._last + QUIET_S, first + MAX_DELAY_S), purged + MIN_INTERVAL_S)
                        if now >= due:
                            break
                        self._changed.wait(due - now)
                    self._first = None
            purged = time.monotonic()
            try:
                done = self.purge()
            except Exception:  # never let the purges end
                log.exception("%s", PURGE_FAILED)
                done = False
            owed = owed or burst
            if not done:  # the stale flows are still there: until a purge succeeds
                failures += 1
                again = time.monotonic() + min(RETRY_S * 2 ** min(failures - 1, 8), MAX_RETRY_S)
            else:
                failures = 0
                # Once more AGAIN_S after a burst's purge, for flows an upcall translated from the tables as they
                # were and installed around the first.
                again = time.monotonic() + AGAIN_S if owed else None
                owed = False
