"""`Table` answers (meta.k8s.io/v1), which kubectl asks for with `Accept: application/json;as=Table;...`.

Columns: Name, then a custom resource's `additionalPrinterColumns` (Age when it names none), or for built-in
kinds a short version of kube-apiserver's own columns (`builtin`). Source:
https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables
"""

from __future__ import annotations

import datetime
from typing import Any

from lab.apiserver.resources import Resource, jsonpath

AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
NAME = {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}


def wants_table(accept: str) -> bool:
    """Whether the Accept header asks for a meta.k8s.io Table first (kubectl get does)."""
    first = accept.split(",")[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first


def columns(resource: Resource) -> list[dict[str, Any]]:
    """The resource's columns after Name: its own (`Resource.columns`), else Age."""
    return list(resource.columns) or [AGE]


def _value(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    value = column["value"](obj) if "value" in column else jsonpath(obj, column["jsonPath"])
    return _date(value) if column.get("type") == "date" and value is not None else _cell(value)


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints ages (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y"


def _date(value: Any) -> Any:
    try:
        then = datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return value
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _cell(value: Any) -> Any:
    if value is None:
        return "<none>"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "<none>"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def table(resource: Resource, objects: list[dict[str, Any]], metadata: dict[str, Any], include: str) -> dict[str, Any]:
    """A Table of `objects`; `include` is the includeObject parameter (None, Metadata (default), Object)."""
    cols = columns(resource)
    # A built-in kind may place Name itself (Events: last, and only with -o wide); CRDs' columns follow it.
    named = not resource.crd and any(c.get("format") == "name" for c in cols)
    definitions: list[dict[str, Any]] = [] if named else [NAME]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in cols
    ]
    rows = []
    for obj in objects:
        first = [] if named else [obj["metadata"]["name"]]
        row: dict[str, Any] = {"cells": first + [_value(obj, c) for c in cols]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
