"""The fabric graph: flood tree, deterministic shortest paths, loop-free next hops, carriers, pruning."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

import networkx as nx
import pytest

from topology.errors import ValidationError
from topology.graph import FABRIC, Fabric, Unreachable, build_graph, fabric_key, network_hosts
from topology.model import FIRST_LINK_OFPORT, UPLINK_OFPORT, Model, Node

ROOT = Path(__file__).resolve().parents[2]
RING = [("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s4", "s1")]


def make_model(nodes: Iterable[str], links: Iterable[tuple[str, str]], *, uplinks: Iterable[str] = ()) -> Model:
    """Nodes with tunnel IPs, optional uplinks, and one link per pair (port `to-PEER` on each side)."""
    model = Model()
    with_uplink = set(uplinks)
    for i, name in enumerate(sorted(nodes), start=1):
        model.add_node(name, tunnel_ip=f"10.1.{i // 250}.{i % 250 + 1}", uplink="eth1" if name in with_uplink else None)
    for a, b in links:
        model.add_link(a, f"to-{b}", b, f"to-{a}")
    model.add_tenant("t")
    model.add_network("t", "n", encap="vlan", segment=101, subnet="10.0.0.0/24")
    return model


def ring() -> Model:
    return make_model(["s1", "s2", "s3", "s4"], RING)


def model_from_nx(graph: nx.Graph, *, uplink_every: int = 0) -> Model:
    """Name the vertices s00, s01, ... in sorted order; every `uplink_every`-th node also gets an uplink."""
    names = {vertex: f"s{i:02d}" for i, vertex in enumerate(sorted(graph.nodes))}
    uplinks = [name for i, name in enumerate(names.values()) if uplink_every and i % uplink_every == 0]
    return make_model(names.values(), [(names[u], names[v]) for u, v in graph.edges], uplinks=uplinks)


def port_toward(fabric: Fabric, node: str, neighbour: str) -> int:
    (port,) = [p for p, n in fabric.fabric_ports(node).items() if n == neighbour]
    return port


def walk(fabric: Fabric, source: str, destination: str) -> list[str]:
    """Follow next hops as the switches would, failing on any revisited vertex."""
    path = [source]
    while path[-1] != destination:
        vertex = path[-1]
        if vertex == FABRIC:  # the physical switch: Tenet has no port there, only the vertex it leads to
            hop = fabric.next_hop(vertex, destination)
        else:
            port = fabric.next_hop_port(vertex, destination)
            assert port is not None, (vertex, destination)
            hop = fabric.fabric_ports(vertex)[port]
            assert hop == fabric.next_hop(vertex, destination)
        assert hop is not None and hop not in path, (path, hop)
        path.append(hop)
    return path


def assert_next_hops_consistent(fabric: Fabric) -> None:
    graph = fabric.graph
    for source, destination in itertools.permutations(graph.nodes, 2):
        if not nx.has_path(graph, source, destination):
            assert fabric.next_hop(source, destination) is None
            continue
        path = walk(fabric, source, destination)
        assert len(path) == nx.shortest_path_length(graph, source, destination) + 1
        assert path == fabric.shortest_path(source, destination)
        assert fabric.shortest_path(path[1], destination) == path[1:]  # hop by hop, the same route
    for node in graph.nodes:
        if node != FABRIC:
            assert fabric.next_hop_port(node, node) is None


def assert_spanning_forest(fabric: Fabric) -> None:
    tree = fabric.flood_tree()
    assert nx.is_forest(tree)
    assert set(tree.nodes) == set(fabric.graph.nodes)
    assert nx.number_connected_components(tree) == nx.number_connected_components(fabric.graph)
    assert all(fabric.graph.has_edge(a, b) for a, b in tree.edges)


def flood(fabric: Fabric, source: str, hosts: frozenset[str]) -> Counter[str]:
    """Deliver one flood from `source`: out by flood_ports, accepted only on tree ports; FABRIC floods all."""
    received: Counter[str] = Counter()
    queue: deque[tuple[str, int]] = deque((source, port) for port in fabric.flood_ports(source, hosts))

    def deliver(node: str, in_port: int) -> None:
        if in_port not in fabric.tree_ports(node):
            return  # dropped: not a tree port, so no loop
        received[node] += 1
        queue.extend((node, port) for port in fabric.flood_ports(node, hosts) if port != in_port)

    while queue:
        assert sum(received.values()) < 10 * len(fabric.graph), "flood does not stop"
        node, port = queue.popleft()
        neighbour = fabric.fabric_ports(node)[port]
        if neighbour == FABRIC:
            for other in sorted(fabric.graph[FABRIC]):
                if other != node:
                    deliver(other, UPLINK_OFPORT)
        else:
            deliver(neighbour, port_toward(fabric, neighbour, node))
    return received


GENERATED = {
    "regular": nx.random_regular_graph(3, 12, seed=7),
    "grid": nx.grid_2d_graph(3, 4),
    "tree": nx.random_labeled_tree(15, seed=3),
    "small-world": nx.connected_watts_strogatz_graph(16, 4, 0.3, seed=5),
    "two-rings": nx.disjoint_union(nx.cycle_graph(5), nx.cycle_graph(4)),
}


# --- the graph ---------------------------------------------------------------------------------


def test_ring_graph_has_link_ports_and_no_fabric_vertex() -> None:
    graph = build_graph(ring())
    assert list(graph.nodes) == ["s1", "s2", "s3", "s4"]
    assert graph.number_of_edges() == 4
    # s1 declared to-s2 first, then to-s4 (from link s4-s1).
    assert graph.edges["s1", "s2"]["ports"] == {"s1": FIRST_LINK_OFPORT, "s2": FIRST_LINK_OFPORT}
    assert graph.edges["s4", "s1"]["ports"] == {"s1": FIRST_LINK_OFPORT + 1, "s4": FIRST_LINK_OFPORT + 1}


def test_uplinks_join_the_fabric_vertex() -> None:
    graph = build_graph(make_model(["a", "b", "c"], [("a", "b")], uplinks=["a", "c"]))
    assert list(graph.nodes) == [FABRIC, "a", "b", "c"]
    assert graph.edges["a", FABRIC]["ports"] == {"a": UPLINK_OFPORT}
    assert graph.edges["c", FABRIC]["ports"] == {"c": UPLINK_OFPORT}
    assert not graph.has_edge("b", FABRIC)


def test_parallel_links_keep_the_first_declared() -> None:
    model = make_model(["s1", "s2"], [])
    model.add_link("s1", "p1", "s2", "p1")
    model.add_link("s2", "p2", "s1", "p2")
    fabric = Fabric.from_model(model)
    assert fabric.graph.number_of_edges() == 1
    assert fabric.fabric_ports("s1") == {FIRST_LINK_OFPORT: "s2"}
    assert fabric.next_hop_port("s2", "s1") == FIRST_LINK_OFPORT


def test_fabric_name_is_reserved() -> None:
    model = make_model([], [])
    with pytest.raises(ValidationError, match="is not a valid name"):  # the model refuses it: not DNS-1123
        model.add_node(FABRIC, tunnel_ip="10.9.9.9")
    model.nodes[FABRIC] = Node(FABRIC, IPv4Address("10.9.9.9"), None, 9)  # as a model without that check would
    with pytest.raises(ValidationError, match="reserved"):
        Fabric.from_model(model)


def test_graph_is_frozen_and_key_tracks_topology() -> None:
    model = ring()
    fabric = Fabric.from_model(model)
    assert nx.is_frozen(fabric.graph) and nx.is_frozen(fabric.flood_tree())
    model.add_endpoint("e1", network="t/n", node="s1")
    assert fabric_key(model) == fabric.key  # endpoints do not change the fabric
    model.remove_link("s1", "s2")
    assert fabric_key(model) != fabric.key


def test_module_is_pure() -> None:
    tree = ast.parse((ROOT / "topology" / "graph.py").read_text())
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {name.split(".")[0] for name in imported} & {"os_ken", "ovsdbapp", "pyroute2", "socket"}


# --- flood tree --------------------------------------------------------------------------------


def test_ring_flood_tree_is_a_tree() -> None:
    fabric = Fabric.from_model(ring())
    tree = fabric.flood_tree()
    assert nx.is_tree(tree)
    assert tree.number_of_edges() == 3
    assert nx.cycle_basis(tree) == []
    # BFS from s1 with sorted neighbours takes s1-s2 and s1-s4, then s2-s3.
    assert sorted(tuple(sorted(e)) for e in tree.edges) == [("s1", "s2"), ("s1", "s4"), ("s2", "s3")]
    assert fabric.flood_tree() is tree  # cached
    assert fabric.tree_ports("s3") == {port_toward(fabric, "s3", "s2")}
    assert fabric.tree_ports("s1") == set(fabric.fabric_ports("s1"))


def test_flood_tree_after_link_removal_still_spans() -> None:
    model = ring()
    model.remove_link("s1", "s2")
    fabric = Fabric.from_model(model)
    tree = fabric.flood_tree()
    assert nx.is_tree(tree)
    assert set(tree.nodes) == {"s1", "s2", "s3", "s4"}
    assert not tree.has_edge("s1", "s2")
    assert fabric.shortest_path("s1", "s2") == ["s1", "s4", "s3", "s2"]


def test_flood_tree_of_a_partition_is_a_forest() -> None:
    fabric = Fabric.from_model(model_from_nx(GENERATED["two-rings"]))
    assert_spanning_forest(fabric)
    assert nx.number_connected_components(fabric.flood_tree()) == 2


@pytest.mark.parametrize("name", sorted(GENERATED))
@pytest.mark.parametrize("uplink_every", [0, 3])
def test_generated_flood_trees_span(name: str, uplink_every: int) -> None:
    assert_spanning_forest(Fabric.from_model(model_from_nx(GENERATED[name], uplink_every=uplink_every)))


# --- unicast -----------------------------------------------------------------------------------


def test_ring_next_hops_are_consistent() -> None:
    fabric = Fabric.from_model(ring())
    assert_next_hops_consistent(fabric)
    assert fabric.next_hop_port("s1", "s2") == port_toward(fabric, "s1", "s2")
    assert fabric.next_hop_port("s1", "s1") is None


@pytest.mark.parametrize("name", sorted(GENERATED))
@pytest.mark.parametrize("uplink_every", [0, 3])
def test_generated_next_hops_are_consistent(name: str, uplink_every: int) -> None:
    assert_next_hops_consistent(Fabric.from_model(model_from_nx(GENERATED[name], uplink_every=uplink_every)))


def test_shortest_path_is_deterministic_and_shortest() -> None:
    graph = GENERATED["small-world"]
    first, second = (Fabric.from_model(model_from_nx(graph)) for _ in range(2))
    for a, b in itertools.permutations(first.graph.nodes, 2):
        path = first.shortest_path(a, b)
        assert path == second.shortest_path(a, b) == first.shortest_path(a, b)
        assert len(path) - 1 == nx.shortest_path_length(first.graph, a, b)
        assert path[0] == a and path[-1] == b
        assert all(first.graph.has_edge(u, v) for u, v in itertools.pairwise(path))


def test_shortest_path_is_the_same_in_every_process() -> None:
    script = (
        "import networkx as nx, itertools\n"
        "from tests.unit.test_graph import GENERATED, model_from_nx\n"
        "from topology.graph import Fabric\n"
        "f = Fabric.from_model(model_from_nx(GENERATED['regular'], uplink_every=4))\n"
        "print([f.shortest_path(a, b) for a, b in itertools.permutations(sorted(f.graph), 2)])\n"
        "print(sorted(map(sorted, f.flood_tree().edges)))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env={"PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1 and outputs != {""}


def test_unreachable() -> None:
    fabric = Fabric.from_model(make_model(["a", "b"], []))
    with pytest.raises(Unreachable, match="not reachable"):
        fabric.shortest_path("a", "b")
    assert fabric.next_hop_port("a", "b") is None
    assert fabric.fabric_ports("a") == {}
    with pytest.raises(ValidationError, match="unknown node"):
        fabric.next_hop_port("a", "zz")


def test_star_via_fabric() -> None:
    nodes = ["n1", "n2", "n3", "n4"]
    fabric = Fabric.from_model(make_model(nodes, [], uplinks=nodes))
    assert nx.is_tree(fabric.flood_tree())
    for a, b in itertools.permutations(nodes, 2):
        assert fabric.next_hop_port(a, b) == UPLINK_OFPORT
        assert fabric.shortest_path(a, b) == [a, FABRIC, b]
    assert fabric.carriers({"n1", "n3"}) == {"n1", "n3"}
    assert fabric.fabric_ports("n2") == {UPLINK_OFPORT: FABRIC}
    assert fabric.flood_ports("n2", {"n1", "n3"}) == (UPLINK_OFPORT,)
    assert fabric.flood_ports("n1", {"n1"}) == ()
    with pytest.raises(ValidationError, match="physical switch"):
        fabric.next_hop_port(FABRIC, "n1")


# --- carriers and flood pruning ----------------------------------------------------------------


def test_ring_carriers_include_path_nodes() -> None:
    fabric = Fabric.from_model(ring())
    carriers = fabric.carriers({"s1", "s3"})
    assert {"s1", "s3"} <= carriers
    for a, b in (("s1", "s3"), ("s3", "s1")):
        assert set(fabric.shortest_path(a, b)) <= carriers
    assert "s2" in carriers  # on the flood tree s1-s2-s3
    assert fabric.carriers({"s2"}) == {"s2"}
    assert fabric.carriers(set()) == frozenset()


def test_carriers_stay_within_components() -> None:
    fabric = Fabric.from_model(model_from_nx(GENERATED["two-rings"]))
    carriers = fabric.carriers({"s00", "s02", "s05"})
    assert {"s00", "s02", "s05"} <= carriers
    assert carriers <= {"s00", "s01", "s02", "s03", "s04", "s05"}  # s05 alone in its ring


def test_network_hosts() -> None:
    model = ring()
    model.add_endpoint("e1", network="t/n", node="s1")
    model.add_endpoint("e2", network="t/n", node="s3")
    model.add_endpoint("e3", network="t/n", node="s3")
    assert network_hosts(model, "t/n") == {"s1", "s3"}
    model.remove_endpoint("e1")
    assert network_hosts(model, "t/n") == {"s3"}
    with pytest.raises(ValidationError):
        network_hosts(model, "t/none")


def test_flood_ports_prune_branches_without_hosts() -> None:
    # s1 - s2 - s3 - s4, and a branch s2 - s5.
    links = [("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s2", "s5")]
    fabric = Fabric.from_model(make_model([f"s{i}" for i in range(1, 6)], links))
    hosts = {"s1", "s3"}
    to = port_toward
    assert fabric.flood_ports("s2", hosts) == tuple(sorted((to(fabric, "s2", "s1"), to(fabric, "s2", "s3"))))
    assert fabric.flood_ports("s3", hosts) == (to(fabric, "s3", "s2"),)  # not toward s4
    assert fabric.flood_ports("s1", hosts) == (to(fabric, "s1", "s2"),)
    assert fabric.carriers(hosts) == {"s1", "s2", "s3"}
    with pytest.raises(TypeError):
        fabric.flood_ports("s1", "s1")


def test_ring_flood_ports_follow_the_tree() -> None:
    fabric = Fabric.from_model(ring())
    # Tree s1-s2, s1-s4, s2-s3: the s3-s4 link is not used for floods.
    assert fabric.flood_ports("s4", {"s1", "s2", "s3", "s4"}) == (port_toward(fabric, "s4", "s1"),)
    assert fabric.flood_ports("s1", {"s3"}) == (port_toward(fabric, "s1", "s2"),)


@pytest.mark.parametrize("name", sorted(GENERATED))
@pytest.mark.parametrize("uplink_every", [0, 3])
def test_floods_reach_every_host_once(name: str, uplink_every: int) -> None:
    fabric = Fabric.from_model(model_from_nx(GENERATED[name], uplink_every=uplink_every))
    nodes = sorted(v for v in fabric.graph if v != FABRIC)
    for hosts in (frozenset(nodes[::3]), frozenset(nodes[1::4]), frozenset(nodes)):
        carriers = fabric.carriers(hosts)
        for source in sorted(hosts):
            received = flood(fabric, source, hosts)
            assert set(received.values()) <= {1}, received
            reachable = nx.node_connected_component(fabric.graph, source)
            assert hosts & reachable - {source} <= set(received)
            if not uplink_every:  # the physical switch floods every uplink; links carry only what is needed
                assert set(received) <= carriers
