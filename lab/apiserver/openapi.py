"""The OpenAPI v3 documents kubectl reads before `apply` and `create`.

`/openapi/v3` lists one document per group-version (`{"paths": {"api/v1": {"serverRelativeURL": ...}}}`);
each document has, per resource, the PATCH operation of its item path tagged with
`x-kubernetes-group-version-kind` and the `fieldValidation` query parameter. That tells kubectl the server
validates fields itself, so it sends `fieldValidation=Strict` instead of downloading schemas for client-side
validation (source: kubectl's query parameter verifier, k8s.io/cli-runtime/pkg/resource). Object schemas
(components) are not served: kubectl then builds strategic merge patches from its compiled-in types.
`/openapi/v2` is not served (404); kubectl does not need it when v3 is there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lab.apiserver.http import ApiError
from lab.apiserver.resources import Resource


def _gv_path(resource: Resource) -> str:
    return f"apis/{resource.group}/{resource.version}" if resource.group else f"api/{resource.version}"


def _document(resources: list[Resource]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in resources:
        base = "/" + _gv_path(r) + ("/namespaces/{namespace}" if r.namespaced else "")
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        operation = {
            "operationId": f"patch{r.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                for name in ("dryRun", "fieldManager", "fieldValidation")
            ],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{base}/{r.plural}/{{name}}"] = {"patch": operation}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths}


def document(resources: list[Resource], parts: list[str], query: dict[str, str]) -> dict[str, Any]:
    """The answer to GET /openapi/{parts...}; raises ApiError 404 for what is not served."""
    if parts[:1] != ["v3"]:
        raise ApiError(404, "only /openapi/v3 is served")
    by_gv: dict[str, list[Resource]] = {}
    for resource in resources:
        by_gv.setdefault(_gv_path(resource), []).append(resource)
    if len(parts) == 1:
        out = {}
        for gv, members in by_gv.items():
            digest = hashlib.sha256(json.dumps(_document(members), sort_keys=True).encode()).hexdigest()[:16]
            out[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest.upper()}"}
        return {"paths": out}
    gv = "/".join(parts[1:])
    if gv not in by_gv:
        raise ApiError(404, f"no OpenAPI document for {gv}")
    return _document(by_gv[gv])
