"""Topologies for tests: the example file, and clusters generated from networkx graphs.

Generated clusters reuse the same subnets in every tenant (overlap across tenants is the point), mix
VXLAN and VLAN networks, and place endpoints on nodes with a seeded random generator.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from pathlib import Path

import networkx as nx

from topology.loader import load_file
from topology.model import Model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.yaml"


def example() -> Model:
    return load_file(EXAMPLE)


def generated(
    graph: nx.Graph | None,
    *,
    nodes: int,
    tenants: int = 2,
    networks_per_tenant: int = 2,
    endpoints: int = 16,
    uplinks: bool = False,
    vlan_share: float = 0.5,
    seed: int = 1,
) -> Model:
    """A cluster whose VLAN fabric is `graph` (node i is `n{i}`; None: no fabric links)."""
    rng = random.Random(seed)
    model = Model(reuse_network_ids=True)  # compiles must hold with reused ids
    names = [f"n{i}" for i in range(nodes)]
    for i, name in enumerate(names):
        model.add_node(name, tunnel_ip=str(IPv4Address("192.168.60.1") + i), uplink="eth1" if uplinks else None)
    if graph is not None:
        for a, b in sorted(graph.edges()):
            model.add_link(f"n{a}", f"n{a}-p{b}", f"n{b}", f"n{b}-p{a}")
    segment = 100
    keys = []
    for t in range(tenants):
        tenant = f"t{t}"
        model.add_tenant(tenant)
        for k in range(networks_per_tenant):
            segment += 1
            encap = "vlan" if rng.random() < vlan_share else "vxlan"
            model.add_network(tenant, f"net{k}", encap=encap, segment=segment, subnet=f"10.0.{k}.0/24")
            keys.append(f"{tenant}/net{k}")
    for e in range(endpoints):
        model.add_endpoint(f"e{e}", network=keys[e % len(keys)], node=rng.choice(names))
    return model


SHAPES = {
    "vxlan-only": lambda seed: generated(None, nodes=5, vlan_share=0.0, seed=seed, endpoints=18),
    "vlan-uplinks": lambda seed: generated(None, nodes=4, uplinks=True, seed=seed, endpoints=16),
    "vlan-ring": lambda seed: generated(nx.cycle_graph(4), nodes=4, seed=seed, endpoints=16),
    "vlan-grid": lambda seed: generated(
        nx.convert_node_labels_to_integers(nx.grid_2d_graph(2, 3)), nodes=6, seed=seed, endpoints=18
    ),
    "vlan-regular": lambda seed: generated(
        nx.random_regular_graph(3, 6, seed=seed), nodes=6, tenants=3, seed=seed, endpoints=18
    ),
    "vlan-tree": lambda seed: generated(nx.random_labeled_tree(5, seed=seed), nodes=5, seed=seed, endpoints=15),
    "single-node": lambda seed: generated(None, nodes=1, seed=seed, endpoints=8),
}
