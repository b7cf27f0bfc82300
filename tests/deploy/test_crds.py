"""Tenet's CRDs: the example objects of examples/k8s/ pass their CRD's own openAPIV3Schema, broken ones fail
naming the field, and the ranges are the model's."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from tests.deploy.support import EXAMPLES, Obj, manifest_files, objects, one
from topology.model import VLAN_RANGE, VNI_RANGE

GROUP, VERSION = "tenet.io", "v1alpha1"
KINDS = {"Tenant": "tenants", "Network": "networks", "QosProfile": "qosprofiles"}


def crd(kind: str) -> Obj:
    return one("CustomResourceDefinition", f"{KINDS[kind]}.{GROUP}")


def version(kind: str) -> Obj:
    (served,) = crd(kind)["spec"]["versions"]
    return served


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists properties, as the API server's strict field
    validation (kubectl's default) refuses them; metadata is the API server's own and stays open."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def validator(kind: str) -> jsonschema.protocols.Validator:
    schema = closed(version(kind)["schema"]["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(obj: Obj) -> list[str]:
    """Each error as `path: message`, path in Kubernetes' dotted form (spec.vni)."""
    found = validator(obj["kind"]).iter_errors(obj)
    return sorted(".".join(str(p) for p in error.absolute_path) + ": " + error.message for error in found)


def example(kind: str, name: str) -> Obj:
    return copy.deepcopy(one(kind, name, EXAMPLES))


def test_the_three_crds() -> None:
    assert [o["metadata"]["name"] for o in objects() if o["kind"] == "CustomResourceDefinition"] == [
        f"{plural}.{GROUP}" for plural in KINDS.values()
    ]
    for kind, plural in KINDS.items():
        spec = crd(kind)["spec"]
        assert (spec["group"], spec["scope"]) == (GROUP, "Cluster")
        assert (spec["names"]["kind"], spec["names"]["plural"]) == (kind, plural)
        assert spec["names"]["shortNames"], kind
        served = version(kind)
        assert (served["name"], served["served"], served["storage"]) == (VERSION, True, True)
        assert served["subresources"] == {"status": {}}
        columns = [c["name"] for c in served["additionalPrinterColumns"]]
        assert columns[-1] == "Age"
    columns = [c["name"] for c in version("Network")["additionalPrinterColumns"]]
    assert columns[:4] == ["Tenant", "Encap", "Segment", "Subnet"]


def test_ranges_are_the_models() -> None:
    network = version("Network")["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert (network["properties"]["vni"]["minimum"], network["properties"]["vni"]["maximum"]) == VNI_RANGE
    assert (network["properties"]["vlan"]["minimum"], network["properties"]["vlan"]["maximum"]) == VLAN_RANGE
    assert network["required"] == ["tenant", "encap", "subnet"]
    assert network["properties"]["encap"]["enum"] == ["vxlan", "vlan"]
    assert network["properties"]["natOutgoing"]["default"] is False


def test_cross_field_rules_are_cel() -> None:
    """Rules across fields are left to the API server's CEL: vni only with vxlan, vlan only with vlan."""
    rules = {
        r["rule"]: r
        for r in version("Network")["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    }
    assert rules["!has(self.vni) || self.encap == 'vxlan'"]["fieldPath"] == ".vni"
    assert rules["!has(self.vlan) || self.encap == 'vlan'"]["fieldPath"] == ".vlan"
    assert all(r["message"] for r in rules.values())


def test_examples_are_valid() -> None:
    assert [p.name for p in manifest_files(EXAMPLES)] == ["networks.yaml", "qos.yaml", "tenants.yaml"]
    assert {o["kind"] for o in objects(EXAMPLES)} == set(KINDS)
    for obj in objects(EXAMPLES):
        assert obj["apiVersion"] == f"{GROUP}/{VERSION}"
        assert errors(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "name", "change", "expected"),
    [
        ("Network", "blue-web", {"vni": 16_777_216}, "spec.vni: 16777216 is greater than the maximum of 16777215"),
        ("Network", "blue-web", {"vni": 0}, "spec.vni: 0 is less than the minimum of 1"),
        ("Network", "blue-db", {"vlan": 4095}, "spec.vlan: 4095 is greater than the maximum of 4094"),
        ("Network", "blue-web", {"encap": "geneve"}, "spec.encap: 'geneve' is not one of ['vxlan', 'vlan']"),
        ("Network", "blue-web", {"tenant": None}, "spec: 'tenant' is a required property"),
        ("Network", "blue-web", {"subnet": "10.1.0.0/33"}, "spec.subnet: '10.1.0.0/33' does not match"),
        ("Network", "blue-web", {"subnet": "fd00::/64"}, "spec.subnet: 'fd00::/64' does not match"),
        ("Network", "blue-web", {"gateway": "10.1.0.256"}, "spec.gateway: '10.1.0.256' does not match"),
        ("Network", "blue-web", {"mtu": 100}, "spec.mtu: 100 is less than the minimum of 576"),
        ("Network", "blue-web", {"natOutgoing": "yes"}, "spec.natOutgoing: 'yes' is not of type 'boolean'"),
        ("Network", "blue-web", {"natOutgoign": True}, "spec: Additional properties are not allowed"),
        (
            "Network",
            "blue-db",
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}},
            "spec.namespaceSelector.matchExpressions.0.operator: 'Has' is not one of",
        ),
        ("Tenant", "blue", {"quota": {"networks": -1}}, "spec.quota.networks: -1 is less than the minimum of 0"),
        ("QosProfile", "gold", {"rateKbps": None}, "spec: 'rateKbps' is a required property"),
        ("QosProfile", "gold", {"rateKbps": 0}, "spec.rateKbps: 0 is less than the minimum of 1"),
        ("QosProfile", "gold", {"direction": "up"}, "spec.direction: 'up' is not one of ['egress', 'ingress', 'both']"),
    ],
)
def test_broken_objects_fail_naming_the_field(kind: str, name: str, change: dict, expected: str) -> None:
    obj = example(kind, name)
    for key, value in change.items():
        if value is None:
            del obj["spec"][key]
        else:
            obj["spec"][key] = value
    found = errors(obj)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_network_needs_a_spec() -> None:
    obj = example("Network", "red-web")
    del obj["spec"]
    assert errors(obj) == [": 'spec' is a required property"]


def schema_nodes(schema: Obj, path: str = "") -> list[tuple[str, Obj]]:
    """Every schema node under a CRD's openAPIV3Schema, with its path (spec.quota.networks, spec.namespaces[])."""
    found = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        found += schema_nodes(child, f"{path}.{name}".lstrip("."))
    if isinstance(schema.get("items"), dict):
        found += schema_nodes(schema["items"], path + "[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += schema_nodes(schema["additionalProperties"], path + "{}")
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_structural(kind: str) -> None:
    """The API server accepts only structural schemas: every node has a type, and a default passes its node."""
    for path, node in schema_nodes(version(kind)["schema"]["openAPIV3Schema"]):
        assert "type" in node, f"{kind} {path or '(root)'}: no type"
        if "default" in node:
            jsonschema.Draft202012Validator(node).validate(node["default"])
        if node.get("x-kubernetes-list-type") == "map":
            assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"]["required"]), path


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_name_fields_of_the_schema(kind: str) -> None:
    paths = {path for path, _ in schema_nodes(version(kind)["schema"]["openAPIV3Schema"])}
    for column in version(kind)["additionalPrinterColumns"]:
        field = column["jsonPath"].lstrip(".")
        assert field in paths or field == "metadata.creationTimestamp", column
