"""The README's main command, as a new user runs it: twice in a row, then down, leaving nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.cluster import Lab, LabState
from lab.ovs import pid_alive, sh

ROOT = Path(__file__).resolve().parents[2]


def demo(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lab.demo", "--state-dir", str(state), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_runs_twice_and_goes_down_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    lab_id = Lab(state / "lab").id
    try:
        first = demo(state)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "30/30 pairs as the policy says" in first.stdout
        assert "the QoS cap holds" in first.stdout
        # The last step compares a fresh dump of each switch with its desired state.
        assert first.stdout.count("meters; OVS holds exactly that") == 2, first.stdout
        assert "every switch holds exactly its flows" in first.stdout
        assert [line.split(" ")[0] for line in first.stdout.splitlines() if line.startswith("[")] == [
            f"[{i}/11]" for i in range(1, 12)
        ]
        # Each tenant's pod reached the outside host, which saw its node's address, not the pod's.
        assert "each tenant reaches the outside" in first.stdout
        logged = [line for line in first.stdout.splitlines() if "outside host's log: " in line]
        assert [line.split("log: ")[1].split()[0] for line in logged] == ["192.168.100.1", "192.168.100.1"], logged
        assert "the ClusterIP reaches both backends" in first.stdout
        # Pods applied with kubectl ran on both nodes through the kubelet stand-ins and pinged each other.
        assert "kubectl's pods ping each other" in first.stdout
        assert "shop/front -> shop/back" in first.stdout and "NODE" in first.stdout  # kubectl get -o wide
        svg = (state / "topology.svg").read_text()
        assert svg.startswith("<svg") and all(f">{pod}<" in svg for pod in ("b1", "b2", "b3", "r1", "r2", "r3"))
        # Its last line names the state dir a `make demo-down` needs; without it, down names what it looked at.
        assert first.stdout.splitlines()[-1].endswith(f"`TENET_DEMO_STATE={state} make demo-down` removes it all")
        elsewhere = demo(tmp_path / "elsewhere", "--down")
        assert elsewhere.returncode == 1, elsewhere.stdout + elsewhere.stderr
        assert f"demo: no demo in {tmp_path / 'elsewhere'} " in elsewhere.stdout
        assert f"a demo seems to be up in {state}: `TENET_DEMO_STATE={state} make demo-down`" in elsewhere.stdout
        second = demo(state)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "a previous demo is up: taking it down first" in second.stdout
    finally:
        recorded = LabState.load(state / "lab" / "lab.json") if (state / "lab" / "lab.json").exists() else LabState()
        down = demo(state, "--down")
    assert down.returncode == 0, down.stderr
    kubernetes = [recorded.apiserver_pid or 0, recorded.etcd_pid or 0, *recorded.kubelet_pids.values()]
    assert not any(pid_alive(pid) for pid in [recorded.controller_pid or 0, *recorded.agent_pids.values(), *kubernetes])
    assert lab_id not in sh("ip", "netns", "list")
    assert f"tnc{lab_id}" not in sh("ip", "-o", "link")
