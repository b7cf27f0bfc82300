"""Selectors and patches of the stand-in API server, as pure functions."""

from __future__ import annotations

import pytest

from lab.apiserver.http import ApiError
from lab.apiserver.selectors import (
    SelectorError,
    field_selector,
    json_patch,
    label_selector,
    merge_patch,
    strategic_merge_patch,
)


def labelled(**labels: str) -> dict:
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", [True, True, True]),
        ("app=a", [True, False, False]),
        ("app = a", [True, False, False]),
        ("app!=a", [False, True, True]),
        ("tier in (x, y)", [True, True, False]),
        ("tier notin (x)", [False, True, True]),
        ("tier", [True, True, False]),
        ("!tier", [False, False, True]),
        ("app in (a,b),!tier", [False, False, False]),
        ("app=b,tier=y", [False, True, False]),
    ],
)
def test_label_selector(selector: str, expected: list[bool]) -> None:
    objects = [labelled(app="a", tier="x"), labelled(app="b", tier="y"), labelled(app="c")]
    assert [label_selector(selector)(obj) for obj in objects] == expected


@pytest.mark.parametrize("selector", ["app in a", "!app=b", "a b", "in (x)x"])
def test_bad_label_selectors_name_the_parameter(selector: str) -> None:
    with pytest.raises(SelectorError, match="labelSelector"):
        label_selector(selector)


def test_field_selector_fields_depend_on_the_kind() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "n1"}}
    assert field_selector("spec.nodeName=n1,metadata.namespace==n", "Pod")(pod)
    assert not field_selector("spec.nodeName!=n1", "Pod")(pod)
    with pytest.raises(SelectorError, match=r'"spec\.nodeName" for Service'):
        field_selector("spec.nodeName=n1", "Service")


def test_merge_patch_follows_rfc_7386() -> None:
    # RFC 7386 appendix A, a few of its examples
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}


def test_strategic_merge_patch_merges_named_lists_and_follows_directives() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}], "tags": ["x", "y"]}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "2"}, {"name": "b", "$patch": "delete"}, {"name": "c"}],
            "$deleteFromPrimitiveList/tags": ["x"],
        }
    }
    assert strategic_merge_patch(pod, patch) == {
        "spec": {"containers": [{"name": "c"}, {"name": "a", "image": "2"}], "tags": ["y"]}
    }
    assert strategic_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"$retainKeys": ["b"], "b": 3}}) == {"a": {"b": 3}}
    # a NetworkPolicy's rules and their ports are atomic lists: the patch's list replaces
    policy = {"spec": {"ingress": [{"ports": [{"port": 80}, {"port": 443}]}]}}
    assert strategic_merge_patch(policy, {"spec": {"ingress": [{"ports": [{"port": 80}]}]}}) == {
        "spec": {"ingress": [{"ports": [{"port": 80}]}]}
    }
    # finalizers merge as a set
    assert strategic_merge_patch({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b", "a"]}}) == {
        "metadata": {"finalizers": ["a", "b"]}
    }
    assert strategic_merge_patch({"a": {"b": 1}}, {"a": {"$patch": "replace", "c": 2}}) == {"a": {"c": 2}}


def test_json_patch() -> None:
    doc = {"metadata": {"labels": {"a": "1"}, "finalizers": ["x", "y"]}}
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "3"},
    ]
    assert json_patch(doc, ops) == {"metadata": {"labels": {"a": "3", "b/c": "2"}, "finalizers": ["y", "z"]}}
    assert doc["metadata"]["labels"] == {"a": "1"}  # the original is left alone
    with pytest.raises(ApiError, match="test of /metadata/labels/a failed"):
        json_patch(doc, [{"op": "test", "path": "/metadata/labels/a", "value": "2"}])
    with pytest.raises(ApiError, match="'move' is not served"):
        json_patch(doc, [{"op": "move", "path": "/metadata/labels/a", "from": "/x"}])
