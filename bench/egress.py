"""Egress benchmark: a pod's traffic to the outside host through Tenet's SNAT path, against a plain OVS bridge
on the same userspace datapath whose internal port the node masquerades, and the reference bridge plugin.

    python -m bench.egress --json

A 1-node `tenet-lab` (lab.cluster.Lab, a state directory of its own under /tmp) with the lab's outside host
(lab/outside.py, 203.0.113.10, beyond the fabric bridge) and one tenant network with `nat_outgoing: true`.

Sides, each a pod-like namespace sending to the outside host:
- tenet: a pod on node1 in bench/web (VXLAN 5001, 10.1.0.0/24, nat_outgoing): SNAT in OVS, in the tenant's
  conntrack zone, to the node's address, then out of the node;
- cluster: a pod on node1 in the cluster network default/pods (10.244.0.0/16): up the node's gateway port
  tenet-gw0 without SNAT in OVS, masqueraded by the node's host stack (context for ovs: the same path shape);
- ovs: on node1's own ovs-vswitchd (the one running br-int), a bridge br-egress (netdev, fail_mode standalone:
  NORMAL only) with an internal port eg0 (10.78.0.1/24, the pod's gateway) and a pod on a veth made as
  Tenet's CNI makes pods (MTU 1450, TX checksum offload off in the pod); node1's host stack forwards and
  MASQUERADEs 10.78.0.0/24 (iptables), as a node does for a host-routed pod network;
- bridge (context only, kernel datapath): Debian's reference `bridge` plugin (/usr/lib/cni, isGateway,
  ipMasq true, host-local 10.79.0.0/24) run in a node namespace of its own, joined to the fabric bridge by a
  veth (192.168.100.250/24).

Throughput: iperf3 TCP, one stream, `--seconds` long after one omitted second, pod to the outside host; tenet,
cluster and ovs alternate `--repeats` times (ABC CBA ...), then the bridge plugin's runs. New connections: per
run, `--connections` sequential TCP connections (connect, one byte each way, close; Python's socket module in
the pod against socketserver in the outside host), each one a new conntrack entry and a new NAT mapping;
connections per second = connections / elapsed. Medians are reported with ratio = tenet / ovs (target >= 0.9
for both; cluster_*_ratio = cluster / ovs), and each side's vswitchd CPU while iperf3 ran. connections_failed
counts the connections that timed out per run: through the SNAT about 1 in 700 did while ovs-vswitchd's
conntrack checked TCP sequence numbers, which the agent now turns off (README "Egress and the gateway port").

Needs root. Everything made is removed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lab import Run, in_netns, iperf, ping_once
from bench.signals import clean_up_on_signals
from lab.cluster import UNDERLAY, Lab
from lab.outside import ADDRESS, FABRIC_ADDRESS, SUBNET
from lab.ovs import OvsNode, sh, wait_for

TARGET_RATIO = 0.9
MTU = 1450
CONFIG: dict[str, Any] = {
    "cluster_network": "default/pods",  # made by the controller; nat_outgoing needs it (transit addresses)
    "cluster_subnet": "10.244.0.0/16",
    "cni_default": "default/pods",
    "tenants": [
        {
            "name": "bench",
            "networks": [
                {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24", "nat_outgoing": True},
            ],
        }
    ],
    "qos": [],
}
NETWORK = "bench/web"
OVS_BRIDGE, OVS_PORT, OVS_GATEWAY, OVS_POD_IP, OVS_SUBNET = "br-egress", "eg0", "10.78.0.1", "10.78.0.2", "10.78.0.0/24"
BRIDGE_SUBNET = "10.79.0.0/24"
BRIDGE_NODE_IP = f"{UNDERLAY}.250"
CONNECT_PORT = 8007
REFERENCE_PLUGINS = Path("/usr/lib/cni")
# One connection after another: connect, a byte each way, close; prints "made failed seconds lost", lost the
# seconds spent in the failed ones (each up to its 3 s timeout).
CONNECT_CLIENT = (
    "import socket,sys,time\n"
    "host,port,n=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]);failed=0;lost=0.0;start=time.perf_counter()\n"
    "for _ in range(n):\n"
    " t=time.perf_counter()\n"
    " try:\n"
    "  c=socket.create_connection((host,port),timeout=3);c.sendall(b'x');ok=c.recv(1)==b'x';c.close()\n"
    " except OSError:ok=False\n"
    " if not ok:failed+=1;lost+=time.perf_counter()-t\n"
    "print(n-failed,failed,time.perf_counter()-start,lost)\n"
)
CONNECT_SERVER = (
    "import socketserver,sys\n"
    "class Echo(socketserver.BaseRequestHandler):\n"
    " def handle(self):self.request.sendall(self.request.recv(1))\n"
    "socketserver.TCPServer.allow_reuse_address=True\n"
    "socketserver.TCPServer.request_queue_size=512\n"
    "socketserver.TCPServer((sys.argv[1],int(sys.argv[2])),Echo).serve_forever()\n"
)


def progress(message: str) -> None:
    print(f"bench.egress: {message}", file=sys.stderr, flush=True)


@dataclass
class Side:
    name: str
    netns: str  # the client pod's
    nodes: list[OvsNode]  # whose ovs-vswitchd carries it (CPU is reported for those)


def plain_ovs(node: OvsNode, pod_netns: str, cleanup: ExitStack) -> Side:
    """br-egress on the node's vswitchd, its internal port the pod's gateway, the node masquerading the pod."""
    cleanup.callback(node.vsctl, "--if-exists", "del-br", OVS_BRIDGE)
    node.vsctl(
        "add-br", OVS_BRIDGE, "--", "set", "bridge", OVS_BRIDGE, "datapath_type=netdev", "fail_mode=standalone",
        "--", "add-port", OVS_BRIDGE, OVS_PORT, "--", "set", "interface", OVS_PORT, "type=internal",
        "mtu_request=1500",
    )  # fmt: skip
    node.exec("ip", "addr", "add", f"{OVS_GATEWAY}/24", "dev", OVS_PORT)
    node.exec("ip", "link", "set", OVS_PORT, "up")
    node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    node.exec("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", OVS_SUBNET, "!", "-o", OVS_PORT, "-j", "MASQUERADE")
    sh("ip", "netns", "add", pod_netns)
    cleanup.callback(sh, "ip", "netns", "del", pod_netns, check=False)
    node.exec("ip", "link", "add", "ep-egress", "mtu", str(MTU), "type", "veth",
              "peer", "name", "eth0", "mtu", str(MTU), "netns", pod_netns)  # fmt: skip
    for args in (
        ("ip", "link", "set", "lo", "up"),
        ("ip", "addr", "add", f"{OVS_POD_IP}/24", "dev", "eth0"),
        ("ip", "link", "set", "eth0", "up"),
        ("ip", "route", "add", "default", "via", OVS_GATEWAY),
        ("ethtool", "-K", "eth0", "tx", "off"),
    ):
        in_netns(pod_netns, *args)
    node.exec("ip", "link", "set", "ep-egress", "up")
    node.vsctl("add-port", OVS_BRIDGE, "ep-egress")
    return Side("ovs", pod_netns, [node])


def bridge_plugin(lab: Lab, state: Path, tag: str, cleanup: ExitStack) -> Side:
    """The reference bridge plugin (ipMasq) in a node namespace of its own, that node on the fabric bridge."""
    node, pod = f"tbe{tag}", f"tbep{tag}"
    for netns in (node, pod):
        sh("ip", "netns", "add", netns)
        cleanup.callback(sh, "ip", "netns", "del", netns, check=False)
    fabric = ("ip", "netns", "exec", lab.fabric_netns)
    sh(*fabric, "ip", "link", "add", f"bx-{tag}", "type", "veth", "peer", "name", "eth0", "netns", node)
    sh(*fabric, "ip", "link", "set", f"bx-{tag}", "master", "fab0", "up")
    in_netns(node, "ip", "link", "set", "lo", "up")
    in_netns(node, "ip", "addr", "add", f"{BRIDGE_NODE_IP}/24", "dev", "eth0")
    in_netns(node, "ip", "link", "set", "eth0", "up")
    in_netns(node, "ip", "route", "add", SUBNET, "via", FABRIC_ADDRESS)
    config = {
        "cniVersion": "1.0.0",
        "name": f"bench-egress-{tag}",
        "type": "bridge",
        "bridge": f"tbr{tag}",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": BRIDGE_SUBNET}]],
            "routes": [{"dst": "0.0.0.0/0"}],  # through the bridge, the gateway (isGateway)
            "dataDir": str(state / "host-local"),
        },
    }
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": f"bench-egress-{tag}",
        "CNI_NETNS": f"/var/run/netns/{pod}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(REFERENCE_PLUGINS),
    }
    done = subprocess.run(
        ["ip", "netns", "exec", node, str(REFERENCE_PLUGINS / "bridge")],
        input=json.dumps(config).encode(),
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the bridge plugin's ADD failed: {done.stdout.decode()} {done.stderr.decode()}")
    return Side("bridge", pod, [])


def connections(side: Side, outside_netns: str, count: int) -> tuple[float, int]:
    """New TCP connections per second from the side's pod to the outside host, `count` tried one after another,
    and how many failed (timed out or got no answer): the rate counts the others over the time they took."""
    python = "/usr/bin/python3"
    out = in_netns(side.netns, python, "-I", "-S", "-c", CONNECT_CLIENT, ADDRESS, str(CONNECT_PORT), str(count),
                   timeout=count * 3 + 60)  # fmt: skip
    made, failed, seconds, lost = out.split()
    if not int(made):
        raise RuntimeError(f"{side.name}: none of {count} connections to the outside host succeeded")
    return int(made) / (float(seconds) - float(lost)), int(failed)


def alternate(sides: list[Side], repeats: int, measure: Callable[[Side], Any]) -> dict[str, list[Any]]:
    """`repeats` rounds, in the order ABBA... so neither side always goes first."""
    results: dict[str, list[Any]] = {side.name: [] for side in sides}
    for round_ in range(repeats):
        for side in sides if round_ % 2 == 0 else list(reversed(sides)):
            results[side.name].append(measure(side))
    return results


def measure(seconds: int, repeats: int, count: int, names: list[str]) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="tenet-bench-egress-"))
    tag = f"{os.getpid() % 100000}"
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, state, ignore_errors=True)
        lab = Lab(state / "lab", progress=progress)
        cleanup.callback(lab.down)
        lab.up(1, CONFIG if "tenet" in names else {**CONFIG, "tenants": []})
        node = lab.node("node1")
        sides: dict[str, Side] = {}
        if "tenet" in names:
            sides["tenet"] = Side("tenet", lab.pod_add("egress", "node1", NETWORK).netns, [node])
        if "cluster" in names:
            pod = lab.pod_add("egress-cluster", "node1", CONFIG["cluster_network"])
            sides["cluster"] = Side("cluster", pod.netns, [node])
        if "ovs" in names:
            sides["ovs"] = plain_ovs(node, f"tlep{tag}", cleanup)
        if "bridge" in names:
            sides["bridge"] = bridge_plugin(lab, state, tag, cleanup)
        compared = [sides[name] for name in ("tenet", "cluster", "ovs") if name in sides]
        context = [sides[name] for name in ("bridge",) if name in sides]
        outside = lab.outside.netns
        server = subprocess.Popen(
            ["ip", "netns", "exec", outside, "/usr/bin/python3", "-I", "-S", "-c", CONNECT_SERVER, ADDRESS,
             str(CONNECT_PORT)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cleanup.callback(server.wait, timeout=10)
        cleanup.callback(server.kill)
        wait_for(lambda: f":{CONNECT_PORT} " in in_netns(outside, "ss", "-ltnH"), "the connection server to listen")
        for side in sides.values():
            wait_for(lambda s=side: ping_once(s.netns, ADDRESS), f"the {side.name} pod to reach {ADDRESS}", timeout=30)
        progress(f"iperf3: {repeats} x {seconds} s per side")

        def run_iperf(side: Side) -> Run:
            return iperf(side.netns, outside, ADDRESS, seconds, side.nodes)

        throughput = alternate(compared, repeats, run_iperf) | alternate(context, repeats, run_iperf)
        progress(f"connections: {repeats} x {count} per side")

        def run_connections(side: Side) -> tuple[float, int]:
            return connections(side, outside, count)

        rates = alternate(compared, repeats, run_connections) | alternate(context, repeats, run_connections)

    def side_summary(name: str) -> dict[str, Any]:
        runs = throughput[name]
        cpu = [sum(run.cpu_pct.values()) for run in runs]
        return {
            "gbps": round(statistics.median(run.gbps for run in runs), 3),
            "gbps_runs": [round(run.gbps, 3) for run in runs],
            "retransmits": [run.retransmits for run in runs],
            "socket_drops": [run.socket_drops for run in runs],  # ovs-vswitchd's packet sockets were full
            "vswitchd_cpu_pct": round(statistics.median(cpu), 1) if runs[0].cpu_pct else None,
            "connections_per_s": round(statistics.median(rate for rate, _ in rates[name])),
            "connections_per_s_runs": [round(rate) for rate, _ in rates[name]],
            "connections_failed": [failed for _, failed in rates[name]],  # of --connections per run
        }

    summary = {name: side_summary(name) for name in sides}
    result: dict[str, Any] = {
        "seconds": seconds,
        "repeats": repeats,
        "connections": count,
        "load_average": os.getloadavg()[0],
        **summary,
    }
    if "ovs" not in summary or "tenet" not in summary:
        return result
    for name in ("tenet", "cluster"):  # against the masqueraded plain OVS bridge
        if name in summary:
            prefix = "" if name == "tenet" else "cluster_"
            result[f"{prefix}gbps_ratio"] = round(summary[name]["gbps"] / summary["ovs"]["gbps"], 3)
            result[f"{prefix}connections_ratio"] = round(
                summary[name]["connections_per_s"] / summary["ovs"]["connections_per_s"], 3
            )
    result["ratio_target"] = TARGET_RATIO
    result["meets_target"] = min(result["gbps_ratio"], result["connections_ratio"]) >= TARGET_RATIO
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.egress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 seconds per run, after one omitted (5)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, tenet and ovs alternating (3)")
    parser.add_argument("--connections", type=int, default=2000, help="new TCP connections per run (2000)")
    parser.add_argument(
        "--sides",
        default="tenet,cluster,ovs,bridge",
        help="which to run, comma-separated (default all; the ratios need tenet and ovs)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    names = args.sides.split(",")
    if not names or set(names) - {"tenet", "cluster", "ovs", "bridge"}:
        parser.error(f"--sides {args.sides!r}: want some of tenet,cluster,ovs,bridge")
    if min(args.seconds, args.repeats, args.connections) < 1:
        parser.error("--seconds, --repeats and --connections must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, Open vSwitch)")

    clean_up_on_signals()
    result = measure(args.seconds, args.repeats, args.connections, names)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>22}: {v}" for k, v in result.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
