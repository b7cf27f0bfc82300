"""Fabric links that a switch reports down: the flood tree and the paths avoid them, and come back with them.

Link state is operational: the model validates and records it, the compiler recompiles only the VLAN
networks that ride the fabric, and nothing of it reaches the store.
"""

from __future__ import annotations

import itertools

import networkx as nx
import pytest

from controller import records
from controller.pipeline.compile import Compiler
from controller.pipeline.ir import Output
from controller.pipeline.probes import broadcast, to_endpoint
from controller.pipeline.simulate import SimNetwork
from controller.pipeline.state import NodeState, apply, diff
from controller.store.base import Record
from tests.unit.test_diff import assert_same
from tests.unit.topologies import SHAPES, generated
from topology.errors import ValidationError
from topology.graph import Fabric
from topology.model import Encap, Model

# n0-n1, n0-n3, n1-n2, n2-n3 (declared in that order): the flood tree from n0 takes n0-n1, n0-n3, n1-n2.
DOWN = ("n0", "n0-p1")  # the n0 end of link n0-n1
DOWN_PORTS = {("n0", 3), ("n1", 3)}  # the link's first port on both nodes


def vlan_ring(seed: int = 1) -> Model:
    return generated(nx.cycle_graph(4), nodes=4, vlan_share=1.0, endpoints=16, seed=seed)


def ports_used(state: NodeState) -> set[int]:
    """Every port a node's flows match as in_port or send to, directly or through a group."""
    used = {value for flow in state.flows() for name, value, _ in flow.match if name == "in_port"}
    actions = [a for flow in state.flows() for a in flow.actions]
    actions += [a for group in state.groups().values() for bucket in group.buckets for a in bucket]
    return used | {a.port for a in actions if isinstance(a, Output)}


def connected(model: Model, a: str, b: str) -> bool:
    return nx.has_path(Fabric.from_model(model).graph, a, b)


def assert_reachability(model: Model, states: dict[str, NodeState]) -> None:
    """Every pair of one tenant talks unless a partition cuts a VLAN network off; no copy meets a down link;
    a broadcast reaches each other endpoint of its network on its side of any partition exactly once."""
    network = SimNetwork(model, states)
    for src, dst in itertools.permutations(model.endpoints.values(), 2):
        trace = network.send(src.id, to_endpoint(model, src, dst))
        where = f"{src.id}@{src.node} -> {dst.id}@{dst.node} ({dst.network})"
        assert not [d for d in trace.drops if "down" in d], f"{where}: sent over a down link"
        vlan = model.networks[dst.network].encap is Encap.VLAN
        if src.tenant == dst.tenant and (not vlan or connected(model, src.node, dst.node)):
            assert trace.delivered_to == [dst.id], f"{where}: {trace.reason}"
        else:
            assert dst.id not in trace.delivered_to, where
    for src in model.endpoints.values():
        vlan = model.networks[src.network].encap is Encap.VLAN
        expected = sorted(
            e.id
            for e in model.endpoints_by_network[src.network].values()
            if e.id != src.id and (not vlan or connected(model, src.node, e.node))
        )
        trace = network.send(src.id, broadcast(src))
        assert sorted(trace.delivered_to) == expected, f"broadcast from {src.id}: {trace.drops}"


def fresh_states(model: Model) -> dict[str, NodeState]:
    """A full compile of its own (a compiler updates its states in place: keep comparisons apart)."""
    return Compiler(model).compile_all()


def test_a_link_down_moves_the_flood_tree_and_the_paths_and_up_restores_them() -> None:
    model = vlan_ring()
    original = fresh_states(model)
    compiler = Compiler(model)
    compiler.compile_all()
    installed = {  # what the switches hold: flat copies
        name: NodeState.flat(state.flows(), state.groups().values(), state.meters().values())
        for name, state in original.items()
    }
    assert Fabric.from_model(model).flood_tree().has_edge("n0", "n1")
    assert any(port in ports_used(original[node]) for node, port in DOWN_PORTS)

    touched = model.set_link_port(*DOWN, up=False)
    assert touched.fabric and not touched.everything
    changes = compiler.update(touched)
    assert changes, "the link carried floods: switches must change"
    for name, change in changes.items():
        installed[name] = apply(change, installed[name])

    fabric = Fabric.from_model(model)
    tree = fabric.flood_tree()
    assert nx.is_tree(tree) and set(tree.nodes) == set(model.nodes)
    assert not tree.has_edge("n0", "n1") and not fabric.graph.has_edge("n0", "n1")
    assert fabric.shortest_path("n0", "n1") == ["n0", "n3", "n2", "n1"]
    for node, port in DOWN_PORTS:
        assert port not in ports_used(compiler.states[node]), f"{node} still uses port {port}"
    fresh = fresh_states(model)
    for name in model.nodes:
        assert_same(compiler.states[name], fresh[name], f"{name}: incremental vs full after the link went down")
        assert_same(installed[name], fresh[name], f"{name}: switch after the change set")
    assert_reachability(model, compiler.states)

    touched = model.set_link_port(*DOWN, up=True)
    assert touched.fabric
    for name, change in compiler.update(touched).items():
        installed[name] = apply(change, installed[name])
    assert Fabric.from_model(model).flood_tree().has_edge("n0", "n1")
    for name in model.nodes:
        assert_same(compiler.states[name], original[name], f"{name}: up again")
        assert_same(installed[name], original[name], f"{name}: switch after up again")
    assert_reachability(model, compiler.states)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_ring_link_down_keeps_every_pair_connected(seed: int) -> None:
    model = SHAPES["vlan-ring"](seed)  # VLAN and VXLAN networks mixed
    compiler = Compiler(model)
    compiler.compile_all()
    for link in list(model.links):
        compiler.update(model.set_link_port(link.b, link.b_port, up=False))  # either end is enough
        assert not model.link_up(link)
        assert_reachability(model, compiler.states)
        compiler.update(model.set_link_port(link.b, link.b_port, up=True))
        assert model.link_up(link)


def test_two_links_down_partition_the_ring_and_vxlan_does_not_care() -> None:
    model = SHAPES["vlan-ring"](2)
    original = fresh_states(model)
    compiler = Compiler(model)
    compiler.compile_all()
    compiler.update(model.set_link_port("n0", "n0-p1", up=False))
    compiler.update(model.set_link_port("n2", "n2-p3", up=False))
    assert not connected(model, "n0", "n1") and connected(model, "n0", "n3") and connected(model, "n1", "n2")
    assert any(diff(compiler.states[name], original[name]) for name in model.nodes)
    assert_reachability(model, compiler.states)
    compiler.update(model.set_link_port("n0", "n0-p1", up=True))
    compiler.update(model.set_link_port("n2", "n2-p3", up=True))
    for name in model.nodes:
        assert_same(compiler.states[name], original[name], name)


def test_a_link_is_up_only_when_both_ends_are() -> None:
    model = vlan_ring()
    (link,) = [x for x in model.links if {x.a, x.b} == {"n0", "n1"}]
    assert model.set_link_port("n0", "n0-p1", up=False).fabric
    assert not model.set_link_port("n1", "n1-p0", up=False).fabric  # already down
    assert not model.set_link_port("n0", "n0-p1", up=True).fabric  # the other end is still down
    assert not model.link_up(link)
    assert model.set_link_port("n1", "n1-p0", up=True).fabric
    assert model.link_up(link)
    assert not model.set_link_port("n1", "n1-p0", up=True).fabric  # no news


def test_link_port_state_is_validated() -> None:
    model = vlan_ring()
    endpoint = next(iter(model.endpoints.values()))
    with pytest.raises(ValidationError, match="unknown node"):
        model.set_link_port("nope", "n0-p1", up=False)
    with pytest.raises(ValidationError, match="is not a fabric link port"):
        model.set_link_port("n0", "n1-p0", up=False)  # the other end's name
    with pytest.raises(ValidationError, match="is not a fabric link port"):
        model.set_link_port(endpoint.node, endpoint.port_name, up=False)
    assert not model.down_ports


def test_a_parallel_link_takes_over() -> None:
    model = Model()
    for i, name in enumerate(("s1", "s2")):
        model.add_node(name, tunnel_ip=f"192.168.1.{i + 1}")
    model.add_link("s1", "p1", "s2", "p1")
    model.add_link("s1", "p2", "s2", "p2")
    assert Fabric.from_model(model).fabric_ports("s1") == {3: "s2"}
    model.set_link_port("s2", "p1", up=False)
    assert Fabric.from_model(model).fabric_ports("s1") == {4: "s2"}
    model.set_link_port("s1", "p2", up=False)
    assert Fabric.from_model(model).fabric_ports("s1") == {}


def test_link_state_is_not_stored_and_removing_a_link_forgets_it() -> None:
    model = vlan_ring()
    stored = records.all_records(model)
    model.set_link_port(*DOWN, up=False)
    assert records.all_records(model) == stored
    restored = records.restore(Record(key, value, revision) for revision, (key, value) in enumerate(stored, 1))
    assert not restored.down_ports and all(restored.link_up(link) for link in restored.links)
    model.remove_link("n0", "n1")
    assert not model.down_ports
    model.add_link("n0", "n0-p1", "n1", "n1-p0")
    assert all(model.link_up(link) for link in model.links)
