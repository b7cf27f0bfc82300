"""The gateway's iptables chains in a network namespace of their own (root): NodePortWatch's repair puts a
deleted jump, a jump no longer first and a flushed chain back (agent/gateway.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from agent.gateway import Gateway, plan_from
from lab.ovs import sh
from tests.unit.test_agent_gateway_rules import DOC


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"tgwr-{os.getpid()}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def test_repair_puts_the_chains_and_their_jumps_back_first(netns: str) -> None:
    commands: list[str] = []

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        commands.append(args[0])
        argv = ["ip", "netns", "exec", netns, *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)

    def iptables(*args: str) -> str:
        done = run("iptables", "-w", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def first(table: str, builtin: str) -> str:
        return next(line for line in iptables("-t", table, "-S", builtin).splitlines() if line.startswith("-A "))

    plan = plan_from(DOC, IPv4Address("192.168.100.1"))
    assert plan is not None
    gateway = Gateway(None, "br-int", run=run)
    gateway._iptables(plan.rules())
    assert gateway.drifted(plan) == []
    jump = ("-m", "comment", "--comment", "tenet gateway", "-j", "TENET-FORWARD")
    iptables("-D", "FORWARD", *jump)  # deleted
    iptables("-t", "nat", "-I", "POSTROUTING", "1", "-j", "RETURN")  # portmap's or kube-proxy's chain first: fine
    iptables("-t", "mangle", "-F", "TENET-FORWARD")  # flushed
    commands.clear()
    assert sorted(gateway.repair(plan)) == [
        "filter FORWARD does not jump to TENET-FORWARD first",
        "mangle TENET-FORWARD does not hold its 2 rule(s)",
    ]
    # read, then one transaction per table: no chain is ever seen emptied for refilling, no jump taken out
    assert sorted(commands) == ["iptables-restore"] * 3 + ["iptables-save"] * 6
    assert gateway.drifted(plan) == []
    assert first("filter", "FORWARD").endswith("-j TENET-FORWARD")
    # another program's nat rule first is not drift (masquerades compose); this repair, for the filter and
    # mangle drift, put every jump back first all the same
    assert iptables("-t", "nat", "-S", "POSTROUTING").count("TENET-POSTROUTING") == 1
    iptables("-t", "nat", "-I", "POSTROUTING", "1", "-j", "RETURN")
    assert gateway.drifted(plan) == []  # another program's nat rule first is not drift
    iptables("-t", "nat", "-D", "POSTROUTING", "-j", "RETURN")
    iptables("-t", "nat", "-D", "POSTROUTING", "-j", "RETURN")
    iptables("-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", "tenet gateway", "-j", "TENET-POSTROUTING")
    assert gateway.repair(plan) == ["nat POSTROUTING does not jump to TENET-POSTROUTING"]
    assert iptables("-t", "nat", "-S", "POSTROUTING").count("TENET-POSTROUTING") == 1
    assert len(iptables("-t", "mangle", "-S", "TENET-FORWARD").splitlines()) == 3  # -N and its two rules
    iptables("-F")  # everything of filter
    assert gateway.repair(plan) and gateway.drifted(plan) == []
