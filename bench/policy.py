"""NetworkPolicy benchmark: flows per rule, compile at scale, and what one change costs as the cluster grows.

    python -m bench.policy --json            # 10,000 endpoints, 1,000 policies, 100 namespaces, 100 nodes
    python -m bench.policy --json --repeat 3 # the medians of three rounds (`per_round`: each round's ratios)
    python -m bench.policy --json --lab      # and the lab's realization latency (bench.policy_lab), if present

(a) Flows per rule: one rule with F peers, T selected pods on one node and P ports costs about F + T + P
    clause flows plus one allow flow (conjunctive match), not F x T x P.
(c) Compile at scale: the full compile (time, and peak memory as the growth of the process's maximum
    resident set; `full_compile_then_gc_ms`: the collection that follows it, once), then label changes
    (each on another pod) and policy changes (each on another policy) compiled incrementally, `--repeats`
    of each, at the full size and at 1/10 of it, the two sizes in turn
    so that both meet the same load of a shared machine: the one-change time must not grow with the
    cluster. Targets: one change < 20 ms at the full size, and at most 1.5x the time at 1/10 of the size
    (`meets_target`). Each figure is the median (p50) of the changes: time (ms), flow mods, nodes with a
    change and time per flow mod (us); `large_over_small` has the ratio of each time and of each time per
    flow mod. A relabelled pod's address is matched on every node holding a pod selected by a policy that
    names it (traffic is decided at its destination's node): at the full size those pods are spread over
    more nodes, so the flow mods, and with them the time, grow even where the time per flow mod does not.
    Each compiled cluster is settled as the controller settles its own after its start's compile
    (`settle_collector`: frozen out of the cyclic collector's sight, its first generation's threshold
    raised); `*_mean_ms` is the mean beside the median, with the changes in which the collector ran.

The cluster: one tenant, namespaces of 100 pods (labels app=a0..a9), 10 policies per namespace. Policy j of
a namespace selects app=a{j}, lets in app=a{j+1} of its namespace on TCP 80 and 8080-8083 (and, one policy
in ten, app=a0 of the 10 namespaces of its team, by namespaceSelector), and lets out to app=a{j+2} on UDP 53
and to 10.96.0.0/12. "realization" is the time from a change to packets deciding by it on real switches,
measured by the lab (`bench.policy_lab.realization()`); null unless `--lab` is given and the lab is there.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import random
import resource
import statistics
import sys
import time
from ipaddress import IPv4Address
from typing import Any

from bench.stats import median_of_rounds
from controller.pipeline.compile import Compiler, settle_collector
from controller.pipeline.cookies import split
from controller.pipeline.features import netpol
from controller.pipeline.ir import Conjunction
from topology.model import Model

TARGET_MS = 20.0
TARGET_RATIO = 1.5
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}


# --- (a) flows per rule ----------------------------------------------------------------------------


def one_rule(peers: int, selected: int, ports: int) -> dict[str, Any]:
    """Flows of one ingress rule with `peers` peer pods, `selected` selected pods on node n0, `ports` ports."""
    model = Model()
    for i in range(2):
        model.add_node(f"n{i}", tunnel_ip=f"192.168.0.{i + 1}")
    model.add_tenant("t")
    model.add_network("t", "pods", encap="vxlan", segment=5000, subnet="10.0.0.0/16")
    model.add_namespace("web", tenant="t")
    model.add_namespace("clients", tenant="t")
    for i in range(selected):
        model.add_endpoint(f"s{i}", network="t/pods", node="n0", namespace="web", labels={"app": "web"})
    for i in range(peers):
        model.add_endpoint(f"c{i}", network="t/pods", node="n1", namespace="clients", labels={"app": "client"})
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {
                "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
                "ports": [{"port": 1000 + 2 * k} for k in range(ports)],  # even ports: one exact match each
            }
        ],
    }
    model.apply_policy({**POLICY, "metadata": {"name": "web", "namespace": "web"}, "spec": spec})
    state = Compiler(model).compile_all()["n0"]
    rule = [f for f in state.flows() if any(isinstance(a, Conjunction) for a in f.actions)]
    allow = [f for f in state.flows() if split(f.cookie)[1] is netpol.Feature.NETPOL_RULE]
    flows = len(rule) + len(allow)
    return {
        "peers": peers,
        "selected": selected,
        "ports": ports,
        "flows": flows,
        "product": peers * selected * ports,
        "flows_over_product": round(flows / (peers * selected * ports), 5),
        "sum": peers + selected + ports,
        "flows_over_sum": round(flows / (peers + selected + ports), 3),
    }


# --- (c) compile at scale --------------------------------------------------------------------------


def cluster(endpoints: int, policies: int, namespaces: int, nodes: int, *, seed: int = 7) -> Model:
    rng = random.Random(seed)
    model = Model()
    for i in range(nodes):
        model.add_node(f"node{i}", tunnel_ip=str(IPv4Address("172.16.0.1") + i))
    model.add_tenant("t")
    model.add_network("t", "pods", encap="vxlan", segment=5000, subnet="10.0.0.0/14")
    for n in range(namespaces):
        model.add_namespace(f"ns{n}", tenant="t", labels={"team": f"team{n // 10}"})
    for p in range(endpoints):
        labels = {"app": f"a{p // namespaces % 10}"}
        node, namespace = f"node{rng.randrange(nodes)}", f"ns{p % namespaces}"
        model.add_endpoint(f"p{p}", network="t/pods", node=node, namespace=namespace, labels=labels)
    for i in range(policies):
        model.apply_policy(policy(i, namespaces))
    return model


def policy(i: int, namespaces: int, *, port: int = 80) -> dict[str, Any]:
    n, j = i % namespaces, i // namespaces % 10
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {"app": f"a{(j + 1) % 10}"}}}]
    if i % 10 == 0:
        team = {"matchLabels": {"team": f"team{n // 10}"}}
        peers.append({"namespaceSelector": team, "podSelector": {"matchLabels": {"app": "a0"}}})
    spec = {
        "podSelector": {"matchLabels": {"app": f"a{j}"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": peers, "ports": [{"port": port}, {"port": 8080, "endPort": 8083}]}],
        "egress": [
            {
                "to": [{"podSelector": {"matchLabels": {"app": f"a{(j + 2) % 10}"}}}],
                "ports": [{"port": 53, "protocol": "UDP"}],
            },
            {"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}]},
        ],
    }
    return {**POLICY, "metadata": {"name": f"p{i}", "namespace": f"ns{n}"}, "spec": spec}


def timed(compiler: Compiler, change: Any) -> tuple[float, int, int]:
    """(ms, flow mods, nodes with a change) of one model change compiled incrementally."""
    start = time.perf_counter()
    changes = compiler.update(change())
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, sum(len(c) for c in changes.values()), sum(1 for c in changes.values() if c)


def medians(name: str, samples: list[tuple[float, int, int]]) -> dict[str, Any]:
    """p50 of each figure of the timed changes of one kind: ms, flow mods, nodes and us per flow mod; and the
    mean ms (the p50 leaves out the changes in which the cyclic collector ran)."""
    return {
        f"{name}_ms": round(statistics.median(s[0] for s in samples), 2),
        f"{name}_mean_ms": round(statistics.mean(s[0] for s in samples), 2),  # with the collector's rare passes
        f"{name}_flow_mods": int(statistics.median(s[1] for s in samples)),
        f"{name}_nodes": int(statistics.median(s[2] for s in samples)),
        f"{name}_us_per_flow_mod": round(statistics.median(s[0] * 1000 / max(s[1], 1) for s in samples), 1),
    }


class AtScale:
    """One cluster, fully compiled (`figures` holds the compile's figures), whose changes `change(k)` times."""

    def __init__(self, endpoints: int, policies: int, namespaces: int, nodes: int) -> None:
        self.model = model = cluster(endpoints, policies, namespaces, nodes)
        self.sizes = (endpoints, policies, namespaces)
        gc.collect()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.compiler = Compiler(model)
        start = time.perf_counter()
        states = self.compiler.compile_all()
        full = time.perf_counter() - start
        start = time.perf_counter()
        settle_collector()  # as the controller does after its start's compile: paid once, here, not by a change
        collect = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.figures = {
            "endpoints": endpoints,
            "policies": policies,
            "namespaces": namespaces,
            "nodes": nodes,
            "full_compile_ms": round(full * 1000, 1),
            "full_compile_then_gc_ms": round(collect * 1000, 1),
            "full_compile_peak_rss_mb": round((rss_after - rss_before) / 1024, 1),  # ru_maxrss: KiB on Linux
            "policy_flows": sum(1 for s in states.values() for f in s.flows() if split(f.cookie)[1] in netpol.FEATURES),
        }
        self.rng = random.Random(endpoints)
        self.labels: list[tuple[float, int, int]] = []
        self.changes: list[tuple[float, int, int]] = []

    def change(self, k: int, repeats: int) -> None:
        """The k-th label change (each on another pod) and policy change (each on another policy), timed."""
        endpoints, policies, namespaces = self.sizes
        if k == 0:
            self.pods = self.rng.sample(range(endpoints), min(repeats, endpoints))
            self.numbers = self.rng.sample(range(policies), min(repeats, policies))
        model = self.model
        pod = f"p{self.pods[k % len(self.pods)]}"
        app = model.endpoints[pod].label_map["app"]
        other = f"a{(int(app[1:]) + 1 + self.rng.randrange(9)) % 10}"
        self.labels.append(timed(self.compiler, lambda: model.set_endpoint_labels(pod, {"app": other})))
        doc = policy(self.numbers[k % len(self.numbers)], namespaces, port=81 + k)
        self.changes.append(timed(self.compiler, lambda: model.apply_policy(doc)[1]))

    def next_round(self) -> None:
        """Forget the timed changes: the next round times its own (on other pods and policies)."""
        self.labels, self.changes = [], []

    def result(self) -> dict[str, Any]:
        return {
            **self.figures,
            **medians("label_change", self.labels),
            **medians("policy_change", self.changes),
            "repeats": len(self.labels),
        }


def realization(lab: bool) -> dict[str, Any] | None:
    """The lab's figure (bench/policy_lab.py), when asked for and present; None otherwise."""
    if not lab:
        return None
    try:
        module = importlib.import_module("bench.policy_lab")
    except ImportError:
        return None
    return module.realization()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rules = [one_rule(f, t, p) for f, t, p in ((10, 10, 3), (100, 20, 5), (1000, 50, 10))]
    size = (args.endpoints, args.policies, args.namespaces, args.nodes)
    tenth = [max(1, v // 10) for v in size]
    scales = [AtScale(*tenth), AtScale(*size)]
    rounds = []
    for _round in range(args.repeat):
        for scale in scales:
            scale.next_round()
        for k in range(args.repeats):  # in turn, so that both sizes meet the same load of a shared machine
            for scale in scales:
                scale.change(k, args.repeats)
        small, large = (scale.result() for scale in scales)
        ratio = {
            f"{kind}{unit}": round(large[f"{kind}_{figure}"] / max(small[f"{kind}_{figure}"], 0.001), 2)
            for kind in ("label_change", "policy_change")
            for unit, figure in (("", "ms"), ("_per_flow_mod", "us_per_flow_mod"))
        }
        rounds.append({"small": small, "large": large, "large_over_small": ratio})
    merged = median_of_rounds(rounds)
    small, large, ratio = merged["small"], merged["large"], merged["large_over_small"]
    meets = (
        large["label_change_ms"] < TARGET_MS
        and large["policy_change_ms"] < TARGET_MS
        and ratio["label_change"] <= TARGET_RATIO
        and ratio["policy_change"] <= TARGET_RATIO
    )
    return {
        "flows_per_rule": rules,
        "scale": {"small": small, "large": large, "large_over_small": ratio},
        "rounds": len(rounds),
        "per_round": {k: [r["large_over_small"][k] for r in rounds] for k in ("label_change", "policy_change")},
        "targets": {"one_change_ms": TARGET_MS, "large_over_small": TARGET_RATIO},
        "meets_target": meets,
        "realization": realization(args.lab),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.policy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=10_000, help="endpoints at the full size (default 10000)")
    parser.add_argument("--policies", type=int, default=1_000, help="NetworkPolicies at the full size (1000)")
    parser.add_argument("--namespaces", type=int, default=100, help="namespaces at the full size (100)")
    parser.add_argument("--nodes", type=int, default=100, help="nodes at the full size (100)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=60,
        help="changes of each kind timed per round, each on another pod or policy (their p50 kept; default 60)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of --repeats changes each on the same compiled clusters (the "
        "full compile is timed once); print the medians of the rounds (default 1)",
    )
    parser.add_argument("--lab", action="store_true", help="also run bench.policy_lab.realization(), if present")
    parser.add_argument("--json", action="store_true", help="print one line of JSON (else indented)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.repeats < 1:
        parser.error("--repeat and --repeats must be at least 1")
    result = measure(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
