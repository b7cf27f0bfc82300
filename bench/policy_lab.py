"""NetworkPolicy realization with real packets: from a policy's apply (the API call) until every node enforces it.

    python -m bench.policy_lab [--policies 20] [--json]

A 3-node `tenet-lab` (lab.cluster.Lab, in a state directory of its own under /tmp) with one server pod per node
in namespace `bench` (TCP 80, `--serve 80/tcp`) and one client pod per node in namespace `clients`, so each
of the 9 client-server pairs is one of same node and across nodes. For each of `policies` rounds:

- apply: a `PUT /v1/namespaces/bench/networkpolicies/deny-N` isolating every server for ingress (podSelector
  {}, policyTypes [Ingress]). A prober in each client pod opens a new TCP connection to each server every
  5 ms (each waiting at most 300 ms for the server's answer) from before the call; a pair has flipped at the
  start of its first connection that got no answer (and the next one neither). The round's realization is
  from just before the API call to the last of the 9 pairs' flips: the policy enforced on every node.
- remove: the `DELETE` of the same policy, timed the same way until every pair is answered again (a pair's
  flip: the start of its first answered connection, each attempt waiting 20 ms: the figure's resolution).

Reported: realization_ms_p50/p99 over the applies (and removal_ms_p50/p99 over the deletes), milliseconds.
Needs root. Everything made is removed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import ms, percentile
from controller.client import path
from lab.cluster import Lab, LabPod
from lab.servers import PYTHON, parse_serve

NODES = 3
NETWORK = "bench/pods"
PORT = 80
DENIED_WAIT_S = 0.3  # an attempt unanswered this long counts as dropped
ALLOWED_WAIT_S = 0.02  # waiting for a new policy's removal: each attempt's wait (the resolution)
INTERVAL_S = 0.005  # between attempts to one server
FLIP_WITHIN_S = 30.0
CONFIG: dict[str, Any] = {
    "tenants": [
        {"name": "bench", "networks": [{"name": "pods", "encap": "vxlan", "vni": 7101, "subnet": "10.9.0.0/16"}]}
    ],
    "namespaces": [{"name": "bench", "tenant": "bench"}, {"name": "clients", "tenant": "bench"}],
}

PROBER = r"""
import json, socket, sys, threading, time
targets, until = json.loads(sys.argv[1]), sys.argv[2]
port, (wait, interval, within) = int(sys.argv[3]), (float(a) for a in sys.argv[4:7])
def attempt(ip):
    start = time.monotonic()
    try:
        with socket.create_connection((ip, port), timeout=wait) as c:
            c.settimeout(wait)
            return start, bool(c.recv(64))
    except OSError:
        return start, False
def answered(ip):
    for _ in range(20):  # before the change: every server answers, or none does
        if attempt(ip)[1] == (until == "denied"):
            return True
    return False
if not all(answered(ip) for ip in targets):
    print(json.dumps({"error": "a server is not in the state before the change"}), flush=True)
    sys.exit(1)
flips = {}
def watch(ip):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        start, ok = attempt(ip)
        if ok == (until == "allowed") and (until == "allowed" or not attempt(ip)[1]):
            flips[ip] = start
            return
        time.sleep(max(0.0, start + interval - time.monotonic()))
print("ready", flush=True)
threads = [threading.Thread(target=watch, args=(ip,)) for ip in targets]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(flips), flush=True)
"""


def deny(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def timed_change(clients: list[LabPod], servers: list[LabPod], until: str, change: Any) -> float:
    """Seconds from just before `change()` until every client's connections to every server are `until`
    ("denied" or "allowed"). Raises RuntimeError when a pair does not flip within FLIP_WITHIN_S."""
    wait = DENIED_WAIT_S if until == "denied" else ALLOWED_WAIT_S
    targets = json.dumps([s.ip for s in servers])
    probers = []
    try:
        for client in clients:
            args = [targets, until, str(PORT), f"{wait:g}", f"{INTERVAL_S:g}", f"{FLIP_WITHIN_S:g}"]
            command = ["ip", "netns", "exec", client.netns, PYTHON, "-I", "-S", "-c", PROBER, *args]
            probers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        for prober, client in zip(probers, clients, strict=True):
            assert prober.stdout is not None
            line = prober.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"the prober in {client.name} did not start: {line}")
        start = time.monotonic()
        change()
        flips: list[float] = []
        for prober, client in zip(probers, clients, strict=True):
            out, _ = prober.communicate(timeout=FLIP_WITHIN_S + 10)
            found = json.loads(out)
            if len(found) != len(servers):
                raise RuntimeError(f"from {client.name}: not every server {until} within {FLIP_WITHIN_S:g} s: {found}")
            flips += found.values()
        return max(flips) - start
    finally:
        for prober in probers:
            if prober.poll() is None:
                prober.kill()
            prober.wait(timeout=10)


def realization(policies: int = 20) -> dict[str, Any]:
    """Build a 3-node lab, apply and delete `policies` NetworkPolicies one after the other, and time each
    from its API call until every node enforces it, with real packets (the module's docstring). Returns
    {"realization_ms_p50", "realization_ms_p99", "removal_ms_p50", "removal_ms_p99" (ms), "policies",
    "pairs", "nodes", "samples_ms": {"realization": [...], "removal": [...]}}. Needs root; raises
    RuntimeError when a policy is not enforced within 30 s; the lab is removed in every case."""
    if policies < 1:
        raise ValueError(f"policies: want at least 1, got {policies}")
    state = Path(tempfile.mkdtemp(prefix="tenet-bench-policy-lab-"))
    lab = Lab(state)
    try:
        lab.up(NODES, CONFIG)
        serve = parse_serve(f"{PORT}/tcp")
        servers, clients = [], []
        for i in range(1, NODES + 1):
            node = f"node{i}"
            servers.append(
                lab.pod_add(f"s{i}", node, "bench/pods", namespace="bench", labels={"app": "s"}, serve=serve)
            )
            clients.append(lab.pod_add(f"c{i}", node, "bench/pods", namespace="clients", labels={"app": "c"}))
        applied, removed = [], []
        for n in range(policies):
            doc, where = deny(f"deny-{n}"), path("v1", "namespaces", "bench", "networkpolicies", f"deny-{n}")
            applied.append(timed_change(clients, servers, "denied", lambda w=where, d=doc: lab.client.put(w, d)))
            removed.append(timed_change(clients, servers, "allowed", lambda w=where: lab.client.delete(w)))
    finally:
        lab.down()
        shutil.rmtree(state, ignore_errors=True)
    return {
        "realization_ms_p50": ms(percentile(applied, 0.5)),
        "realization_ms_p99": ms(percentile(applied, 0.99)),
        "removal_ms_p50": ms(percentile(removed, 0.5)),
        "removal_ms_p99": ms(percentile(removed, 0.99)),
        "policies": policies,
        "pairs": len(servers) * len(clients),
        "nodes": NODES,
        "samples_ms": {"realization": [ms(s) for s in applied], "removal": [ms(s) for s in removed]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.policy_lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", type=int, default=20, help="policies applied and deleted (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.policies < 1:
        parser.error("--policies must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, Open vSwitch)")
    result = realization(args.policies)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
