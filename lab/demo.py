"""The single-machine demo: Tenet as a tenant admin meets it, end to end, with real packets.

    python -m lab.demo            (make demo)        build it, measure it, draw it; leaves it running
    python -m lab.demo --down     (make demo-down)   remove every namespace, veth, OVS instance and process

Two nodes (network namespaces, each with its own userspace OVS and agent) and one controller with a SQLite
store; then, through `tenetctl`, two tenants with identical subnets, each with a VXLAN and a VLAN network,
and a QoS profile; six pods through each node's real CNI plugin; a connectivity matrix with ping and TCP,
checked against the policy; iperf3 showing the QoS cap; and a picture of it all (SVG). Running it again
first takes the previous run down.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from controller.cli_live import counts_text, verify_lines
from lab import matrix
from lab.cluster import Lab, LabError
from lab.ovs import wait_for
from lab.picture import topology_svg

STATE = Path(os.environ.get("TENET_DEMO_STATE", "/var/lib/tenet-demo"))
NETWORKS = [  # tenant, name, encap, segment flag, segment, subnet: both tenants use the same subnets
    ("blue", "web", "vxlan", "--vni", 5001, "10.1.0.0/24"),
    ("blue", "db", "vlan", "--vlan", 101, "10.2.0.0/24"),
    ("red", "web", "vxlan", "--vni", 6001, "10.1.0.0/24"),
    ("red", "db", "vlan", "--vlan", 201, "10.2.0.0/24"),
]
QOS = ("bronze", 20_000)  # name, kbit/s (burst: the default, half a second of the rate): caps each red/web pod
PODS = [  # name, node, network
    ("b1", "node1", "blue/web"),
    ("b2", "node2", "blue/web"),
    ("b3", "node2", "blue/db"),
    ("r1", "node1", "red/web"),
    ("r2", "node2", "red/web"),
    ("r3", "node1", "red/db"),
]
STEPS = 8


class Demo:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.step = 0
        self.lab = Lab(state / "lab", progress=lambda message: print(f"      {message}", flush=True))

    def say(self, message: str) -> None:
        self.step += 1
        print(f"[{self.step}/{STEPS}] {message}", flush=True)

    def tenetctl(self, *args: str) -> str:
        environment = {
            **os.environ,
            "TENET_SERVER": f"http://127.0.0.1:{self.lab.state.api_port}",
            "TENET_TOKEN": self.lab.state.token,
        }
        tool = Path(sys.executable).with_name("tenetctl")
        print(f"      $ tenetctl {' '.join(args)}", flush=True)
        done = subprocess.run([str(tool), *args], env=environment, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise LabError(f"tenetctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def run(self) -> bool:
        started = time.monotonic()
        if self.lab.file.exists():
            print("      a previous demo is up: taking it down first", flush=True)
            self.lab.down()
        self.say("two nodes: namespaces with ovsdb-server, ovs-vswitchd (userspace) and tenet-agent; the controller")
        self.lab.up(2, {"tenants": [], "cni_default": "blue/web"})
        self.say("tenants, networks (identical subnets: VXLAN and VLAN) and a QoS profile, through tenetctl")
        for tenant in ("blue", "red"):
            self.tenetctl("tenant", "create", tenant)
        for tenant, name, encap, flag, segment, subnet in NETWORKS:
            self.tenetctl(
                "network", "create", f"{tenant}/{name}", "--encap", encap, flag, str(segment), "--subnet", subnet
            )
        name, rate = QOS
        self.tenetctl("qos", "create", name, "--rate-kbps", str(rate))
        self.tenetctl("qos", "attach", name, "red/web")
        self.say("six pods through each node's CNI plugin (tenet-cni, chained after loopback)")
        for pod, node, network in PODS:
            added = self.lab.pod_add(pod, node, network)
            print(f"      {pod} on {node}: {added.ip} in {network}", flush=True)
        self.say("connectivity: ping and TCP between every pair of pods, against the policy")
        pods = {name: (pod.as_pod(), pod.network) for name, pod in self.lab.state.pods.items()}
        probes = matrix.measure(pods)
        print(indent(matrix.render(pods, probes)), flush=True)
        matched = all(p.matches for p in probes)
        self.say(f"QoS: iperf3 across nodes, blue/web (no profile) and red/web ({name}: {rate // 1000} Mbit/s)")
        free = self.iperf("b1", "b2")
        capped = self.iperf("r1", "r2")
        print(f"      b1 -> b2 (blue/web): {free:8.1f} Mbit/s", flush=True)
        print(f"      r1 -> r2 (red/web):  {capped:8.1f} Mbit/s   (cap {rate / 1000:.0f} Mbit/s)", flush=True)
        within_cap = 0.85 <= capped / (rate / 1000) <= 1.10 and free > capped  # the cap, neither less nor more
        self.say("the picture: tenants, networks, nodes and pods")
        picture = self.state / "topology.svg"
        picture.write_text(topology_svg(self.snapshot()))
        print(f"      wrote {picture}", flush=True)
        self.say("the switches: flows per node, as the controller wants them, compared with a dump of OVS now")
        held = True
        for node in self.lab.state.nodes:
            flows = self.lab.client.get(f"/v1/nodes/{node}/flows", verify="1")
            counts, verify = flows["counts"], flows["verify"]
            summary = counts_text(counts)
            print(f"      {node}: {summary}; {switch_verdict(verify)}", flush=True)
            for line in verify_lines(verify)[1:]:  # each difference, in ovs-ofctl text
                print(f"        {line.removeprefix('# ')}", flush=True)
            held = held and bool(verify.get("in_sync"))
        verdict = "the matrix is as the policy says" if matched else "MATRIX MISMATCH"
        verdict += ", the QoS cap holds" if within_cap else ", QoS CAP NOT HELD"
        verdict += ", every switch holds exactly its flows" if held else ", A SWITCH DIFFERS"
        self.say(f"done in {time.monotonic() - started:.0f} s: {verdict}. `make demo-down` removes it all")
        return matched and within_cap and held

    def iperf(self, client: str, server: str) -> float:
        """TCP throughput from `client` to `server` in Mbit/s, measured by iperf3 over 3 seconds after a first
        one left out (TCP's slow start, and the meter's full bucket at the start)."""
        pods = self.lab.state.pods
        receiver, sender = pods[server].as_pod(), pods[client].as_pod()
        listener = receiver.popen("iperf3", "-s", "-1", "-B", receiver.ip)
        try:
            wait_for(lambda: ":5201" in receiver.run("ss", "-ltn", check=False), f"iperf3 to listen in {server}")
            done = sender.run(
                "iperf3", "-c", receiver.ip, "-t", "3", "-O", "1", "-J", "--connect-timeout", "3000", check=False
            )
            report = json.loads(done) if done.strip().startswith("{") else {}
            if not report.get("end", {}).get("sum_received"):
                raise LabError(f"iperf3 from {client} to {server} did not run: {report.get('error', done[:300])}")
            return report["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            listener.kill()
            listener.wait(timeout=10)

    def snapshot(self) -> dict:
        client = self.lab.client
        return {
            "nodes": self.lab.state.nodes,
            "networks": client.get("/v1/networks"),
            "pods": [
                {"name": p.name, "node": p.node, "network": p.network, "ip": p.ip} for p in self.lab.state.pods.values()
            ],
        }


def switch_verdict(verify: dict) -> str:
    """One switch's comparison of a fresh dump with its desired state, in words."""
    if not verify.get("checked"):
        return f"OVS NOT CHECKED: {verify.get('reason')}"
    if verify.get("in_sync"):
        return "OVS holds exactly that"
    missing, extra, different = (len(verify.get(k, [])) for k in ("missing", "extra", "different"))
    return f"OVS DIFFERS: {missing} missing, {extra} extra, {different} different"


def indent(text: str) -> str:
    return "\n".join(f"      {line}" for line in text.splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", action="store_true", help="remove everything the demo made")
    parser.add_argument("--state-dir", type=Path, default=STATE, help=f"where the demo keeps its state ({STATE})")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    demo = Demo(args.state_dir)
    try:
        if args.down:
            demo.lab.down()
            print("demo: down, nothing left", flush=True)
            return 0
        return 0 if demo.run() else 1
    except LabError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
