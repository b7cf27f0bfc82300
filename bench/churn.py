"""Churn: random changes to a compiled cluster, with names, ids and VNIs reused, each timed with its update.

The changes, drawn with a fixed seed:
- an endpoint (one of the model's, or of a small pool of extra ids) is removed if it exists, else added to a
  random network on a random node: endpoint ids, numbers, ofports, IPs and MACs are reused all the time;
- one of a pool of extra networks (each with its own VNI) is created in a random tenant when absent, loses
  an endpoint when it has some, and is deleted when empty: network ids and VNIs move between tenants;
- a QoS profile is attached to a random endpoint or network, or detached from it: meter ids are reused;
- a fabric link port goes down or comes up (two links are added before the churn starts).

Memory is the compiler's own: the bytes of every object reachable from the `Compiler` (states, sections,
flows, memos, indexes) and not from the model, each object counted once (`sys.getsizeof` over
`gc.get_referents`). It is measured after the churn, and for a fresh full compile of the final model.
"""

from __future__ import annotations

import gc
import random
import resource
import statistics
import sys
import time
import types

from bench.stats import percentile
from controller.pipeline.compile import Compiler
from controller.pipeline.state import diff
from topology.model import Model, Touched, touched_by

EXTRA_ENDPOINTS = 2000  # ids churn-0 .. churn-1999, besides the model's own
EXTRA_NETWORKS = 50  # churn networks, VNIs 900000 + i
PROFILES = {"gold": (100_000, 1000), "silver": (10_000, 100)}
SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def churn(model: Model, compiler: Compiler, count: int, *, seed: int) -> dict:
    """Make `count` random changes; return per-change timing (ms), peak RSS (MiB) and compiler memory (MiB)."""
    rng = random.Random(seed)
    for name, (rate, burst) in PROFILES.items():
        if name not in model.qos_profiles:
            compiler.update(model.add_qos(name, rate_kbps=rate, burst_kb=burst))
    nodes = sorted(model.nodes)
    pairs = [(nodes[i], nodes[i + 1]) for i in range(min(2, len(nodes) - 1))]
    links = [(a, f"churn-{b}", b, f"churn-{a}") for a, b in pairs]
    for a, a_port, b, b_port in links:
        model.add_link(a, a_port, b, b_port)
    if links:
        compiler.compile_all()  # as a controller starting with these links would; not timed
    originals = sorted(model.endpoints)
    extra_networks: dict[int, str] = {}  # index -> key, while it exists
    kinds = ["endpoint"] * 14 + ["network"] * 3 + ["qos"] * 2 + (["link"] if links else [])
    times: list[float] = []
    counts: dict[str, int] = dict.fromkeys(set(kinds), 0)
    for step in range(count):
        kind = rng.choice(kinds)
        start = time.perf_counter()
        touched = change(model, rng, kind, originals, extra_networks, links, step)
        if touched is not None:
            compiler.update(touched)
        times.append((time.perf_counter() - start) * 1000)
        counts[kind] += 1
        if (step + 1) % 1000 == 0:  # progress on stderr; the figures go to stdout
            print(f"churn: {step + 1}/{count} changes, {sum(times) / 1000:.0f} s", file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fresh = Compiler(model)
    fresh_states = fresh.compile_all()
    equal = all(not diff(fresh_states[name], compiler.states[name]) for name in model.nodes)
    equal = equal and set(compiler.states) == set(fresh_states)
    model_ids = reachable_ids(model)
    after, fresh_bytes = held_bytes(compiler, model_ids), held_bytes(fresh, model_ids)
    return {
        "churn_ops": count,
        "churn_ops_by_kind": counts,
        "churn_op_ms_median": round(statistics.median(times), 3),
        "churn_op_ms_p99": round(percentile(times, 0.99), 3),
        "churn_op_ms_max": round(max(times), 3),
        "churn_peak_rss_mib": round(peak, 1),
        "churn_equals_full_compile": equal,
        "compiler_mib_after_churn": round(after / 2**20, 1),
        "compiler_mib_fresh": round(fresh_bytes / 2**20, 1),
        "compiler_memory_ratio": round(after / fresh_bytes, 3),
        "compiler_memory_method": "getsizeof over objects reachable from the Compiler, less the model's",
        "endpoints_after_churn": len(model.endpoints),
        "networks_after_churn": len(model.networks),
    }


def change(
    model: Model,
    rng: random.Random,
    kind: str,
    originals: list[str],
    extra_networks: dict[int, str],
    links: list[tuple[str, str, str, str]],
    step: int,
) -> Touched | None:
    """One random change of `kind`; returns what it touched (None: nothing to do)."""
    if kind == "endpoint":
        endpoint_id = rng.choice(originals) if rng.random() < 0.5 else f"churn-{rng.randrange(EXTRA_ENDPOINTS)}"
        if endpoint_id in model.endpoints:
            return model.remove_endpoint(endpoint_id)
        key = rng.choice(list(model.networks))
        node = f"node{rng.randrange(len(model.nodes))}"
        return touched_by(model.add_endpoint(endpoint_id, network=key, node=node))
    if kind == "network":
        index = rng.randrange(EXTRA_NETWORKS)
        extra = extra_networks.get(index)
        if extra is None:
            tenant = rng.choice(sorted(model.tenants))
            name = f"churn{index}"
            extra_networks[index] = f"{tenant}/{name}"
            return model.add_network(
                tenant, name, encap="vxlan", segment=900_000 + index, subnet=f"172.31.{index}.0/24"
            )
        if model.endpoints_by_network[extra]:
            return model.remove_endpoint(next(iter(model.endpoints_by_network[extra])))
        del extra_networks[index]
        return model.remove_network(extra)
    if kind == "qos":
        for _ in range(10):  # an endpoint of the model's (it may be away just now), or a network
            target = rng.choice(originals) if rng.random() < 0.8 else rng.choice(list(model.networks))
            if target in model.qos_attachments:
                return model.detach_qos(target)
            if target in model.endpoints or target in model.networks:
                return model.attach_qos(rng.choice(sorted(PROFILES)), target)
        return None
    a, a_port, _, _ = rng.choice(links)
    return model.set_link_port(a, a_port, up=not model.link_port_up(a, a_port))


def reachable_ids(root: object) -> set[int]:
    """Ids of every object reachable from `root` (classes, modules and functions left out)."""
    return set(_walk(root, set()))


def held_bytes(root: object, exclude: set[int]) -> int:
    """Bytes of the objects reachable from `root` without passing through `exclude`, each counted once."""
    return sum(_walk(root, exclude).values())


def _walk(root: object, stop: set[int]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    todo = [root]
    while todo:
        item = todo.pop()
        key = id(item)
        if key in sizes or key in stop or isinstance(item, SKIP):
            continue
        sizes[key] = sys.getsizeof(item)
        todo.extend(gc.get_referents(item))
    return sizes
