"""Compile benchmark: a synthetic cluster compiled in full, per node, and incrementally.

    python -m bench.compile --nodes 1000 --tenants 100 --networks 1000 --endpoints 50000 --json
    python -m bench.compile --churn 100000 --json     # then N random changes, ids and VNIs reused

Networks are spread evenly over tenants (every tenant reuses the same subnets, so they overlap across
tenants), endpoints evenly over networks and uniformly at random over nodes with a fixed seed, so a
network spans many nodes as it would in a real cluster.

`--churn N` then makes N random changes, each timed with its incremental update (see `bench.churn`), and
compares the memory the compiler holds afterwards with a fresh full compile of the final model.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from bench.churn import churn
from controller.pipeline.compile import Compiler
from topology.model import Model, touched_by


def synthetic_model(nodes: int, tenants: int, networks: int, endpoints: int, *, seed: int = 7) -> Model:
    rng = random.Random(seed)
    model = Model()
    for i in range(nodes):
        model.add_node(f"node{i}", tunnel_ip=str(IPv4Address("172.16.0.1") + i), uplink="eth1")
    for t in range(tenants):
        model.add_tenant(f"tenant{t}")
    keys = []
    for n in range(networks):
        tenant, index = f"tenant{n % tenants}", n // tenants
        model.add_network(tenant, f"net{index}", encap="vxlan", segment=10_000 + n, subnet=f"10.{index % 256}.0.0/16")
        keys.append(f"{tenant}/net{index}")
    for e in range(endpoints):
        model.add_endpoint(f"ep{e}", network=keys[e % networks], node=f"node{rng.randrange(nodes)}")
    return model


def measure(args: argparse.Namespace) -> dict:
    model = synthetic_model(args.nodes, args.tenants, args.networks, args.endpoints, seed=args.seed)
    compiler = Compiler(model)
    start = time.perf_counter()
    states = compiler.compile_all()
    full = time.perf_counter() - start
    flows_total = sum(state.flow_count() for state in states.values())
    # As the controller does after its first full compile: the compiled state lives as long as the
    # process, so it is moved out of the cyclic collector's scans (which would otherwise pause the
    # next incremental update for a second or more at this size).
    gc.freeze()

    rng = random.Random(args.seed + 1)
    sample = rng.sample(sorted(model.nodes), min(args.sample, len(model.nodes)))
    per_node = []
    for name in sample:
        start = time.perf_counter()
        Compiler(model).compile_node(name)  # cold: nothing cached, as after a restart
        per_node.append((time.perf_counter() - start) * 1000)

    adds, changes, nodes_touched, hosts = [], [], [], []
    networks = sorted(model.networks)
    for i in range(args.adds):
        key = rng.choice(networks)
        node = rng.choice(sorted(model.hosts[key]) or sorted(model.nodes))
        start = time.perf_counter()
        endpoint = model.add_endpoint(f"bench-add{i}", network=key, node=node)
        update = compiler.update(touched_by(endpoint))
        adds.append((time.perf_counter() - start) * 1000)
        changes.append(sum(len(cs) for cs in update.values()))
        nodes_touched.append(len(update))
        hosts.append(len(model.hosts[key]))
    result = {
        "nodes": args.nodes,
        "tenants": args.tenants,
        "networks": args.networks,
        "endpoints": args.endpoints,
        "full_compile_s": round(full, 3),
        "flows_total": flows_total,
        "flows_per_node_mean": round(flows_total / max(1, len(states))),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "node_compile_ms": round(statistics.median(per_node), 3),
        "incremental_add_ms": round(statistics.median(adds), 3),
        "incremental_add_ms_max": round(max(adds), 3),
        "incremental_add_changes": round(statistics.median(changes)),
        "incremental_add_nodes": round(statistics.median(nodes_touched)),
        "network_hosts": round(statistics.median(hosts)),
    }
    if args.churn:
        result.update(churn(model, compiler, args.churn, seed=args.seed + 2))
    return result


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `low`, else an error naming the bound (exit 2, no traceback)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"want an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"want at least {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--nodes", type=at_least(1), metavar="N", default=100, help="nodes of the cluster (default 100)"
    )
    parser.add_argument("--tenants", type=at_least(1), metavar="N", default=10, help="tenants (default 10)")
    parser.add_argument(
        "--networks", type=at_least(1), metavar="N", default=100, help="networks, over the tenants (default 100)"
    )
    parser.add_argument(
        "--endpoints", type=at_least(0), metavar="N", default=5000, help="endpoints, over the networks (default 5000)"
    )
    parser.add_argument("--seed", type=int, metavar="N", default=7, help="the random seed (default 7)")
    parser.add_argument(
        "--sample",
        type=at_least(1),
        metavar="N",
        default=20,
        help="nodes compiled one by one for node_compile_ms (default 20)",
    )
    parser.add_argument(
        "--adds", type=at_least(1), metavar="N", default=50, help="single-endpoint additions timed (default 50)"
    )
    parser.add_argument(
        "--churn",
        type=at_least(0),
        metavar="N",
        default=0,
        help="random changes (ids, names and VNIs reused) timed after the rest (default 0)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (the default prints lines)")
    args = parser.parse_args(argv)
    result = measure(args)
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
