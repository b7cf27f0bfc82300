"""The model given degenerate values directly (the YAML loader and the Kubernetes watchers call it so):
a ValidationError naming the field, never another exception, and a model left exactly as it was."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.degenerate import ADDRESSES, BOUNDARY_INTS, NAMES, NORMAL_SUBNETS, SUBNETS, WRONG_TYPES
from topology.errors import ValidationError
from topology.loader import dump_model
from topology.model import Model

SETTINGS = settings(
    max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def base() -> Model:
    model = Model()
    model.add_node("node1", tunnel_ip="192.168.50.1", uplink="eth1")
    model.add_tenant("blue")
    model.add_network("blue", "web", encap="vxlan", segment=100, subnet="10.0.0.0/24")
    return model


def state(model: Model) -> tuple[Any, ...]:
    return dump_model(model), model.revision, sorted(model.networks), sorted(model.endpoints)


CALLS = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("network"),
            "name": st.just("db") | NAMES | WRONG_TYPES,
            "encap": st.sampled_from(["vxlan", "vlan"]) | WRONG_TYPES,
            "segment": st.integers(1, 4094) | BOUNDARY_INTS | WRONG_TYPES,
            "subnet": NORMAL_SUBNETS | SUBNETS | WRONG_TYPES,
            "gateway": st.none() | ADDRESSES | WRONG_TYPES,
            "mtu": st.none() | BOUNDARY_INTS | WRONG_TYPES,
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("endpoint"),
            "id": st.just("e1") | NAMES | WRONG_TYPES,
            "ip": st.none() | ADDRESSES | WRONG_TYPES,
            "port_name": st.none() | NAMES | WRONG_TYPES,
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("node"),
            "name": st.just("node2") | NAMES | WRONG_TYPES,
            "tunnel_ip": st.just("192.168.50.2") | ADDRESSES | WRONG_TYPES,
            "uplink": st.none() | NAMES | WRONG_TYPES,
            "datapath_id": st.none() | BOUNDARY_INTS | WRONG_TYPES,
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("qos"),
            "name": st.just("gold") | NAMES | WRONG_TYPES,
            "rate_kbps": st.integers(1, 1000) | BOUNDARY_INTS | WRONG_TYPES,
            "burst_kb": st.integers(1, 1000) | BOUNDARY_INTS | WRONG_TYPES,
        }
    ),
)


def call(model: Model, args: dict[str, Any]) -> None:
    kind = args.pop("kind")
    if kind == "network":
        name, segment = args.pop("name"), args.pop("segment")
        model.add_network("blue", name, segment=segment, path="network", **args)
    elif kind == "endpoint":
        model.add_endpoint(args.pop("id"), network="blue/web", node="node1", path="endpoint", **args)
    elif kind == "node":
        model.add_node(args.pop("name"), path="node", **args)
    else:
        model.add_qos(args.pop("name"), path="qos", **args)


@SETTINGS
@given(args=CALLS)
def test_degenerate_values_are_validation_errors_that_change_nothing(args: dict[str, Any]) -> None:
    model = base()
    before = state(model)
    kind = args["kind"]
    try:
        call(model, dict(args))
    except ValidationError as error:
        assert error.path.startswith(f"{kind}."), error
        assert state(model) == before, error
    else:
        assert state(model) != before  # accepted: something was added
