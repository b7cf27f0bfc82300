"""A dump compared with the desired flows by bytes says what decoding every entry would say."""

from __future__ import annotations

import pytest

from controller.app import reconcile
from controller.app.reconcile import Installed
from controller.openflow import dump_compare, flow_stats
from controller.pipeline import cookies
from controller.pipeline.compile import Compiler
from controller.pipeline.ir import Flow, Move, Output, SetField, match
from controller.pipeline.state import NodeState
from controller.pipeline.tables import PIPELINE
from tests.unit.test_flow_stats import entry, entry_of
from tests.unit.topologies import SHAPES, example

ROUND = 7


def reported(flow: Flow, round_: int = ROUND) -> bytes:
    """The flow-stats entry a switch holding `flow` reports: the expected bytes, moves in NXM form."""
    (table_id, priority, match_bytes), instructions = dump_compare.expected_bytes(flow)
    return entry(table_id, priority, cookies.with_round(flow.cookie, round_), match_bytes + instructions)


def states() -> list[NodeState]:
    found: list[NodeState] = []
    for shape in ("example", "vlan-ring", "vlan-uplinks", "vxlan-only"):
        model = example() if shape == "example" else SHAPES[shape](2)
        found.extend(Compiler(model).compile_all().values())
    return found


@pytest.mark.parametrize("state", states(), ids=lambda s: f"{s.flow_count()}-flows")
def test_the_expected_bytes_decode_as_the_flow_and_a_switch_holding_them_is_verified_whole(state: NodeState) -> None:
    flows = list(state.flows())
    body = b"".join(reported(flow) for flow in flows)
    reader = flow_stats.FlowStatsReader()
    assert list(reader.entries(body, 0, len(body))) == [(flow, ROUND) for flow in flows]  # the same IR
    split = dump_compare.compare([(body, 0, len(body))], state, round_=ROUND, reader=reader)
    assert split.other == []
    assert sorted(map(id, split.verified)) == sorted(map(id, flows))


def test_moves_are_expected_in_their_nxm_form() -> None:
    flow = PIPELINE.verify(
        Flow(
            "arp_responder",
            100,
            match(reg0=1, eth_type=0x0806, arp_op=1, arp_tpa=0x0A000002),
            (
                Move("eth_src", "eth_dst"),
                SetField("eth_src", 0x020000000002),
                Move("arp_sha", "arp_tha"),
                Output(0xFFFFFFF8),
            ),
            cookie=cookies.cookie(cookies.Feature.L2, 1),
        )
    )
    _, instructions = dump_compare.expected_bytes(flow)
    assert bytes.fromhex("0000040600000206") in instructions  # NXM_OF_ETH_SRC -> NXM_OF_ETH_DST
    assert bytes.fromhex("0001220600012406") in instructions  # NXM_NX_ARP_SHA -> NXM_NX_ARP_THA
    assert bytes.fromhex("8000080680000606") not in instructions  # not the OXM form the encoder sends


def test_entries_that_differ_are_decoded_and_the_diff_decides() -> None:
    state = next(s for s in states() if s.flow_count() > 20)
    flows = list(state.flows())
    at = next(i for i, flow in enumerate(flows) if flow.actions and i < len(flows) - 2)
    changed, old_round, foreign_at = flows[at], flows[at + 1], flows[at + 2]
    other = Flow(changed.table, changed.priority, changed.match, (), changed.goto, changed.meter, changed.cookie)
    entries = [reported(flow) for flow in flows]
    entries[at] = entry_of(other, ROUND)  # other actions: decoded
    entries[at + 1] = reported(old_round, ROUND - 1)  # another round: decoded
    entries[at + 2] = entry(250, 1, 0, reported(foreign_at)[48:])  # a table Tenet does not use: foreign
    body = b"".join(entries)
    installed = Installed(raw_flows=[(body, 0, len(body))])
    foreign = dump_compare.resolve(installed, state, round_=ROUND)
    assert [stats.table_id for stats in foreign] == [250] and installed.foreign_flows == foreign
    assert installed.flows == [(other, ROUND), (old_round, ROUND - 1)]
    assert len(installed.verified) == len(flows) - 3
    plan = reconcile.reconcile(state, installed, round_=ROUND)
    # An old round on the switch: everything is added again in this round and the old one goes by mask.
    assert plan.round_deletes == [((ROUND - 1) << cookies.ROUND_SHIFT, cookies.ROUND_MASK)]
    assert len(plan.flow_adds) == len(flows)
    assert plan.foreign_flow_deletes == foreign


def test_only_what_differs_is_sent_when_every_entry_is_of_this_round() -> None:
    state = next(s for s in states() if s.flow_count() > 20)
    flows = list(state.flows())
    at = next(i for i, flow in enumerate(flows) if flow.actions and i != 6)
    changed, missing = flows[at], flows[6]
    other = Flow(changed.table, changed.priority, changed.match, (), changed.goto, changed.meter, changed.cookie)
    stray = Flow(changed.table, 1, match(reg0=4095), (), None, None, changed.cookie)
    entries = [reported(flow) for i, flow in enumerate(flows) if i not in (at, 6)]
    entries += [entry_of(other, ROUND), reported(stray)]
    body = b"".join(entries)
    installed = Installed(raw_flows=[(body, 0, len(body))])
    dump_compare.resolve(installed, state, round_=ROUND)
    plan = reconcile.reconcile(state, installed, round_=ROUND)
    assert sorted(map(id, plan.flow_adds)) == sorted(map(id, [changed, missing]))  # the change and the missing
    assert plan.flow_deletes == [stray]
    assert plan.round_deletes == []


def test_a_switch_that_lost_its_flows_is_decoded_not_compared() -> None:
    state = next(s for s in states() if s.flow_count() > 20)
    flows = list(state.flows())
    body = reported(flows[0])
    split = dump_compare.compare([(body, 0, len(body))], state, round_=ROUND, reader=flow_stats.FlowStatsReader())
    assert split.verified == [] and split.other == [(flows[0], ROUND)]
