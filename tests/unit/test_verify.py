"""Comparing a switch's dump with the desired state: every missing, extra and different item, as ofctl text."""

from __future__ import annotations

import dataclasses

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.app.reconcile import Installed
from controller.app.verify import compare
from controller.openflow.ofctl import flow_text, group_text, meter_text
from controller.pipeline.compile import Compiler
from controller.pipeline.ir import Group, Meter, Output, match
from controller.pipeline.state import NodeState
from tests.unit.topologies import example


def desired_state() -> NodeState:
    state = Compiler(example()).compile_all()["node1"]  # the example's QoS profile gives node1 a meter
    assert state.meters() and state.groups()
    return state


def holding(state: NodeState, *, round_: int = 3) -> Installed:
    return Installed(
        flows=[(flow, round_) for flow in state.flows()],
        groups=list(state.groups().values()),
        meters=list(state.meters().values()),
    )


def test_a_switch_holding_the_desired_state_is_in_sync() -> None:
    state = desired_state()
    result = compare(state, holding(state), round_=3)
    assert result.in_sync and (result.missing, result.extra, result.different) == ([], [], [])
    assert result.counts == {"flows": state.flow_count(), "groups": len(state.groups()), "meters": len(state.meters())}


def test_each_difference_is_named_once() -> None:
    state = desired_state()
    installed = holding(state)
    gone, changed = installed.flows.pop(0)[0], installed.flows[0][0]
    installed.flows[0] = (dataclasses.replace(changed, actions=(Output(77),)), 3)
    stray = dataclasses.replace(gone, priority=4321, match=match(in_port=4242))
    installed.flows += [(stray, 3), (gone, 2)]  # a flow Tenet does not want, and a wanted one of an old round
    group = installed.groups[0]
    installed.groups[0] = Group(group.group_id, ((Output(9),),))
    installed.groups.append(Group(999, ()))
    installed.meters = [Meter(installed.meters[0].meter_id, 5, 5), *installed.meters[1:]]
    result = compare(state, installed, round_=3)
    assert result.missing == [flow_text(gone, round_=3)]
    assert result.extra == [flow_text(stray, round_=3), flow_text(gone, round_=2), group_text(Group(999, ()))]
    assert result.different == [
        (flow_text(changed, round_=3), flow_text(installed.flows[0][0], round_=3)),
        (group_text(group), group_text(installed.groups[0])),
        (meter_text(state.meters()[installed.meters[0].meter_id]), meter_text(installed.meters[0])),
    ]
    assert not result.in_sync and result.as_json()["different"][0]["have"].endswith("actions=output:77")


def test_flows_groups_and_meters_tenet_cannot_read_are_extra() -> None:
    state = desired_state()
    installed = holding(state)
    stats = parser.OFPFlowStats(
        table_id=0,
        priority=7,
        cookie=0xABC,
        match=parser.OFPMatch(in_port=3, eth_type=0x800, ipv4_dst="10.9.9.9"),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(2)])],
    )
    installed.foreign_flows.append(stats)
    installed.foreign_groups.append(12)
    installed.foreign_meters.append(13)
    result = compare(state, installed, round_=3)
    assert result.extra == [
        "cookie=0xabc,table=classify,priority=7,in_port=3,dl_type=2048,nw_dst=10.9.9.9 actions=output:2",
        "group_id=12 (a group Tenet does not write)",
        "meter_id=13 (a meter Tenet does not write)",
    ]
    assert result.missing == [] and result.different == []
