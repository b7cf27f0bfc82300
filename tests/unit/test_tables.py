"""Each table's declaration is enforced: a flow that strays from it fails here, not on a switch."""

from __future__ import annotations

import pytest

from controller.pipeline.compile import Compiler
from controller.pipeline.ir import DecTtl, Flow, OutputReg, PopVlan, SetField, match
from controller.pipeline.tables import PIPELINE, TABLES, Pipeline, PipelineError, Table
from tests.unit.topologies import SHAPES, example


def test_table_ids_follow_declaration_order() -> None:
    assert [PIPELINE.table_id(t.name) for t in TABLES] == list(range(len(TABLES)))
    assert TABLES[0].name == "classify"
    # the gateway's egress tables come after delivery, so the tables before them keep their ids
    assert [t.name for t in TABLES[-4:]] == ["output", "egress_gateway", "egress_snat", "egress_out"]


@pytest.mark.parametrize(
    ("flow", "complaint"),
    [
        (Flow("classify", 1, match(tcp_dst=1), goto="port_security"), "does not match on 'tcp_dst'"),
        (Flow("l2", 1, match(reg0=1), (SetField("eth_src", 1),)), "does not set 'eth_src'"),
        (Flow("l2", 1, match(reg0=1), (DecTtl(),)), "does not allow DecTtl"),
        (Flow("qos", 1, match(in_port=1), goto="l2"), "may not go to 'l2'"),
        (Flow("port_security", 1, (), (PopVlan(),)), "does not allow PopVlan"),
        (Flow("output", 1, match(eth_dst=1), (OutputReg("reg3"),)), "does not match on 'eth_dst'"),
        (Flow("nowhere", 1, ()), "unknown table"),
    ],
)
def test_a_flow_outside_its_declaration_is_rejected(flow: Flow, complaint: str) -> None:
    with pytest.raises(PipelineError, match=complaint):
        PIPELINE.verify(flow)


def test_a_table_may_only_go_forward() -> None:
    with pytest.raises(PipelineError, match="may only go forward"):
        Pipeline((Table("a", "", frozenset()), Table("b", "", frozenset(), next_tables=("a",))))


@pytest.mark.parametrize("shape", ["example", *SHAPES])
def test_every_compiled_flow_fits_its_table(shape: str) -> None:
    model = example() if shape == "example" else SHAPES[shape](1)
    for state in Compiler(model).compile_all().values():
        for flow in state.flows():
            assert PIPELINE.verify(flow) is flow
