"""The purge of the userspace datapath's flows after a policy-table change (agent/datapath_flows.py), on a real
ovs-vswitchd: a change to a watched table empties the datapath, one to another table leaves it alone, and the
pods talk on afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from agent.main import start_policy_flow_purge
from lab.ovs import OvsNode, pid_alive, wait_for

PODS = [
    {"id": f"p{i}", "ip": f"10.9.0.{i}", "mac": f"02:00:00:00:09:0{i}", "port_name": f"tdf{i}", "ofport": i}
    for i in (1, 2)
]
ICMP = re.compile(r"proto=1[,/)]")  # IPv4 protocol 1 (with -m, a masked field reads proto=1/0xff)
WATCHED = 8  # ingress_policy; l3_gateway (5) is not watched


def datapath_flows(node: OvsNode) -> set[str]:
    """The ufids of the datapath's flows of ping's packets (IPv4 ICMP). A ufid is a hash of the flow's key, so
    a flow the pods' own background traffic (IPv6 neighbour discovery, ...) makes again comes back with the
    ufid it had: only the ping's flows tell what a purge removed."""
    lines = node.appctl("dpctl/dump-flows", "-m").splitlines()
    return {
        line.split(",", 1)[0] for line in lines if "ufid:" in line and "eth_type(0x0800)" in line and ICMP.search(line)
    }


def test_a_policy_table_change_purges_the_datapath_and_others_do_not(ovs_node: OvsNode) -> None:
    ovs_node.vsctl(
        "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "protocols=OpenFlow13",
        "fail_mode=secure",
    )  # fmt: skip
    one, two = (ovs_node.add_pod(pod, gateway="10.9.0.254", prefix=24, mtu=1500) for pod in PODS)
    ovs_node.ofctl("add-flow", f"table=0,priority=1,actions=goto_table:{WATCHED}")
    ovs_node.ofctl("add-flow", f"table={WATCHED},priority=1,actions=NORMAL")
    purge = start_policy_flow_purge(f"{ovs_node.dir}/br-int.mgmt", str(ovs_node.dir))  # as the agent does
    assert purge is not None and WATCHED in purge.tables
    try:
        # Once OVS answered the monitor's watch (every change reported from then on): a purge, for before, and
        # its second.
        wait_for(lambda: purge.purges == 2, "the first purge and its second", timeout=10)
        assert one.ping(two.ip, count=2, wait=2)
        before = datapath_flows(ovs_node)
        assert before
        # Another table: nothing purged (the datapath's own flows live 10 s).
        ovs_node.ofctl("add-flow", "table=5,priority=9,ip,nw_src=10.9.9.9,actions=drop")
        time.sleep(0.5)
        assert (purge.purges, before <= datapath_flows(ovs_node)) == (2, True)
        # A policy table: purged within the debounce, none of the flows from before left.
        ovs_node.ofctl("add-flow", f"table={WATCHED},priority=9,ip,nw_src=10.9.9.9,actions=drop")
        wait_for(lambda: purge.purges >= 3, "a purge", timeout=5)
        assert not before & datapath_flows(ovs_node)
        assert one.ping(two.ip, count=1, wait=2)
        process = purge._process
    finally:
        purge.stop()
    assert process is not None and not pid_alive(process.pid)


AGENT = """
import sys, threading
from agent.main import start_policy_flow_purge
from lab.ovs import wait_for
purge = start_policy_flow_purge(sys.argv[1], sys.argv[2])
wait_for(lambda: purge._process is not None, "the monitor", timeout=10)
print(purge._process.pid, flush=True)
threading.Event().wait()
"""


def test_the_monitor_ends_with_an_agent_killed_by_sigkill(ovs_node: OvsNode) -> None:
    ovs_node.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, f"{ovs_node.dir}/br-int.mgmt", str(ovs_node.dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    monitor = 0
    try:
        assert agent.stdout is not None
        monitor = int(agent.stdout.readline())
        assert pid_alive(monitor)
    finally:
        agent.kill()
        agent.wait()
    # The orphan is ended by its parent-death signal; PID 1 here does not reap, so wait for exit or zombie.
    wait_for(lambda: not pid_alive(monitor), "the monitor to end with its agent", timeout=10)


def test_the_monitor_needs_no_default_rundir(ovs_node: OvsNode, tmp_path: Path, monkeypatch) -> None:
    """OVS's default rundir (OVS_RUNDIR, else /var/run/openvswitch) may not exist on a node: an ovs-vswitchd
    with a rundir of its own, or the OVS service never started. The monitor must stay up there and see the
    policy tables' changes (`ovs-ofctl monitor` without `--unixctl=none` exits right after its watch is
    answered: every change after it went unseen until its restart)."""
    ovs_node.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev")
    monkeypatch.setenv("OVS_RUNDIR", str(tmp_path / "missing"))  # what ovs-ofctl takes for its default
    purge = start_policy_flow_purge(f"{ovs_node.dir}/br-int.mgmt", str(ovs_node.dir))
    try:
        wait_for(lambda: purge.purges == 2, "the first purge and its second", timeout=10)
        first = purge._process
        ovs_node.ofctl("add-flow", f"table={WATCHED},priority=9,ip,nw_src=10.9.9.9,actions=drop")
        wait_for(lambda: purge.purges >= 3, "a purge", timeout=5)
        assert purge._process is first and first.poll() is None
    finally:
        purge.stop()
