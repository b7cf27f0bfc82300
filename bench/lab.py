"""Lab benchmark: pod-to-pod TCP across two lab nodes through Tenet's pipeline against a plain OVS NORMAL bridge
on the same VXLAN underlay, and how soon a new pod answers a ping from the other node.

    python -m bench.lab --json

A 2-node `tenet-lab` (lab.cluster.Lab, in a state directory of its own under /tmp, default config).

Throughput: iperf3 TCP, one stream, `--seconds` long after one omitted second of slow start, from a pod on
node1 to a pod on node2, both on blue/web (VXLAN 5001, MTU 1450). The peer, in the same run and on the same
ovs-vswitchd of each node (the one running br-int and br-phy): a bridge br-peer (netdev, fail_mode standalone,
so the NORMAL action only) with a VXLAN port to the other node's underlay address (VNI 7777), and a pod-like
namespace on a veth made as Tenet's CNI makes pods (MTU 1450 at both ends, TX checksum offload off in the pod).
Tenet and NORMAL runs alternate `--repeats` times (ABBA...); medians are reported, ratio = tenet / normal of
the medians (target >= 0.9) and ratio_paired = the median of each round's ratio. Per run and side, to tell the
pipeline's cost from the machine's: TCP retransmits, packets the kernel dropped because ovs-vswitchd's
AF_PACKET receive buffers were full (both nodes), datapath upcalls and exact-match-cache hit rate (both
nodes, `dpif-netdev/pmd-stats-show`), and each node's ovs-vswitchd CPU (percent of one core). The lab shares
the machine's CPUs with everything else running: the load average is reported too.

First ping: `--pods` times, a pod is added on node1, then a pod already on node2 pings its address with one
`ping -D -c 1 -w 10 -i 0.01` (a probe every 10 ms until the first reply; -D stamps the reply's arrival).
The add is `Lab.pod_add` in this process: the node's installed CNI plugins exec'd exactly as
`tenet-lab pod add` does, without that command's interpreter start-up (`--cli` runs the command instead).
Pods are kept, not removed (each has a fresh address, so no neighbour cache holds a stale MAC); they go with
the lab at the end. Reported as p50/p99: first_ping_ms from the start of the add to the first reply,
pod_add_ms for the add alone, add_to_first_ping_ms from the add's return to the first reply, and
ping_floor_ms, the same ping command to a pod that has long answered (its start-up and one round trip: what
add_to_first_ping_ms cannot go below); and the probes lost before each first reply.

Needs root. Everything made is removed at the end, on failure too (TENET_KEEP_OVS_LOGS=1 keeps the state
directory with the daemons' logs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import ms, percentile
from lab.cluster import UNDERLAY, Lab, LabPod, LabState
from lab.ovs import OvsNode, sh, wait_for

TARGET_RATIO = 0.9
NETWORK = "blue/web"
MTU = 1450
PEER_VNI = 7777
PEER_SUBNET = "10.77.0"  # peer pod on node i: 10.77.0.i/24
PEER_BRIDGE = "br-peer"
PEER_PORT = "pp-peer"  # the veth's end on br-peer, in the node's namespace
IPERF_PORT = 5201
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    print(f"bench.lab: {message}", file=sys.stderr, flush=True)


def in_netns(netns: str, *args: str, check: bool = True, timeout: float = 30) -> str:
    return sh("ip", "netns", "exec", netns, *args, check=check, timeout=timeout)


# --- the peer: a NORMAL bridge on each node's own vswitchd -------------------------------------


@dataclass
class PeerPod:
    netns: str
    ip: str


class Peer:
    """br-peer on each node's ovs-vswitchd, a VXLAN port to the other node and a pod-like namespace."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.nodes: list[OvsNode] = []
        self.pods: list[PeerPod] = []

    def build(self) -> None:
        names = self.lab.state.nodes
        for index, name in enumerate(names, start=1):
            node = self.lab.node(name)
            other = 2 if index == 1 else 1
            self.nodes.append(node)
            node.vsctl(
                "add-br", PEER_BRIDGE,
                "--", "set", "bridge", PEER_BRIDGE, "datapath_type=netdev", "fail_mode=standalone",
                "--", "add-port", PEER_BRIDGE, "vx-peer", "--", "set", "interface", "vx-peer", "type=vxlan",
                f"options:remote_ip={UNDERLAY}.{other}", f"options:key={PEER_VNI}",
            )  # fmt: skip
            pod = PeerPod(f"tlb{os.getpid()}-{name}", f"{PEER_SUBNET}.{index}")
            sh("ip", "netns", "add", pod.netns)
            self.pods.append(pod)
            node.exec("ip", "link", "add", PEER_PORT, "mtu", str(MTU), "type", "veth",
                      "peer", "name", "eth0", "mtu", str(MTU), "netns", pod.netns)  # fmt: skip
            in_netns(pod.netns, "ip", "addr", "add", f"{pod.ip}/24", "dev", "eth0")
            in_netns(pod.netns, "ip", "link", "set", "eth0", "up")
            in_netns(pod.netns, "ip", "link", "set", "lo", "up")
            in_netns(pod.netns, "ethtool", "-K", "eth0", "tx", "off")
            node.exec("ip", "link", "set", PEER_PORT, "up")
            node.vsctl("add-port", PEER_BRIDGE, PEER_PORT)
        first, second = self.pods[0], self.pods[1]
        reached = f"the peer pods to reach each other over {PEER_BRIDGE}"
        wait_for(lambda: ping_once(first.netns, second.ip), reached, timeout=30)

    def close(self) -> None:
        for pod in self.pods:
            sh("ip", "netns", "del", pod.netns, check=False)
        for node in self.nodes:
            sh("ovs-vsctl", f"--db={node.db}", "--timeout=10", "--if-exists", "del-br", PEER_BRIDGE, check=False)


def ping_once(netns: str, ip: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", ip], capture_output=True)
    return done.returncode == 0


# --- throughput ----------------------------------------------------------------------------------


def vswitchd_cpu_s(node: OvsNode) -> float:
    """User and system time of the node's ovs-vswitchd, all threads, so far."""
    pid = (node.dir / "ovs-vswitchd.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def socket_drops(node: OvsNode) -> int:
    """Packets the kernel dropped because ovs-vswitchd's AF_PACKET sockets in the node were full, so far."""
    return sum(int(d) for d in re.findall(r",d(\d+)\)", node.exec("ss", "-0", "-m", "-H")))


def datapath_counters(node: OvsNode) -> dict[str, float]:
    """The userspace datapath's lookup counters since the last `dpif-netdev/pmd-stats-clear`, all threads."""
    counters: dict[str, float] = {}
    for line in node.appctl("dpif-netdev/pmd-stats-show").splitlines():
        key, _, value = line.strip().rpartition(":")
        if key and re.fullmatch(r"\d+", value.strip()):
            counters[key] = counters.get(key, 0) + int(value)
    return counters


@dataclass
class Run:
    gbps: float
    retransmits: int
    cpu_pct: dict[str, float]  # node -> ovs-vswitchd CPU, percent of one core
    socket_drops: int  # on both nodes, omitted second included: ovs-vswitchd's packet sockets were full
    upcalls: int  # on both nodes: datapath misses sent to ofproto (each makes or fails to make a megaflow)
    emc_hit_pct: float  # on both nodes: lookups answered by the exact-match cache


def iperf(client_netns: str, server_netns: str, server_ip: str, seconds: int, nodes: list[OvsNode]) -> Run:
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_netns, "iperf3", "-s", "-1", "-B", server_ip, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # `ip netns exec` execs: this pid is iperf3's
    try:
        wait_for(lambda: f"{server_ip}:{IPERF_PORT}" in in_netns(server_netns, "ss", "-ltnH"), "iperf3 -s to listen")
        before = {node.name: vswitchd_cpu_s(node) for node in nodes}
        drops = sum(socket_drops(node) for node in nodes)
        for node in nodes:
            node.appctl("dpif-netdev/pmd-stats-clear")
        started = time.perf_counter()
        client = ["iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-O", "1", "-J"]
        out = in_netns(client_netns, *client, check=False, timeout=seconds + 60)
        wall = time.perf_counter() - started
        cpu = {node.name: round(100 * (vswitchd_cpu_s(node) - before[node.name]) / wall, 1) for node in nodes}
        drops = sum(socket_drops(node) for node in nodes) - drops
        counters = [datapath_counters(node) for node in nodes]
        try:
            result = json.loads(out)
        except json.JSONDecodeError:
            raise RuntimeError(f"iperf3 from {client_netns} to {server_ip} printed no JSON: {out[-500:]}") from None
        if "error" in result:
            raise RuntimeError(f"iperf3 from {client_netns} to {server_ip}: {result['error']}")
        end = result["end"]
        upcalls = sum(c.get("miss with success upcall", 0) + c.get("miss with failed upcall", 0) for c in counters)
        emc = sum(c.get("emc hits", 0) for c in counters)
        lookups = emc + upcalls + sum(c.get(k, 0) for c in counters for k in ("smc hits", "megaflow hits"))
        bps, retransmits = end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits", 0)
        return Run(bps / 1e9, retransmits, cpu, drops, int(upcalls), round(100 * emc / max(lookups, 1), 2))
    finally:
        server.kill()
        server.wait(timeout=10)


def summary(runs: list[Run]) -> dict[str, Any]:
    nodes = runs[0].cpu_pct
    return {
        "gbps": round(statistics.median(r.gbps for r in runs), 3),
        "runs_gbps": [round(r.gbps, 3) for r in runs],
        "retransmits": [r.retransmits for r in runs],
        "socket_drops": [r.socket_drops for r in runs],
        "upcalls": [r.upcalls for r in runs],
        "emc_hit_pct": [r.emc_hit_pct for r in runs],
        "vswitchd_cpu_pct": {n: round(statistics.median(r.cpu_pct[n] for r in runs), 1) for n in nodes},
    }


# --- first ping ----------------------------------------------------------------------------------

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.MULTILINE)


@dataclass
class FirstPing:
    add_s: float  # the add alone
    reply_s: float  # from the start of the add to the first reply
    lost: int  # probes sent before the one answered
    floor_s: float  # the same ping command to a pod that has long answered: start-up and one round trip


def ping_until_reply(pinger: LabPod, ip: str) -> tuple[float, int]:
    """(wall-clock time of the first reply, probes lost before it), or RuntimeError after 10 s."""
    out = in_netns(pinger.netns, "ping", "-D", "-n", "-c", "1", "-w", "10", "-i", "0.01", ip, check=False)
    reply = _REPLY.search(out)
    if reply is None:
        raise RuntimeError(f"{ip} did not answer {pinger.name} within 10 s")
    return float(reply.group(1)), int(reply.group(2)) - 1


def first_ping(lab: Lab, name: str, pinger: LabPod, old: LabPod, *, cli: bool) -> FirstPing:
    started = time.time()  # wall clock: ping -D stamps replies with it
    if cli:
        tenet_lab = Path(sys.executable).with_name("tenet-lab")
        command = [str(tenet_lab), "--state-dir", str(lab.dir), "pod", "add", name, "--node", "node1"]
        done = subprocess.run([*command, "--network", NETWORK], capture_output=True, text=True, timeout=180)
        lab.state = LabState.load(lab.file)  # the command recorded the pod
        if done.returncode != 0:
            raise RuntimeError(f"tenet-lab pod add {name}: {done.stderr.strip()}")
        pod = lab.state.pods[name]
    else:
        pod = lab.pod_add(name, "node1", NETWORK)
    added = time.time()
    replied, lost = ping_until_reply(pinger, pod.ip or "")
    floor_started = time.time()
    floor_replied, _ = ping_until_reply(pinger, old.ip or "")
    return FirstPing(added - started, replied - started, lost, floor_replied - floor_started)


# --- the run -------------------------------------------------------------------------------------


def measure(seconds: int, repeats: int, pods: int, cli: bool) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="tenet-bench-lab-"))
    lab = Lab(state, progress=progress)
    peer = Peer(lab)
    machine = {"cpus": os.cpu_count(), "load_1m_before": round(os.getloadavg()[0], 2)}  # shared with all else
    try:
        lab.up(2)
        server = lab.pod_add("bsrv", "node2", NETWORK)
        client = lab.pod_add("bcli", "node1", NETWORK)
        wait_for(lambda: ping_once(client.netns, server.ip or ""), "the two pods to reach each other", timeout=30)
        progress(f"pods {client.name} {client.ip} (node1) -> {server.name} {server.ip} (node2) on {NETWORK}")
        peer.build()
        progress(f"{PEER_BRIDGE}: {peer.pods[0].ip} (node1) -> {peer.pods[1].ip} (node2), NORMAL over VNI {PEER_VNI}")
        nodes = [lab.node(name) for name in lab.state.nodes]
        sides = {
            "tenet": (client.netns, server.netns, server.ip or ""),
            "normal": (peer.pods[0].netns, peer.pods[1].netns, peer.pods[1].ip),
        }
        runs: dict[str, list[Run]] = {"tenet": [], "normal": []}
        for round_ in range(repeats):
            for side in ("tenet", "normal") if round_ % 2 == 0 else ("normal", "tenet"):
                run = iperf(*sides[side], seconds, nodes)
                runs[side].append(run)
                progress(
                    f"iperf3 {side}: {run.gbps:.2f} Gbit/s, {run.retransmits} retransmits, "
                    f"{run.socket_drops} socket drops, {run.upcalls} upcalls, vswitchd CPU {run.cpu_pct}"
                )
        tenet, normal = summary(runs["tenet"]), summary(runs["normal"])
        machine["load_1m_after_iperf"] = round(os.getloadavg()[0], 2)

        pings = []
        for i in range(pods):
            pings.append(first_ping(lab, f"fp{i}", server, client, cli=cli))
            progress(f"pod fp{i}: add {ms(pings[-1].add_s)} ms, first reply at {ms(pings[-1].reply_s)} ms")
    finally:
        peer.close()
        if lab.file.exists():
            lab.state = LabState.load(lab.file)  # what `tenet-lab pod add` recorded too
        lab.down()
        if os.environ.get("TENET_KEEP_OVS_LOGS"):  # as lab.ovs: keep the logs to read after a failure
            progress(f"logs kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)

    def p50_p99(values: list[float]) -> dict[str, float]:
        return {"p50": ms(percentile(values, 0.5)), "p99": ms(percentile(values, 0.99))}

    ratio = tenet["gbps"] / normal["gbps"]
    paired = statistics.median(t.gbps / n.gbps for t, n in zip(runs["tenet"], runs["normal"], strict=True))
    return {
        "tenet_gbps": tenet["gbps"],
        "normal_gbps": normal["gbps"],
        "ratio": round(ratio, 3),  # tenet / normal, of the medians
        "ratio_paired": round(paired, 3),  # the median of each round's tenet / normal: steadier under drifting load
        "ratio_target": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "first_ping_ms": {**p50_p99([p.reply_s for p in pings]), "n": pods},
        "pod_add_ms": p50_p99([p.add_s for p in pings]),
        "add_to_first_ping_ms": p50_p99([p.reply_s - p.add_s for p in pings]),
        "ping_floor_ms": p50_p99([p.floor_s for p in pings]),
        "probes_lost_before_reply": [p.lost for p in pings],
        "pod_add_via": "tenet-lab pod add" if cli else "Lab.pod_add in-process",
        "pods_kept": True,
        "machine": machine,
        "iperf": {"seconds": seconds, "repeats": repeats, "streams": 1, "mtu": MTU, "tenet": tenet, "normal": normal},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="each iperf3 run (default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="iperf3 runs per side, alternating (default 5)")
    parser.add_argument("--pods", type=int, default=20, help="pods added for the first-ping latency (default 20)")
    parser.add_argument("--cli", action="store_true", help="add pods with the `tenet-lab pod add` command")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if min(args.seconds, args.repeats, args.pods) < 1:
        parser.error("--seconds, --repeats and --pods must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, Open vSwitch)")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    result = measure(args.seconds, args.repeats, args.pods, args.cli)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>26}: {v}" for k, v in result.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
