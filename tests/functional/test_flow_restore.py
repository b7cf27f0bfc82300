"""A hitless restart of ovs-vswitchd with `flow-restore-wait` (real OVS, agent, controller and pods; root).

ovs-vswitchd restarts with other_config:flow-restore-wait=true, as ovs-ctl does it: it connects to no
controller until the flag goes. The agent relays the bridge's management socket to the controller, which
replays the node's flows; then the agent clears the flag, and the switch connects to the controller itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.restore import _Relay, _tcp_address, mgmt_socket_path
from lab.cni import Network, TenetNode, exec_plugin
from lab.ovs import Pod, pid_alive, sh, tcp_connects, wait_for


def _control_index() -> int:
    """The node's control /30 is 10.254.INDEX.0: one of this run's own, not the 10.254.1.0 other runs use."""
    return 100 + (os.getpid() + 50) % 150


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[TenetNode, Pod, Pod]]:
    tenet = TenetNode(tmp_path, [Network("blue", "web", 5001, "10.1.0.0/24")], index=_control_index())
    names: list[str] = []
    try:
        tenet.start()
        pods = []
        for name in ("fr-a", "fr-b"):
            sh("ip", "netns", "add", name)
            names.append(name)
            netns = f"/var/run/netns/{name}"
            call = exec_plugin(tenet.plugin, "ADD", tenet.net_config(), container=f"c-{name}", netns=netns)
            assert call.code == 0, call
            pods.append(Pod(name, name, call.out["ips"][0]["address"].split("/")[0]))
        yield tenet, pods[0], pods[1]
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
        tenet.close()


def _flag(tenet: TenetNode) -> str:
    return tenet.node.vsctl("--if-exists", "get", "open_vswitch", ".", "other_config:flow-restore-wait").strip()


def _flow_count(tenet: TenetNode) -> int:
    return len([line for line in tenet.node.ofctl("dump-flows").splitlines() if "cookie=" in line])


def test_the_agent_ends_flow_restore_wait_once_the_controller_replayed_the_flows(
    node: tuple[TenetNode, Pod, Pod],
) -> None:
    tenet, a, b = node
    switch = tenet.controller.node(tenet.node.name)["switch"]
    flows = _flow_count(tenet)
    assert flows > 20 and a.ping(b.ip)
    # Restart ovs-vswitchd as ovs-ctl does: the old process stopped, the flag set, a new process started.
    pid = int((tenet.node.dir / "ovs-vswitchd.pid").read_text())
    sh("ovs-appctl", "-t", str(tenet.node.dir / "ovs-vswitchd.ctl"), "exit")
    wait_for(lambda: not pid_alive(pid), "the old ovs-vswitchd to exit")
    sh(
        "ovs-vsctl",
        f"--db={tenet.node.db}",
        "--no-wait",
        "set",
        "open_vswitch",
        ".",
        "other_config:flow-restore-wait=true",
    )
    tenet.node._daemon("ovs-vswitchd", tenet.node.db, "--disable-system")
    # Held: no controller connection of its own, and nothing forwarded, until the flag goes.
    wait_for(lambda: "flow-restore-wait is set" in tenet.agent.new_log(), "the agent to see flow-restore-wait")
    # The agent clears the flag only once the controller has put every flow back through the relay.
    wait_for(lambda: _flag(tenet) == "", "the agent to clear flow-restore-wait", timeout=30)
    # It logs that once the flag is gone: wait for the line, not only for the flag.
    cleared = "flow-restore-wait cleared: the controller replayed the flows"
    wait_for(lambda: cleared in tenet.agent.new_log(), "the agent to log that it cleared the flag")
    # Then ovs-vswitchd connects to the controller itself (one more connection) and holds every flow.
    relayed = switch["connections"] + 1
    wait_for(
        lambda: (
            (s := tenet.controller.node(tenet.node.name)["switch"]).get("connections", 0) > relayed and s.get("in_sync")
        ),
        "the switch's own connection to sync",
    )
    assert _flow_count(tenet) == flows
    assert a.ping(b.ip, count=2) and tcp_connects(a, b)


def test_flow_restore_wait_set_on_a_running_switch_is_cleared_without_a_relay(
    node: tuple[TenetNode, Pod, Pod],
) -> None:
    tenet, a, b = node
    before = tenet.controller.node(tenet.node.name)["switch"]
    flows = _flow_count(tenet)
    assert before["in_sync"] and flows > 20
    # A running switch: ovs-vswitchd reports its controller connection in OVSDB (it refreshes that every 5 s).
    wait_for(
        lambda: tenet.node.vsctl("--columns=is_connected", "--bare", "list", "controller").strip() == "true",
        "ovs-vswitchd to report its controller connection",
    )
    tenet.node.vsctl("set", "open_vswitch", ".", "other_config:flow-restore-wait=true")
    # The switch keeps its own controller connection and its flows: the agent clears the flag without relaying
    # (and logs so once the flag is gone: wait for the line, not only for the flag).
    wait_for(lambda: _flag(tenet) == "", "the agent to clear flow-restore-wait", timeout=30)
    cleared = "is connected to the controller and in sync"
    wait_for(lambda: cleared in tenet.agent.new_log(), "the agent to log that it cleared the flag")
    log = tenet.agent.new_log()  # (everything since the agent started)
    assert "relaying" not in log and "did not sync" not in log, log
    after = tenet.controller.node(tenet.node.name)["switch"]
    assert after.get("refused_connections", 0) == before.get("refused_connections", 0), after
    assert after["errors"] == before["errors"] and after["in_sync"], after
    assert _flow_count(tenet) == flows
    assert a.ping(b.ip, count=2) and tcp_connects(a, b)


def test_a_relay_that_cannot_connect_names_the_socket(tmp_path: pytest.TempPathFactory) -> None:
    missing = f"{tmp_path}/br-int.mgmt"
    with pytest.raises(OSError, match=f"connecting to {missing}: No such file or directory"):
        _Relay(missing, ("127.0.0.1", 1))


def test_where_the_relay_connects() -> None:
    assert mgmt_socket_path("unix:/var/run/openvswitch/db.sock", "br-int") == "/var/run/openvswitch/br-int.mgmt"
    assert mgmt_socket_path("tcp:10.0.0.1:6640", "br-int") == "/var/run/openvswitch/br-int.mgmt"
    assert _tcp_address("tcp:10.254.1.1:6653") == ("10.254.1.1", 6653)
    assert _tcp_address("tcp:[fd00::1]:6653") == ("fd00::1", 6653)
    with pytest.raises(ValueError, match="tcp:HOST:PORT"):
        _tcp_address("ssl:10.0.0.1:6653")
