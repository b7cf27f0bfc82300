"""A 3-node lab: pods of two tenants with overlapping subnets on every node, on VXLAN and VLAN networks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import matrix
from lab.cluster import Lab
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
    pids = [lab.state.controller_pid, *lab.state.agent_pids.values()]
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
        processes = [lab.state.controller_pid, *lab.state.agent_pids.values()]
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
        assert pods["b1"].as_pod().ping(pods["b3"].ip) and pods["r1"].as_pod().ping(pods["r3"].ip)
    finally:
        lab.start_agent("node1")


def test_deleting_a_pod_removes_its_flows_on_every_node(lab: Lab) -> None:
    lab.pod_add("b9", "node2", "blue/web")
    mac = lab.state.pods["b9"].mac
    assert mac is not None

    def holding() -> list[str]:
        return [n for n in lab.state.nodes if mac in lab.node(n).ofctl("dump-flows").lower()]

    assert holding() == ["node1", "node2", "node3"]  # every node with blue pods knows where b9 is
    lab.pod_rm("b9")
    wait_for(lambda: holding() == [], "b9's flows to leave every node", timeout=10)
    assert lab.pod_netns("b9") not in sh("ip", "netns", "list")
