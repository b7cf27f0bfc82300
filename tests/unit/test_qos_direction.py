"""QoS profiles: the default burst, and the direction deciding which of an endpoint's meters exist."""

from __future__ import annotations

import pytest

from controller.pipeline.compile import Compiler
from controller.pipeline.features import qos
from tests.unit.topologies import example
from topology.model import ValidationError, default_burst_kb


@pytest.mark.parametrize(("direction", "egress", "ingress"), [("egress", 1, 0), ("ingress", 0, 1), ("both", 1, 1)])
def test_direction_picks_the_meters(direction: str, egress: int, ingress: int) -> None:
    model = example()
    model.detach_qos("blue/web")
    model.add_qos("cap", rate_kbps=8_000, direction=direction)
    model.attach_qos("cap", "blue/web")
    b1 = model.endpoints["b1"]
    meters = Compiler(model).compile_node(b1.node).meters()
    assert (qos.egress_meter_id(b1) in meters, qos.ingress_meter_id(b1) in meters) == (bool(egress), bool(ingress))
    for meter in meters.values():
        assert (meter.rate_kbps, meter.burst_kb) == (8_000, 4_000)  # the default burst: half a second, in kbit


def test_every_endpoint_of_a_network_gets_its_own_meters() -> None:
    model = example()
    on_node = [e for e in model.endpoints.values() if e.network == "blue/web" and e.node == "node1"]
    meters = Compiler(model).compile_node("node1").meters()
    assert {qos.egress_meter_id(e) for e in on_node} | {qos.ingress_meter_id(e) for e in on_node} == set(meters)


def test_defaults_and_errors() -> None:
    assert [default_burst_kb(r) for r in (1, 1_000, 1_000_000)] == [1, 500, 500_000]
    model = example()
    with pytest.raises(ValidationError, match="direction"):
        model.add_qos("x", rate_kbps=1_000, direction="up")
    with pytest.raises(ValidationError, match="burst_kb"):
        model.add_qos("x", rate_kbps=1_000, burst_kb=0)
    assert "x" not in model.qos_profiles
