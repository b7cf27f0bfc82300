"""Reconcile plans (pure) and reading a switch's state back into IR."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from os_ken.ofproto import ofproto_parser

from controller.app.reconcile import Installed, from_changes, port_mismatches, reconcile
from controller.openflow import decode
from controller.openflow.messages import OfflineDatapath, flow_mod, group_mod, meter_mod
from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import ROUND_MASK, ROUND_SHIFT
from controller.pipeline.ir import Flow, Output, match
from controller.pipeline.state import NodeState, diff
from tests.unit.topologies import SHAPES, example
from topology.gateway import GatewayConfig
from topology.model import touched_by


def parsed(msg):
    msg.serialize()
    return ofproto_parser.msg(msg.datapath, msg.version, msg.msg_type, msg.msg_len, msg.xid, msg.buf)


def installed_from(state: NodeState, *, round_: int) -> Installed:
    return Installed(
        flows=[(flow, round_) for flow in state.flows()],
        groups=list(state.groups().values()),
        meters=list(state.meters().values()),
    )


@pytest.mark.parametrize("shape", ["example", "vlan-ring", "vlan-uplinks"])
def test_every_compiled_flow_reads_back_as_itself(shape: str) -> None:
    model = example() if shape == "example" else SHAPES[shape](1)
    dp = OfflineDatapath()
    for state in Compiler(model).compile_all().values():
        for flow in state.flows():
            assert decode.decode_flow(parsed(flow_mod(dp, flow, round_=7))) == (flow, 7)


def test_a_correct_switch_gets_nothing() -> None:
    state = Compiler(example()).compile_all()["node1"]
    plan = reconcile(state, installed_from(state, round_=3), round_=3)
    assert len(plan) == 0


def test_an_empty_switch_gets_everything_meters_and_groups_included() -> None:
    state = Compiler(example()).compile_all()["node1"]
    plan = reconcile(state, Installed(), round_=1)
    assert len(plan.flow_adds) == state.flow_count() and not plan.round_deletes
    assert len(plan.group_adds) == len(state.groups()) and len(plan.meter_adds) == len(state.meters())


def test_one_changed_flow_is_one_flow_mod() -> None:
    state = Compiler(example()).compile_all()["node1"]
    flows = list(state.flows())
    stale = Flow(flows[5].table, flows[5].priority, flows[5].match, (Output(99),), cookie=flows[5].cookie)
    installed = installed_from(state, round_=2)
    installed.flows[5] = (stale, 2)
    plan = reconcile(state, installed, round_=2)
    assert plan.flow_mod_count() == 1 and plan.flow_adds == [flows[5]]


def test_a_new_round_replaces_everything_and_deletes_the_old_rounds_by_mask() -> None:
    state = Compiler(example()).compile_all()["node1"]
    installed = installed_from(state, round_=4)
    installed.flows.append((Flow("l2", 1, match(reg0=77), cookie=1), 3))  # a leftover of an older round
    plan = reconcile(state, installed, round_=5)
    assert set(plan.flow_adds) == set(state.flows()) and not plan.flow_deletes
    assert sorted(plan.round_deletes) == [(3 << ROUND_SHIFT, ROUND_MASK), (4 << ROUND_SHIFT, ROUND_MASK)]
    assert not plan.group_adds and not plan.meter_adds  # groups and meters carry no round


def test_foreign_state_is_removed() -> None:
    state = Compiler(example()).compile_all()["node1"]
    installed = installed_from(state, round_=1)
    installed.foreign_flows.append(object())
    installed.foreign_groups.append(4242)
    plan = reconcile(state, installed, round_=1)
    assert len(plan.foreign_flow_deletes) == 1 and plan.group_deletes == [4242]


def test_groups_and_meters_read_back() -> None:
    dp = OfflineDatapath()
    state = Compiler(example()).compile_all()["node1"]
    parser = dp.ofproto_parser
    for group in state.groups().values():
        msg = group_mod(dp, group)
        stats = parser.OFPGroupDescStats(type_=dp.ofproto.OFPGT_ALL, group_id=group.group_id, buckets=msg.buckets)
        assert decode.decode_group(stats) == group
    for meter in state.meters().values():
        msg = meter_mod(dp, meter)
        stats = parser.OFPMeterConfigStats(flags=msg.flags, meter_id=meter.meter_id, bands=msg.bands)
        assert decode.decode_meter(stats) == meter


def test_a_change_set_becomes_a_plan_with_changes_as_adds() -> None:
    model = example()
    compiler = Compiler(model)
    before = NodeState.flat(compiler.compile_all()["node1"].flows())
    endpoint = model.add_endpoint("b9", network="blue/web", node="node1")
    changes = compiler.update(touched_by(endpoint))["node1"]
    plan = from_changes(changes)
    assert plan.flow_mod_count() == len(changes.flow_adds) + len(changes.flow_mods) + len(changes.flow_deletes)
    assert len(diff(compiler.states["node1"], before).flow_adds) == len(changes.flow_adds)


def test_ports_numbered_other_than_planned_are_reported() -> None:
    planned = {"tenet-tun": 1, "p1": 1000, "p2": 1001}
    assert port_mismatches(planned, {"tenet-tun": 1, "p1": 1000, "other": 7}) == []
    assert port_mismatches(planned, {"p2": 1005, "p1": 1000}) == [
        "port p2 is OpenFlow port 1005 on the switch, but flows use 1001"
    ]


@pytest.mark.parametrize("shape", ["vlan-uplinks", "vlan-ring", "vxlan-only"])
def test_one_planned_port_is_the_entry_planned_ports_give(shape: str) -> None:
    model = SHAPES[shape](3)
    if shape == "vlan-ring":
        model.add_tenant("default")
        model.add_network("default", "pods", encap="vxlan", segment=4000, subnet="10.244.0.0/16")
        model.configure_gateway(
            GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/16"))
        )
        model.add_endpoint("pod", network="default/pods", node="n1")
    for node in model.nodes:
        planned = model.planned_ports(node)
        others = {e.port_name for e in model.endpoints.values()} | {"eth1", "nope", "tenet-gw", "tenet-tun"}
        for name in sorted(set(planned) | others):
            assert model.planned_port(node, name) == planned.get(name), (node, name)


def test_planned_ports_name_every_port_the_flows_use() -> None:
    model = example()
    node = next(iter(model.nodes))
    ports = model.planned_ports(node)
    assert ports["tenet-tun"] == 1
    for endpoint in model.endpoints_by_node[node].values():
        assert ports[endpoint.port_name] == endpoint.ofport
    used = {a.port for f in Compiler(model).compile_node(node).flows() for a in f.actions if isinstance(a, Output)}
    used |= {v for f in Compiler(model).compile_node(node).flows() for name, v, _ in f.match if name == "in_port"}
    assert used - {0xFFFFFFF8} <= set(ports.values())
