"""Checks shared by the incremental-compile tests: the IR of a state, and what the simulator must show."""

from __future__ import annotations

import itertools

import networkx as nx

from controller.pipeline.compile import Compiler
from controller.pipeline.probes import broadcast, to_endpoint
from controller.pipeline.simulate import SimNetwork
from controller.pipeline.state import NodeState
from topology.graph import build_graph
from topology.model import Encap, Endpoint, Model


def ir(state: NodeState) -> dict[int, tuple]:
    """A state exactly as compiled: every section's flows, groups and meters, in order, by cookie."""
    return {c: (s.flows, s.groups, s.meters) for c, s in state.sections.items()}


def assert_incremental_is_full(model: Model, compiler: Compiler, where: str) -> dict[str, NodeState]:
    """The compiler's states are exactly a fresh full compile's; returns the fresh states."""
    fresh = Compiler(model).compile_all()
    assert set(compiler.states) == set(fresh), f"{where}: nodes differ"
    for name, state in fresh.items():
        mine, full = ir(compiler.states[name]), ir(state)
        if mine != full:
            differ = sorted(hex(c) for c in mine.keys() | full.keys() if mine.get(c) != full.get(c))
            raise AssertionError(f"{where}: {name}: sections {differ} differ from a full compile")
    return fresh


def reachable(model: Model, graph: nx.Graph, src: Endpoint, dst: Endpoint) -> bool:
    """Whether the model promises delivery: VXLAN reaches every node; VLAN only along the fabric."""
    if src.node == dst.node or model.networks[dst.network].encap is Encap.VXLAN:
        return True
    return graph.has_node(src.node) and graph.has_node(dst.node) and nx.has_path(graph, src.node, dst.node)


def assert_isolation(model: Model, states: dict[str, NodeState], where: str) -> None:
    """All pairs: a tenant's endpoints reach each other (where the fabric joins them), other tenants' never;
    a broadcast reaches exactly the other endpoints of its own network, each once."""
    sim = SimNetwork(model, states)
    graph = build_graph(model)
    # Fabric links beside uplinks: the simulated physical switch floods unknown unicast (it never learns),
    # so a frame may come back to a node over a link as well; there only who receives is checked, not how often.
    once = not (model.links and any(node.uplink for node in model.nodes.values()))
    count = (lambda got: got) if once else (lambda got: sorted(set(got)))
    endpoints = list(model.endpoints.values())
    for src, dst in itertools.permutations(endpoints, 2):
        trace = sim.send(src.id, to_endpoint(model, src, dst))
        pair = f"{where}: {src.id}({src.network}@{src.node}) -> {dst.id}({dst.network}@{dst.node})"
        if src.tenant != dst.tenant:
            crossed = [e for e in trace.delivered_to if model.endpoints[e].tenant != src.tenant]
            assert not crossed, f"{pair}: crossed tenants to {crossed}"
        elif reachable(model, graph, src, dst):
            assert count(trace.delivered_to) == [dst.id], f"{pair}: {trace.delivered_to or trace.reason}"
    for src in endpoints:
        trace = sim.send(src.id, broadcast(src))
        want = sorted(
            e.id for e in endpoints if e.network == src.network and e.id != src.id and reachable(model, graph, src, e)
        )
        got = sorted(count(trace.delivered_to))
        assert all(model.endpoints[e].network == src.network for e in got), (
            f"{where}: broadcast from {src.id} ({src.network}) left its network: {got}"
        )
        assert got == want, f"{where}: broadcast from {src.id}: {got} != {want}"
