"""PolicyFlowPurge's own logic with a scripted monitor: a purge once OVS answered every watch, one per burst of
events, other lines ignored, a purge after the monitor was restarted and answered, none for a monitor that
keeps failing (which is started again ever more slowly), nothing left running after stop, a refused purge
not counted and tried again until one succeeds, a storm of changes purged at most every MIN_INTERVAL_S."""

from __future__ import annotations

import itertools
import queue
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

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


@pytest.fixture(autouse=True)
def no_second_purge(monkeypatch: Any) -> None:
    """Each burst's second purge (AGAIN_S later) only where a test wants it."""
    monkeypatch.setattr(datapath_flows, "AGAIN_S", 3600.0)


REPLIES = ["ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x6):\n", "ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x7):\n"]


class Harness:
    def __init__(self) -> None:
        self.monitors: list[FakeMonitor] = []
        self.commands: list[Sequence[str]] = []
        self.calls: list[tuple[str, ...]] = []
        self.times: list[float] = []  # monotonic time of each call
        self.refuse = False

    def spawn(self, args: Sequence[str]) -> FakeMonitor:
        self.commands.append(args)
        self.monitors.append(FakeMonitor())
        return self.monitors[-1]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        self.times.append(time.monotonic())
        return subprocess.CompletedProcess(args, 1 if self.refuse else 0, "", "refused" if self.refuse else "")


def started(harness: Harness, *, answer: bool = True) -> PolicyFlowPurge:
    """Started; with `answer`, OVS answers both watches and the first purge is done."""
    purge = PolicyFlowPurge("/run/ovs/br-int.mgmt", "/run/ovs", [4, 8], spawn=harness.spawn, run=harness.run)
    purge.start()
    wait_for(lambda: bool(harness.monitors), "the monitor", timeout=5)
    if answer:
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert harness.calls == []  # nothing before OVS answered
        for reply in REPLIES:
            harness.monitors[0].lines.put(reply)
        wait_for(lambda: purge.purges == 1, "the purge once the watches are answered", timeout=5)
    return purge


def test_one_purge_per_burst_and_nothing_for_other_lines() -> None:
    harness = Harness()
    purge = started(harness)
    try:
        assert harness.commands[0] == [
            "ovs-ofctl", "-O", "OpenFlow13", "--unixctl=none", "monitor", "unix:/run/ovs/br-int.mgmt",
            "watch:!initial",
        ]  # fmt: skip
        monitor = harness.monitors[0]
        monitor.lines.put("ONFST_FLOW_MONITOR reply (OF1.3) (xid=0x0):\n")  # the header of events, not an answer
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert purge.purges == 1
        monitor.lines.put(" event=ADDED table=7 cookie=0x107 reg0=0x2,dl_dst=02:00:00:00:00:01 actions=goto_table:8\n")
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert purge.purges == 1  # a table not watched
        for _ in range(50):  # one bundle's events
            monitor.lines.put(" event=ADDED table=8 cookie=0x10b ip actions=drop\n")
        wait_for(lambda: purge.purges == 2, "one purge", timeout=5)
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        appctl = ("env", "OVS_RUNDIR=/run/ovs", "ovs-appctl", "-t", "ovs-vswitchd")
        assert harness.calls == [(*appctl, "revalidator/purge"), (*appctl, "dpctl/del-flows")] * 2
        monitor.lines.put(" event=DELETED reason=delete table=4 cookie=0x10b ip\n")
        wait_for(lambda: purge.purges == 3, "a third purge", timeout=5)
    finally:
        purge.stop()
    assert harness.monitors[0].terminated.is_set()


def test_a_storm_of_changes_is_purged_while_it_lasts_at_most_every_min_interval() -> None:
    harness = Harness()
    purge = started(harness)
    try:
        deadline = time.monotonic() + 4 * datapath_flows.MIN_INTERVAL_S
        while time.monotonic() < deadline:  # events closer than QUIET_S, for four times MIN_INTERVAL_S
            harness.monitors[0].lines.put(" event=MODIFIED table=8 cookie=0x1 ip\n")
            time.sleep(datapath_flows.QUIET_S / 4)
        assert 3 <= purge.purges <= 6
        starts = [t for t, call in zip(harness.times, harness.calls, strict=True) if call[-1] == "revalidator/purge"]
        assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.9 * datapath_flows.MIN_INTERVAL_S
    finally:
        purge.stop()


def test_a_refused_purge_is_tried_again_until_one_succeeds(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "RETRY_S", 0.05)
    harness = Harness()
    purge = started(harness)
    try:
        harness.refuse = True  # ovs-vswitchd busy or restarting
        harness.monitors[0].lines.put(" event=ADDED table=4 cookie=0x1 ip\n")
        wait_for(lambda: len(harness.calls) >= 2 + 3, "three refused purges", timeout=5)
        assert purge.purges == 1
        gaps = [b - a for a, b in itertools.pairwise(harness.times[2:])]
        assert gaps[-1] > 1.5 * gaps[0]  # 0.05 s, 0.1 s, ...
        harness.refuse = False
        wait_for(lambda: purge.purges == 2, "the purge once ovs-vswitchd answers", timeout=5)
        calls = len(harness.calls)
        time.sleep(3 * datapath_flows.RETRY_S)
        assert len(harness.calls) == calls  # and no more
    finally:
        purge.stop()


def test_a_restarted_monitor_purges_once_answered_and_a_refused_purge_is_not_counted(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "RESTART_S", 0.05)
    harness = Harness()
    purge = started(harness)
    try:
        harness.monitors[0].lines.put(None)  # ovs-vswitchd restarted: the monitor exits
        wait_for(lambda: len(harness.monitors) == 2, "a new monitor", timeout=5)
        time.sleep(3 * datapath_flows.MAX_DELAY_S)
        assert purge.purges == 1  # not before its watches are answered
        for reply in REPLIES:
            harness.monitors[1].lines.put(reply)
        wait_for(lambda: purge.purges == 2, "the purge after the restart", timeout=5)
        harness.refuse = True
        harness.monitors[1].lines.put(" event=ADDED table=4 cookie=0x1 ip\n")
        wait_for(lambda: len(harness.calls) == 5, "the refused purge", timeout=5)  # its first command refused
        assert purge.purges == 2
    finally:
        purge.stop()
    assert all(m.terminated.is_set() or m.returncode == 0 for m in harness.monitors)


def test_a_monitor_that_keeps_failing_purges_nothing_and_is_started_ever_more_slowly(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "RESTART_S", 0.02)
    harness = Harness()
    purge = started(harness, answer=False)
    try:
        starts: list[float] = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if len(harness.monitors) > len(starts):
                starts.append(time.monotonic())
                harness.monitors[-1].lines.put("ovs-ofctl: unix:/run/ovs/br-int.mgmt: connection failed\n")
                harness.monitors[-1].lines.put(None)
            time.sleep(0.005)
        assert harness.calls == []
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(gaps) >= 3 and gaps[-1] > 2 * gaps[0]  # 0.04 s, 0.08 s, 0.16 s, ...
    finally:
        purge.stop()


def test_a_burst_is_purged_once_more_after_a_while_and_only_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "AGAIN_S", 0.3)
    harness = Harness()
    purge = started(harness)
    try:
        wait_for(lambda: purge.purges == 2, "the first purge's second", timeout=5)
        harness.monitors[0].lines.put(" event=ADDED table=8 cookie=0x10b ip actions=drop\n")
        wait_for(lambda: purge.purges >= 3, "the burst's purge", timeout=5)
        wait_for(lambda: purge.purges >= 4, "its second", timeout=5)
        # Timed by the purges' own calls (two each: calls 4-5 the burst's, 6-7 its second), not by when this
        # thread noticed them.
        assert harness.times[6] - harness.times[4] >= 0.25
        time.sleep(1.0)
        assert purge.purges == 4  # no third
    finally:
        purge.stop()


def test_a_burst_whose_purge_failed_gets_its_second_purge_after_the_retry(monkeypatch: Any) -> None:
    monkeypatch.setattr(datapath_flows, "RETRY_S", 0.05)
    monkeypatch.setattr(datapath_flows, "AGAIN_S", 0.3)
    harness = Harness()
    purge = started(harness)
    try:
        wait_for(lambda: purge.purges == 2, "the first purge's second", timeout=5)
        harness.refuse = True
        harness.monitors[0].lines.put(" event=ADDED table=8 cookie=0x10b ip actions=drop\n")
        wait_for(lambda: len(harness.calls) == 5, "the burst's purge, refused", timeout=5)
        harness.refuse = False
        wait_for(lambda: purge.purges >= 3, "its retry", timeout=5)
        wait_for(lambda: purge.purges >= 4, "the burst's second purge", timeout=5)
        # Calls 5-6 are the retry, 7-8 the second purge (call 4 was refused).
        assert harness.times[7] - harness.times[5] >= 0.25
        time.sleep(1.0)
        assert purge.purges == 4  # no third
    finally:
        purge.stop()
