"""The shallow checks of built-in kinds (lab.apiserver.validation), without a server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lab.apiserver import validation
from lab.apiserver.builtin import BUILTIN, builtin

DAEMONSET: dict[str, Any] = {
    "metadata": {"name": "a", "namespace": "n"},
    "spec": {
        "selector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In",
                                                                         "values": ["x", "y"]}]},
        "template": {"metadata": {"labels": {"app": "a", "tier": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}},
    },
}  # fmt: skip


def changed(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target = out
    for part in parents:
        target = target.setdefault(part, {})
    if value is None:
        target.pop(last, None)
    else:
        target[last] = value
    return out


def fields(errors: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in errors]


@pytest.mark.parametrize(
    ("labels", "matches"),
    [
        ({"app": "a", "tier": "x"}, True),
        ({"app": "a", "tier": "z"}, False),
        ({"app": "a"}, False),
        ({"app": "b", "tier": "x"}, False),
    ],
)
def test_label_selectors_of_workloads(labels: dict[str, str], matches: bool) -> None:
    assert validation.selector_matches(DAEMONSET["spec"]["selector"], labels) is matches
    exists = {"matchExpressions": [{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "DoesNotExist"}]}
    assert validation.selector_matches(exists, {"k": ""}) and not validation.selector_matches(exists, {"j": "1"})


def test_daemon_set() -> None:
    check = builtin("daemonsets", "apps").check
    assert check is not None
    assert check(DAEMONSET, None) == []
    on_delete = changed(DAEMONSET, "spec.updateStrategy", {"type": "OnDelete", "rollingUpdate": {}})
    assert fields(check(on_delete, None)) == ["spec.updateStrategy.rollingUpdate"]
    assert fields(check(changed(DAEMONSET, "spec.updateStrategy", {"type": "Recreate"}), None)) == [
        "spec.updateStrategy.type"
    ]
    two = changed(DAEMONSET, "spec.template.spec.containers", [{"name": "c", "image": "i"}, {"name": "c"}])
    assert fields(check(two, None)) == [
        "spec.template.spec.containers[1].name",
        "spec.template.spec.containers[1].image",
    ]
    moved = changed(DAEMONSET, "spec.selector", {"matchLabels": {"app": "a"}})
    assert check(moved, None) == [] and fields(check(moved, DAEMONSET)) == ["spec.selector"]
    assert fields(check(changed(DAEMONSET, "spec.selector", {}), None)) == ["spec.selector"]


def test_roles_and_bindings() -> None:
    role, cluster_role = builtin("roles", validation.RBAC).check, builtin("clusterroles", validation.RBAC).check
    binding = builtin("rolebindings", validation.RBAC).check
    assert role is not None and cluster_role is not None and binding is not None
    urls = {"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}
    assert cluster_role(urls, None) == [] and fields(role(urls, None)) == ["rules[0].nonResourceURLs"]
    assert fields(role({"rules": [{"verbs": ["get"]}]}, None)) == ["rules[0].apiGroups", "rules[0].resources"]
    ref = {"apiGroup": validation.RBAC, "kind": "Role", "name": "r"}
    good = {"roleRef": ref, "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "User", "name": "u",
            "apiGroup": validation.RBAC}]}  # fmt: skip
    assert binding(good, None) == []
    assert fields(binding(changed(good, "roleRef.name", "other"), good)) == ["roleRef"]
    assert fields(binding(changed(good, "subjects", [{"kind": "Robot", "name": "r"}]), None)) == ["subjects[0].kind"]
    assert fields(binding(changed(good, "roleRef.apiGroup", ""), None)) == ["roleRef.apiGroup"]


def test_config_maps_and_secrets() -> None:
    config_map, secret = builtin("configmaps").check, builtin("secrets").check
    assert config_map is not None and secret is not None
    frozen = {"data": {"a": "1"}, "immutable": True}
    assert config_map(frozen, None) == []
    assert fields(config_map({"data": {"a": "2"}, "immutable": True}, frozen)) == ["data"]
    assert fields(config_map({"data": {"a": "1"}}, frozen)) == ["immutable"]
    assert fields(config_map({"data": {"../x": "1"}}, None)) == ["data[../x]"]
    made = {"stringData": {"k": "v"}, "data": {"j": "dg=="}}
    assert secret(made, None) == [] and made == {"data": {"j": "dg==", "k": "dg=="}, "type": "Opaque"}
    assert fields(secret({"type": "kubernetes.io/tls"}, made)) == ["type"]


def test_every_built_in_kind_is_listed_once() -> None:
    keys = [(r.group, r.version, r.plural) for r in BUILTIN]
    assert len(keys) == len(set(keys))
    short = [name for r in BUILTIN for name in r.short_names if r.group != "events.k8s.io"]
    assert len(short) == len(set(short)), "a short name must map to one resource"
