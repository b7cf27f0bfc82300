"""The topology file's namespaces, endpoint labels and ports, and NetworkPolicies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from topology.errors import ValidationError
from topology.loader import dump_model, load_data, load_file
from topology.netpol import allowed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "netpol.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_example_loads_with_its_namespaces_pods_and_policies() -> None:
    model = load_file(EXAMPLE)
    assert sorted(model.namespaces) == ["w", "x", "y", "z"]
    assert sorted(model.policies) == ["x/allow-from-y", "y/egress-not-z"]
    assert model.endpoints["x-a"].label_map == {"pod": "a"} and len(model.endpoints["x-a"].ports) == 4
    assert allowed(model, "y-b", "x-a", "TCP", 80) and not allowed(model, "y-b", "x-a", "TCP", 81)
    assert allowed(model, "y-b", "x-a", "UDP", 81) and not allowed(model, "z-b", "x-a", "UDP", 81)
    assert not allowed(model, "y-b", "z-a", "TCP", 80) and allowed(model, "z-b", "y-a", "TCP", 80)
    assert not allowed(model, "w-a", "x-b", "TCP", 80)  # another tenant, same address as x-a


def test_a_dumped_model_loads_as_the_same_model() -> None:
    model = load_file(EXAMPLE)
    again = load_data(yaml.safe_load(yaml.safe_dump(dump_model(model))))
    assert dump_model(again) == dump_model(model)
    assert again.policies == model.policies and again.endpoints == model.endpoints


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d["namespaces"][0].update(tenant="green"), "namespaces[0].tenant"),
        (lambda d: d["namespaces"][0].update(colour="red"), "namespaces[0].colour"),
        (lambda d: d["endpoints"][0].update(namespace="w"), "endpoints[0].namespace"),
        (lambda d: d["endpoints"][0].update(labels={"a": "-"}), "endpoints[0].labels.a"),
        (lambda d: d["endpoints"][0]["ports"][0].update(port=70000), "endpoints[0].ports[0].port"),
        (lambda d: d["policies"][1]["spec"].update(policyTypes=["Both"]), "policies[1].spec.policyTypes[0]"),
        (lambda d: d["policies"][0]["metadata"].update(namespace="v"), "policies[0].metadata.namespace"),
        (lambda d: d["policies"].append(d["policies"][0]), "policies[2].metadata.name"),
        (lambda d: d["policies"][0].update(kind="Pod"), "policies[0].kind"),
    ],
)
def test_a_bad_entry_is_refused_naming_its_path(edit: Any, path: str) -> None:
    data = example()
    edit(data)
    with pytest.raises(ValidationError) as raised:
        load_data(data)
    assert raised.value.path == path
