"""NetworkPolicy benchmark: what a cluster's policies cost in flows, and what one change costs to compile.

    python -m bench.netpol --nodes 50 --namespaces 20 --pods 2000 --policies 100 --json

One tenant; pods spread over namespaces and nodes, labelled `app=a0..a9`; each policy selects one app in
one namespace and lets in another app from every namespace on two ports. Figures: the full compile; the
policy flows (conjunctive clauses and one allow flow per rule clause set) against what the same rules
would cost as one flow per (pod, peer, port); and a label change, a pod added and a policy replaced,
compiled incrementally: time, nodes changed and flow-mods, against a full compile.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from ipaddress import IPv4Address
from typing import Any

from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import split
from controller.pipeline.features import netpol
from topology.model import Model, touched_by
from topology.netpol import resolve


def synthetic(nodes: int, namespaces: int, pods: int, policies: int, *, seed: int = 7) -> Model:
    rng = random.Random(seed)
    model = Model()
    for i in range(nodes):
        model.add_node(f"node{i}", tunnel_ip=str(IPv4Address("172.16.0.1") + i))
    model.add_tenant("t")
    model.add_network("t", "pods", encap="vxlan", segment=5000, subnet="10.0.0.0/16")
    for n in range(namespaces):
        model.add_namespace(f"ns{n}", tenant="t", labels={"team": f"t{n % 4}"})
    for p in range(pods):
        labels = {"app": f"a{rng.randrange(10)}"}
        ports = [{"name": "http", "port": 80}]
        node, namespace = f"node{rng.randrange(nodes)}", f"ns{p % namespaces}"
        model.add_endpoint(f"p{p}", network="t/pods", node=node, namespace=namespace, labels=labels, ports=ports)
    for i in range(policies):
        model.apply_policy(policy(i, f"ns{i % namespaces}", rng))
    return model


def policy(i: int, namespace: str, rng: random.Random) -> dict:
    spec = {
        "podSelector": {"matchLabels": {"app": f"a{rng.randrange(10)}"}},
        "ingress": [
            {
                "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": f"a{rng.randrange(10)}"}}}],
                "ports": [{"port": "http"}, {"port": 8080, "endPort": 8083}],
            }
        ],
    }
    meta = {"name": f"p{i}", "namespace": namespace}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


def product_flows(model: Model) -> int:
    """Flows the same rules would take as one flow per (selected pod, peer, port match)."""
    total = 0
    for p in model.policies.values():
        for rule in resolve(model, p).rules:
            for c in rule.clauses:
                total += len(c.local) * (len(c.peers) + len(c.cidrs) or 1) * len(c.ports or [None])
    return total


def timed(compiler: Compiler, touched: object) -> dict:
    start = time.perf_counter()
    changes = compiler.update(touched)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    mods = sum(len(c.flow_adds) + len(c.flow_mods) + len(c.flow_deletes) for c in changes.values())
    return {"ms": round(elapsed * 1000, 2), "nodes": len(changes), "flow_mods": mods}


def measure(args: argparse.Namespace) -> dict:
    model = synthetic(args.nodes, args.namespaces, args.pods, args.policies)
    compiler = Compiler(model)
    start = time.perf_counter()
    states = compiler.compile_all()
    full = time.perf_counter() - start
    policy_flows = sum(1 for s in states.values() for f in s.flows() if split(f.cookie)[1] in netpol.FEATURES)
    product = product_flows(model)
    rng = random.Random(args.pods)
    label = timed(compiler, model.set_endpoint_labels("p1", {"app": "a3"}))
    pod: dict[str, Any] = {"namespace": "ns0", "labels": {"app": "a1"}, "ports": [{"name": "http", "port": 80}]}
    added = timed(compiler, touched_by(model.add_endpoint("new", network="t/pods", node="node0", **pod)))
    replaced = timed(compiler, model.apply_policy(policy(0, "ns0", rng))[1])
    return {
        "cluster": vars(args),
        "full_compile_ms": round(full * 1000, 1),
        "policy_flows": policy_flows,
        "policy_flows_as_product": product,
        "product_over_conjunctive": round(product / max(policy_flows, 1), 2),
        "label_change": label,
        "pod_added": added,
        "policy_replaced": replaced,
        "full_over_label_change": round(full * 1000 / max(label["ms"], 0.01), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netpol", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print JSON (the default prints it too, indented)")
    args = parser.parse_args(argv)
    result = measure(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
