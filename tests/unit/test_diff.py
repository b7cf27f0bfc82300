"""diff and incremental compilation: change sets are exact, ordered, idempotent, and follow the change."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import Feature, cookie, split
from controller.pipeline.features import l2
from controller.pipeline.ir import Flow, Group, Meter, Output, match
from controller.pipeline.state import ChangeSet, NodeState, Section, _fill, apply, diff, diff_sections
from tests.unit.topologies import SHAPES, example
from topology.model import Model, Touched, touched_by


def flat(state: NodeState) -> tuple[frozenset[Flow], dict[int, Group], dict[int, Meter]]:
    return frozenset(state.flows()), state.groups(), state.meters()


def assert_same(a: NodeState, b: NodeState, where: str = "") -> None:
    fa, fb = flat(a), flat(b)
    assert fa[0] == fb[0], f"{where}: flows differ: +{len(fa[0] - fb[0])} -{len(fb[0] - fa[0])}"
    assert fa[1:] == fb[1:], f"{where}: groups or meters differ"


def test_equal_states_give_an_empty_diff() -> None:
    model = example()
    states = Compiler(model).compile_all()
    again = Compiler(model).compile_all()
    for name in model.nodes:
        assert not diff(states[name], again[name])
        flat_copy = NodeState.flat(states[name].flows(), states[name].groups().values(), states[name].meters().values())
        assert not diff(states[name], flat_copy), "sectioned against flat"


def test_diff_from_empty_installs_everything_in_order() -> None:
    state = Compiler(example()).compile_all()["node1"]
    changes = diff(state, NodeState())
    assert len(changes.flow_adds) == state.flow_count()
    kinds = [(command, kind) for command, kind, _ in changes.ops()]
    assert kinds.index(("add", "meter")) < kinds.index(("add", "group")) < kinds.index(("add", "flow"))
    assert_same(apply(changes, NodeState()), state)


def test_changed_actions_are_one_modify_and_strays_are_deleted() -> None:
    wanted = Flow("output", 10, match(reg3=5), (Output(5),), cookie=cookie(Feature.L2, 1))
    changed = Flow("output", 10, match(reg3=5), (Output(6),), cookie=cookie(Feature.L2, 1))
    stray = Flow("output", 11, match(reg3=7), (Output(7),), cookie=cookie(Feature.L2, 2))
    changes = diff(NodeState.flat([wanted]), NodeState.flat([changed, stray]))
    assert changes.flow_mods == [wanted] and changes.flow_deletes == [stray] and not changes.flow_adds
    group_old, group_new = Group(4, ((Output(1),),)), Group(4, ((Output(1),), (Output(2),)))
    changes = diff(NodeState.flat(groups=[group_new]), NodeState.flat(groups=[group_old, Group(9, ())]))
    assert changes.group_mods == [group_new] and [g.group_id for g in changes.group_deletes] == [9]


def installed_variants(state: NodeState, seed: int) -> list[NodeState]:
    """What a switch might hold: nothing, part of the state, the state with strays, stale versions."""
    rng = random.Random(seed)
    flows = list(state.flows())
    some = rng.sample(flows, len(flows) // 2)
    stray = Flow("l2", 1, match(reg0=0xFFFF), (Output(3),), cookie=cookie(Feature.L2, 0xFFFF))
    stale = [Flow(f.table, f.priority, f.match, (), f.goto, f.meter, f.cookie) for f in flows[:5]]
    return [
        NodeState(),
        NodeState.flat(some),
        NodeState.flat([*flows, stray], [Group(999, ())], [Meter(77, 1, 1)]),
        NodeState.flat([*stale, *flows[5:]], list(state.groups().values())[:1]),
    ]


@pytest.mark.parametrize("shape", ["example", *SHAPES])
def test_applying_a_change_set_reaches_the_desired_state_and_is_idempotent(shape: str) -> None:
    model = example() if shape == "example" else SHAPES[shape](3)
    for name, state in Compiler(model).compile_all().items():
        for installed in installed_variants(state, seed=len(name)):
            changes = diff(state, installed)
            once = apply(changes, installed)
            assert_same(once, state, f"{shape}/{name}")
            assert_same(apply(changes, once), once, f"{shape}/{name} applied twice")
            assert not diff(state, once)


def test_one_endpoint_yields_only_that_endpoints_flows() -> None:
    model = example()
    compiler = Compiler(model)
    compiler.compile_all()
    endpoint = model.add_endpoint("b9", network="blue/web", node="node2")
    changes = compiler.update(touched_by(endpoint))
    network_id = model.networks["blue/web"].id
    assert set(changes) == {"node1", "node2"}  # node1 hosts blue/web too, and routes for blue
    for name, change in changes.items():
        assert not change.flow_deletes and not change.flow_mods and not change.meter_deletes
        for flow in change.flow_adds:
            _, feature, object_id = split(flow.cookie)
            assert (feature, object_id) in {(Feature.PORT, endpoint.num), *((f, network_id) for f in Feature)}
            values = {value for _, value, _ in flow.match} | {getattr(a, "value", None) for a in flow.actions}
            assert values & {endpoint.mac, int(endpoint.ip), endpoint.ofport}, f"{name}: {flow} is not about b9"
        # The only groups touched are blue/web's floods, on the node whose ports or peers changed.
        assert {g.group_id >> 1 for g in change.group_mods} <= {network_id}
    # classify, 2 port security, 2 meters, ARP, host route, local L2, and its entry in the remote view all
    # blue/web's nodes share (below the local one: sections.l2_section)
    assert len(changes["node2"].flow_adds) == 9
    assert len(changes["node1"].flow_adds) == 3  # ARP, host route, L2 towards node2
    local, remote = sorted((f for f in changes["node2"].flow_adds if f.table == "l2"), key=lambda f: -f.priority)
    assert (split(local.cookie)[1], local.priority) == (Feature.L2_LOCAL, l2.LOCAL_PRIORITY)
    assert (split(remote.cookie)[1], remote.priority) == (Feature.L2, l2.UNICAST_PRIORITY)
    assert local.match == remote.match
    assert remote in changes["node1"].flow_adds  # the very flow node1 gets: one section, diffed once


def test_a_change_and_its_revert_leave_nothing_to_do() -> None:
    model = example()
    original = Compiler(model).compile_all()
    compiler = Compiler(model)
    compiler.compile_all()
    endpoint = model.add_endpoint("b9", network="blue/db", node="node1")
    compiler.update(touched_by(endpoint))
    compiler.update(model.attach_qos("gold", "b9"))
    compiler.update(model.detach_qos("b9"))
    compiler.update(model.remove_endpoint("b9"))
    for name in model.nodes:
        assert not diff(compiler.states[name], original[name]), name
        assert not diff(Compiler(model).compile_all()[name], original[name]), name


# --- incremental compilation against a full recompile, over random model changes ------------------


def random_change(model: Model, rng: random.Random, step: int) -> Touched | None:
    kinds = ["add", "add", "add", "remove", "qos", "unqos", "network", "unnetwork", "link", "port", "port"]
    kind = rng.choice(kinds)
    endpoints, networks, nodes = sorted(model.endpoints), sorted(model.networks), sorted(model.nodes)
    if kind == "add" and networks:
        return touched_by(model.add_endpoint(f"x{step}", network=rng.choice(networks), node=rng.choice(nodes)))
    if kind == "remove" and endpoints:
        return model.remove_endpoint(rng.choice(endpoints))
    if kind == "qos":
        if not model.qos_profiles:
            model.add_qos("q", rate_kbps=1000, burst_kb=100)
        targets = [t for t in endpoints + networks if t not in model.qos_attachments]
        return model.attach_qos("q", rng.choice(targets)) if targets else None
    if kind == "unqos" and model.qos_attachments:
        return model.detach_qos(rng.choice(sorted(model.qos_attachments)))
    if kind == "network":
        tenant = rng.choice(sorted(model.tenants))
        return model.add_network(
            tenant,
            f"n{step}",
            encap=rng.choice(["vlan", "vxlan"]),
            segment=3000 + step,
            subnet=f"10.{100 + step}.0.0/24",
        )
    if kind == "unnetwork":
        empty = [k for k in networks if not model.endpoints_by_network[k]]
        return model.remove_network(rng.choice(empty)) if empty else None
    if kind == "link" and model.links:
        link = rng.choice(model.links)
        return model.remove_link(link.a, link.b)
    if kind == "port" and model.links:  # a switch reports a link port down, or up again
        link = rng.choice(model.links)
        node, port = rng.choice([(link.a, link.a_port), (link.b, link.b_port)])
        return model.set_link_port(node, port, up=not model.link_port_up(node, port))
    return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(sorted(SHAPES)), seed=st.integers(0, 10_000))
def test_incremental_updates_equal_a_full_recompile(shape: str, seed: int) -> None:
    model = SHAPES[shape](seed % 7 + 1)
    rng = random.Random(seed)
    compiler = Compiler(model)
    installed = {name: NodeState.flat() for name in model.nodes}
    for name, initial in compiler.update(Touched(everything=True)).items():
        installed[name] = apply(initial, installed[name])
    for step in range(12):
        touched = random_change(model, rng, step)
        if touched is None:
            continue
        changes = compiler.update(touched)
        fresh = Compiler(model).compile_all()
        for name in model.nodes:
            assert_same(compiler.states[name], fresh[name], f"step {step}: {name} incremental vs full")
            installed[name] = apply(changes.get(name, ChangeSet()), installed[name])
            assert_same(installed[name], fresh[name], f"step {step}: {name} switch after the change set")


def test_a_section_grown_by_one_flow_gives_what_the_general_comparison_gives() -> None:
    """`state._fill`'s path for one flow appended (compared by identity) against its general one (by set)."""
    flows = tuple(
        Flow("l2", 100, match(reg0=1, eth_dst=mac), (Output(2),), cookie=cookie(Feature.L2, 1)) for mac in range(1, 6)
    )
    old = Section(cookie(Feature.L2, 1), flows[:4])
    for last in (
        flows[4],
        flows[1],
        Flow("l2", 100, match(reg0=1, eth_dst=2), (Output(3),), cookie=cookie(Feature.L2, 1)),
    ):
        grown = Section(old.cookie, (*old.flows, last))  # a new flow; one already there; a new one on a taken key
        fast = diff_sections(grown, old)
        general = ChangeSet()
        _fill(general, list(grown.flows), list(old.flows), [], [], [], [])
        assert (fast.flow_adds, fast.flow_mods, fast.flow_deletes) == (
            general.flow_adds,
            general.flow_mods,
            general.flow_deletes,
        )
    assert diff_sections(Section(old.cookie, (*old.flows, flows[4])), old).flow_adds == [flows[4]]
    assert not diff_sections(Section(old.cookie, (*old.flows, flows[1])), old)
