"""The `scale` subresource (an autoscaling/v1 `Scale`) of resources that have one (Deployments): what
`kubectl scale` reads and patches. Writing it changes only the object's `spec.replicas`.
Source: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/ (replace scale)
"""

from __future__ import annotations

import json
from typing import Any

from lab.apiserver.errors import conflict, invalid
from lab.apiserver.http import ApiError, Request
from lab.apiserver.objects import PATCH_TYPES, UNKNOWN_PATCH, Registry
from lab.apiserver.resources import Resource
from lab.apiserver.selectors import json_patch, merge_patch, strategic_merge_patch

DEFAULT_REPLICAS = 1  # what kube-apiserver defaults a Deployment's spec.replicas to
META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def _selector(selector: dict[str, Any]) -> str:
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        terms.append(
            {"In": f"{key} in ({','.join(values)})", "NotIn": f"{key} notin ({','.join(values)})",
             "Exists": str(key), "DoesNotExist": f"!{key}"}.get(op, "")
        )  # fmt: skip
    return ",".join(term for term in terms if term)


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale of an object with `spec.replicas` and `spec.selector`."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {key: obj["metadata"][key] for key in META if key in obj["metadata"]},
        "spec": {"replicas": spec.get("replicas", DEFAULT_REPLICAS)},
        "status": {"replicas": status.get("replicas", 0), "selector": _selector(spec.get("selector") or {})},
    }


def handle(registry: Registry, request: Request, resource: Resource, namespace: str | None, name: str) -> Any:
    """GET, PUT or PATCH (merge, strategic merge, JSON patch) of the scale of `name`; answers the Scale.
    Raises ApiError: 404, 405, 409 on a stale `metadata.resourceVersion`, 415, 422 for a bad `spec.replicas`."""
    if request.method not in ("GET", "PUT", "PATCH"):
        raise ApiError(405, f"{request.method} is not allowed on {request.path}")
    for _attempt in range(10):
        obj = registry.get(resource, namespace, name)
        current = scale_of(obj)
        if request.method == "GET":
            return current
        if request.method == "PUT":
            wanted = request.json()
        else:
            try:
                patch = json.loads(request.body or b"null")
            except ValueError as error:
                raise ApiError(400, f"the patch is not JSON: {error}") from error
            if request.content_type not in PATCH_TYPES:
                raise ApiError(415, UNKNOWN_PATCH)
            if request.content_type == "application/json-patch+json":
                wanted = json_patch(current, patch)
            elif not isinstance(patch, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            elif request.content_type == "application/merge-patch+json":
                wanted = merge_patch(current, patch)
            else:
                wanted = strategic_merge_patch(current, patch)
        pinned = (wanted.get("metadata") or {}).get("resourceVersion")
        if pinned and request.method == "PUT" and str(pinned) != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(resource, name, "spec.replicas", f"Invalid value: {json.dumps(replicas)}: must be "
                          "greater than or equal to 0")  # fmt: skip
        obj.setdefault("spec", {})["replicas"] = replicas
        try:
            updated = registry.update(resource, namespace, name, obj, dry_run=request.dry_run)
        except ApiError as error:
            if error.reason != "Conflict" or request.method == "PUT":
                raise
            continue  # a write came between: patch the newer object
        return scale_of(updated)
    raise conflict(resource, name)
