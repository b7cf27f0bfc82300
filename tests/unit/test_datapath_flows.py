"""PolicyFlowPurge's own logic with a scripted monitor: one purge per burst of events, other lines ignored, a
purge after the monitor was restarted, nothing left running after stop, a refused purge not counted."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from agent import datapath_flows
from agent.datapath_flows import PolicyFlowPurge
from lab.ovs import wait_for


class FakeMonitor:
    """A monitor process whose output lines the test feeds; None ends it (exit status 0)."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.returncode: int | None = None
        self.terminated = threading.Event()
        self.stdout = self._lines()

    def _lines(self) -> Iterator[str]:
        while (line := self.lines.get()) is not None:
            yield line
        self.returncode = 0

    def poll(self) -> int | None:
        return self.returncode

    def wait(self) -> int:
        return 0

    def terminate(self) -> None:
        self.terminated.set()
        self.lines.put(None)


class Harness:
    def __init__(self) -> None:
        self.monitors: list[FakeMonitor] = []
        self.commands: list[Sequence[str]] = []
        self.calls: list[tuple[str, ...]] = []
        self.refuse = False

    def spawn(self, args: Sequence[str]) -> FakeMonitor:
        self.commands.append(args)
        self.monitors.append(FakeMonitor())
        return self.monitors[-1]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(args, 1 if self.refuse else 0, "", "refused" if self.refuse else "")


def started(harness: Harness, **kw: Any) -> PolicyFlowPurge:
    purge = PolicyFlowPurge("/run/ovs/br-int.mgmt", "/run/ovs", [4, 8], spawn=harness.spawn, run=harness.run, **kw)
    purge.start()
    wait_for(lambda: bool(harness.monitors), "the monitor", timeout=5)
    return purge


def test_one_purge_per_burst_and_nothing_for_other_lines() -> None:
    harness = Harness()
    purge = started(harness)
    try:
        assert harness.commands[0] == [
            "ovs-ofctl", "-O", "OpenFlow13", "monitor", "unix:/run/ovs/br-int.mgmt",
            "watch:table=4,!initial", "watch:table=8,!initial",
        ]  # fmt: skip
        monitor = harness.monitors[0]
        monitor.lines.put("ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x6):\n")
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert harness.calls == []
        for _ in range(50):  # one bundle's events
            monitor.lines.put(" event=ADDED table=8 cookie=0x10b ip actions=drop\n")
        wait_for(lambda: purge.purges == 1, "one purge", timeout=5)
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert harness.calls == [
            ("env", "OVS_RUNDIR=/run/ovs", "ovs-appctl", "-t", "ovs-vswitchd", "revalidator/purge")
        ]
        monitor.lines.put(" event=DELETED reason=delete table=4 cookie=0x10b ip\n")
        wait_for(lambda: purge.purges == 2, "a second purge", timeout=5)
    finally:
        purge.stop()
    assert harness.monitors[0].terminated.is_set()


def test_a_burst_longer_than_the_delay_is_purged_before_it_ends() -> None:
    harness = Harness()
    purge = started(harness)
    try:
        deadline = time.monotonic() + 4 * datapath_flows.MAX_DELAY_S
        while time.monotonic() < deadline:  # events closer than QUIET_S, for four times MAX_DELAY_S
            harness.monitors[0].lines.put(" event=MODIFIED table=8 cookie=0x1 ip\n")
            time.sleep(datapath_flows.QUIET_S / 4)
        assert purge.purges >= 2
    finally:
        purge.stop()


def test_a_restarted_monitor_purges_once_and_a_refused_purge_is_not_counted(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "RESTART_S", 0.05)
    harness = Harness()
    purge = started(harness)
    try:
        harness.monitors[0].lines.put(None)  # ovs-vswitchd restarted: the monitor exits
        wait_for(lambda: len(harness.monitors) == 2 and purge.purges == 1, "a new monitor and a purge", timeout=5)
        harness.refuse = True
        harness.monitors[1].lines.put(" event=ADDED table=4 cookie=0x1 ip\n")
        wait_for(lambda: len(harness.calls) == 2, "the refused purge", timeout=5)
        assert purge.purges == 1
    finally:
        purge.stop()
    assert all(m.terminated.is_set() or m.returncode == 0 for m in harness.monitors)
