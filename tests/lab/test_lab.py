"""A 3-node lab: pods of two tenants with overlapping subnets on every node, on VXLAN and VLAN networks; the
outside host beyond the fabric; `tenet-lab exec` and `status` run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import matrix
from lab.cluster import UNDERLAY, Lab
from lab.outside import ADDRESS, ECHO_PORT, PAGE
from lab.ovs import pid_alive, sh, wait_for

PODS = {  # name: (node, network) — every node has both tenants; VXLAN and VLAN both cross nodes
    "b1": ("node1", "blue/web"),
    "b2": ("node2", "blue/db"),
    "b3": ("node3", "blue/web"),
    "r1": ("node1", "red/web"),
    "r2": ("node2", "red/db"),
    "r3": ("node3", "red/db"),
}


def lab_names(lab: Lab) -> dict[str, list[str]]:
    """Namespaces, root-namespace links and live processes of the lab: what `down` must remove."""
    namespaces = [n.split()[0] for n in sh("ip", "netns", "list").splitlines() if n.strip()]
    ours = [n for n in namespaces if n.startswith(f"tl-{lab.id}-") or re.match(rf"tn-node\d+-{lab.id}", n)]
    links = [line.split(":")[1].strip() for line in sh("ip", "-o", "link").splitlines() if f": tnc{lab.id}" in line]
    pids = [lab.state.controller_pid, *lab.state.agent_pids.values(), *lab.state.outside_pids]
    return {"namespaces": ours, "links": links, "processes": [str(p) for p in pids if p and pid_alive(p)]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = Path(tmp_path_factory.mktemp("lab"))
    lab = Lab(state)
    try:
        lab.up(3)
        for name, (node, network) in PODS.items():
            lab.pod_add(name, node, network)
        yield lab
    finally:
        processes = [lab.state.controller_pid, *lab.state.agent_pids.values(), *lab.state.outside_pids]
        lab.down()
    assert lab_names(lab) == {"namespaces": [], "links": [], "processes": []}
    assert not any(p and pid_alive(p) for p in processes)


def pods_of(lab: Lab) -> dict:
    return {name: (pod.as_pod(), pod.network) for name, pod in lab.state.pods.items()}


def test_the_matrix_matches_the_policy_across_nodes(lab: Lab) -> None:
    probes = matrix.measure(pods_of(lab))
    assert len(probes) == len(lab.state.pods) * (len(lab.state.pods) - 1)
    assert all(p.matches for p in probes), matrix.render(pods_of(lab), probes)
    reached = {(p.source, p.target) for p in probes if p.reached}
    assert {("b1", "b3"), ("r2", "r3"), ("b1", "b2"), ("r1", "r3")} <= reached  # VXLAN, VLAN, routed, both


def test_a_killed_agent_leaves_its_pods_talking(lab: Lab) -> None:
    lab.kill_agent("node1")
    try:
        pods = lab.state.pods
        assert pods["b1"].as_pod().ping(pods["b3"].ip or "") and pods["r1"].as_pod().ping(pods["r3"].ip or "")
    finally:
        lab.start_agent("node1")


def test_deleting_a_pod_removes_its_flows_on_every_node(lab: Lab) -> None:
    lab.pod_add("b9", "node2", "blue/web")
    mac = lab.state.pods["b9"].mac
    assert mac is not None

    def holding() -> list[str]:
        return [n for n in lab.state.nodes if mac in lab.node(n).ofctl("dump-flows").lower()]

    # Every node with blue pods learns where b9 is (the ADD waits for b9's own node only).
    wait_for(lambda: holding() == ["node1", "node2", "node3"], "every blue node to know b9", timeout=10)
    lab.pod_rm("b9")
    wait_for(lambda: holding() == [], "b9's flows to leave every node", timeout=10)
    assert lab.pod_netns("b9") not in sh("ip", "netns", "list")


def tenet_lab(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    """The `tenet-lab` command on this lab, as a user runs it."""
    command = [str(Path(sys.executable).with_name("tenet-lab")), "--state-dir", str(lab.dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_outside_host_answers_every_node_from_its_underlay_address(lab: Lab) -> None:
    outside = lab.outside
    assert json.loads(tenet_lab(lab, "status", "--json").stdout)["outside"] == {
        "netns": outside.netns,
        "address": ADDRESS,
    }
    for index, name in enumerate(lab.state.nodes, start=1):
        page = tenet_lab(lab, "exec", "--node", name, "--", "curl", "-sS", "-m", "5", f"http://{ADDRESS}/")
        assert (page.returncode, page.stdout) == (0, PAGE), page.stderr
        source = f"{UNDERLAY}.{index} "
        wait_for(lambda s=source: outside.http_log()[-1].startswith(s), f"the request of {name} in the log")
        for kind in ("TCP", "UDP"):
            echo = f"echo {kind}-{name} | socat -t 2 - {kind}:{ADDRESS}:{ECHO_PORT}"
            assert lab.node(name).exec("sh", "-c", echo, check=False).strip() == f"{kind}-{name}"


def test_exec_runs_in_a_pod_or_on_a_node_and_passes_the_exit_code_through(lab: Lab) -> None:
    in_pod = tenet_lab(lab, "exec", "b1", "--", "ip", "-o", "-4", "addr", "show", "eth0")
    assert in_pod.returncode == 0 and f" {lab.state.pods['b1'].ip}/" in in_pod.stdout, in_pod.stderr
    on_node = tenet_lab(lab, "exec", "--node", "node2", "--", "ip", "-o", "-4", "addr", "show", "br-phy")
    assert on_node.returncode == 0 and f" {UNDERLAY}.2/24 " in on_node.stdout, on_node.stderr
    bridges = tenet_lab(lab, "exec", "--node", "node2", "--", "ovs-vsctl", "list-br")  # OVS_RUNDIR: node2's OVS
    assert bridges.returncode == 0 and {"br-int", "br-phy"} <= set(bridges.stdout.split()), bridges.stderr
    flows = tenet_lab(lab, "exec", "--node", "node2", "--", "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "br-int")
    assert flows.returncode == 0 and "actions=" in flows.stdout, flows.stderr
    failing = tenet_lab(lab, "exec", "r2", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (failing.returncode, failing.stdout, failing.stderr) == (7, "out\n", "err\n")
    unknown_pod = tenet_lab(lab, "exec", "nope", "--", "true")
    assert (unknown_pod.returncode, unknown_pod.stderr) == (
        1,
        "tenet-lab: no pod 'nope': the lab has b1, b2, b3, r1, r2, r3\n",
    )
    unknown_node = tenet_lab(lab, "exec", "--node", "node9", "--", "true")
    assert (unknown_node.returncode, unknown_node.stderr) == (
        1,
        "tenet-lab: unknown node 'node9': the lab has node1, node2, node3\n",
    )
