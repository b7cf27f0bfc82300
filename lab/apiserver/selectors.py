"""Label and field selectors, and the merge patches kubectl sends.

Label selector grammar (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/):
`key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`, `!key`, joined by commas.
Field selectors: `metadata.name`, `metadata.namespace`, and `spec.nodeName` / `status.phase` for pods,
`involvedObject.*`, `reason`, `type`, ... for Events (of either group: they match the stored core v1 Event),
`type` for Secrets, with `=`, `==`, `!=`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from lab.apiserver.http import ApiError

Matcher = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
FIELDS = {"metadata.name", "metadata.namespace"}
POD_FIELDS = {"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName"}
# kube-apiserver's field labels of core v1 Events (pkg/registry/core/event/strategy.go) and Secrets
EVENT_FIELDS = {
    f"involvedObject.{name}"
    for name in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
} | {"reason", "reportingComponent", "type"}
KIND_FIELDS = {"Pod": POD_FIELDS, "Event": EVENT_FIELDS, "Secret": {"type"}}


class SelectorError(ValueError):
    """A selector that does not parse; the message names the parameter and the term."""


def _split(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def label_selector(text: str) -> Matcher:
    """A predicate on an object's `metadata.labels`; raises SelectorError."""
    tests: list[Callable[..., bool]] = []
    for term in _split(text):
        eq = _EQ.match(term)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        found = _SET.match(term)
        if not found or (found.group(1) and found.group(3)):
            raise SelectorError(f"labelSelector: unable to parse requirement: {term.strip()!r}")
        negate, key, op, values = found.groups()
        if op:
            allowed = {value.strip() for value in values.split(",") if value.strip()}
            if op == "in":
                tests.append(lambda labels, k=key, a=allowed: labels.get(k) in a)
            else:
                tests.append(lambda labels, k=key, a=allowed: labels.get(k) not in a)
        elif negate:
            tests.append(lambda labels, k=key: k not in labels)
        else:
            tests.append(lambda labels, k=key: k in labels)
    return lambda obj: all(test(obj.get("metadata", {}).get("labels") or {}) for test in tests)


def field_value(obj: dict[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return "" if current is None else str(current)


def field_selector(text: str, kind: str) -> Matcher:
    """A predicate on the supported fields of a `kind`; raises SelectorError naming an unsupported field."""
    tests: list[Callable[..., bool]] = []
    allowed = FIELDS | KIND_FIELDS.get(kind, set())
    for term in _split(text):
        eq = _EQ.match(term)
        if not eq:
            raise SelectorError(f"fieldSelector: invalid selector: {term.strip()!r}")
        path, op, value = eq.groups()
        if path not in allowed:
            raise SelectorError(f'fieldSelector: field label not supported: "{path}" for {kind}')
        if op == "!=":
            tests.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            tests.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return lambda obj: all(test(obj) for test in tests)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (application/merge-patch+json): returns the patched copy."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Fields of the served built-in kinds whose lists merge (patchStrategy "merge" in the Go types), by field
# name, with their patchMergeKey; "ports" is a container's (containerPort) or a Service's (port). Lists of
# other fields replace, as atomic lists do. Source: k8s.io/api core/v1 and meta/v1 types.go.
MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "addresses": ("type",),
    "taints": ("key",),
    "ownerReferences": ("uid",),
    "ports": ("containerPort", "port"),
}
PRIMITIVE_MERGE = {"finalizers"}  # lists of strings that merge as sets (metadata.finalizers)


def _merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in MERGE_KEYS.get(field, ()):
        if all(key in item for item in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch as kubectl sends it for built-in kinds: objects merge as in RFC 7386; the
    lists of MERGE_KEYS merge element by element on their key (elements with `$patch: delete` go), those of
    PRIMITIVE_MERGE as sets; other lists replace; `$setElementOrder/...`, `$retainKeys`, `$patch: replace`
    and `$deleteFromPrimitiveList/...` are honoured. The merge strategies are known by field name, not
    by the path in each Go type (the documented limit).
    Source: https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name, []) if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif key in PRIMITIVE_MERGE and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = result[key] + [item for item in value if item not in result[key]]
        elif isinstance(value, list) and isinstance(result.get(key), list) and _merge_key(key, result[key] + value):
            merge_key = _merge_key(key, result[key] + value)
            merged = {item[merge_key]: item for item in result[key]}
            for item in value:
                name = item[merge_key]
                if item.get("$patch") == "delete":
                    merged.pop(name, None)
                else:
                    merged[name] = strategic_merge_patch(merged.get(name), item)
            order = patch.get(f"$setElementOrder/{key}")
            names = [entry[merge_key] for entry in order] if order else list(merged)
            result[key] = [merged[name] for name in names if name in merged] + [
                merged[name] for name in merged if name not in names
            ]
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 add, remove, replace and test (move and copy are not served); 422 on a failing op."""
    if not isinstance(operations, list):
        raise ApiError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for number, op in enumerate(operations):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            raise ApiError(422, f"JSON patch operation {number}: path must not be empty")
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.get(part)
            if parent is None:
                raise ApiError(422, f"JSON patch operation {number}: path {op['path']} does not exist")
        last, kind = parts[-1], op.get("op")
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ApiError(422, f"JSON patch operation {number}: test of {op['path']} failed")
        elif kind in ("add", "replace") and isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op.get("value"))
            else:
                parent[index] = op.get("value")
        elif kind in ("add", "replace"):
            parent[last] = op.get("value")
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise ApiError(422, f"JSON patch operation {number}: op {kind!r} is not served (add/remove/replace/test)")
    return doc
