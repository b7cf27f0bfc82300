"""The WSGI application: REST paths of the Kubernetes API, discovery, and the bearer token check.

Paths (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris):
`/api/v1/{plural}[/{name}[/status]]`, `/api/v1/namespaces/{ns}/{plural}[/{name}[/status|scale]]` and the same under
`/apis/{group}/{version}`; `?watch=true` on a collection watches it. Discovery: `/api`, `/api/v1`, `/apis`,
`/apis/{group}`, `/apis/{group}/{version}`; `/version`; `/healthz`, `/livez`, `/readyz`; and `/openapi/v3`
with one document per group-version that tells kubectl the server validates fields itself.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lab.apiserver import openapi, scale
from lab.apiserver.http import ApiError, Request, encode, phrase
from lab.apiserver.objects import Registry
from lab.apiserver.resources import Resource, from_storage
from lab.apiserver.selectors import SelectorError, field_selector, label_selector
from lab.apiserver.store import Expired
from lab.apiserver.tables import table, wants_table
from lab.apiserver.watching import parse_version, stream

log = logging.getLogger(__name__)
VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0-tenet-lab",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "",
    "compiler": "",
    "platform": "linux/amd64",
}
OPEN = {"/version", "/healthz", "/livez", "/readyz"}
StartResponse = Callable[..., Any]


class Application:
    """The WSGI callable over a Registry; `token` is the bearer token every request but health and
    version checks must carry; `bookmark_interval` in seconds."""

    def __init__(self, registry: Registry, token: str, bookmark_interval: float = 60.0) -> None:
        self.registry = registry
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = Request.from_environ(environ)
            if request.path not in OPEN:
                self._authenticate(request)
            code, body = self.route(request)
        except ApiError as error:
            code, body = error.code, error.status()
        except Expired as error:
            code, body = 410, ApiError(410, f"too old resource version: {error}").status()
        except Exception as error:  # a bug or the store unreachable: a Status, and the trace in the log
            log.exception("%s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            code, body = 500, ApiError(500, f"internal error: {error}").status()
        if isinstance(body, Iterator):
            start_response("200 OK", [("Content-Type", "application/json")])  # cheroot sends it chunked
            return body
        if isinstance(body, str):
            payload, kind = body.encode(), "text/plain"
        else:
            payload, kind = encode(body), "application/json"
        start_response(f"{code} {phrase(code)}", [("Content-Type", kind), ("Content-Length", str(len(payload)))])
        return [payload]

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
            raise ApiError(401, "Unauthorized")

    # -- routing ---------------------------------------------------------------------------------------

    def route(self, request: Request) -> tuple[int, Any]:
        parts = request.segments
        if request.path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if request.path == "/version":
            return 200, VERSION
        if parts[:1] == ["openapi"]:
            return 200, openapi.document(self.registry.resources(), parts[1:], request.query)
        if request.method != "GET" and (parts in (["api"], ["apis"]) or (parts[:1] == ["apis"] and len(parts) == 2)):
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            return 200, self._groups()
        if parts[:2] == ["api", "v1"]:
            return self._resource_path(request, "", "v1", parts[2:])
        if parts[:1] == ["apis"] and len(parts) == 2:
            for group in self._groups()["groups"]:
                if group["name"] == parts[1]:
                    return 200, dict(group, kind="APIGroup", apiVersion="v1")
            raise ApiError(404, f"the server could not find the requested resource (group {parts[1]})")
        if parts[:1] == ["apis"] and len(parts) >= 3:
            return self._resource_path(request, parts[1], parts[2], parts[3:])
        raise ApiError(404, f"the server could not find the requested resource ({request.path})")

    def _groups(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for resource in self.registry.resources():
            if resource.group and resource.version not in groups.setdefault(resource.group, []):
                groups[resource.group].append(resource.version)
        out = []
        for name, versions in groups.items():
            entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
            out.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        found = [r for r in self.registry.resources() if (r.group, r.version) == (group, version)]
        if not found:
            raise ApiError(404, f"the server could not find the requested resource ({group}/{version})")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": found[0].group_version,
            "resources": [entry for r in found for entry in r.discovery()],
        }

    def _resource_path(self, request: Request, group: str, version: str, rest: list[str]) -> tuple[int, Any]:
        if not rest:
            if request.method != "GET":
                raise ApiError(405, f"{request.method} is not allowed on {request.path}")
            return 200, self._resource_list(group, version)
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] != "status":
            namespace, rest = rest[1], rest[2:]
        resource = self.registry.find(group, version, rest[0])
        if namespace is not None and not resource.namespaced:
            raise ApiError(404, f"{resource.plural} is not namespaced")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else ""
        known = (subresource == "status" and resource.status) or (subresource == "scale" and resource.scale)
        if len(rest) > 3 or (subresource and not known):
            raise ApiError(404, f"the server could not find the requested resource ({request.path})")
        if resource.namespaced and name is not None and namespace is None:
            raise ApiError(404, f"{resource.plural} is namespaced: use /namespaces/{{namespace}}/{resource.plural}")
        return self._handle(request, resource, namespace, name, subresource)

    # -- verbs ---------------------------------------------------------------------------------------

    def _handle(
        self, request: Request, resource: Resource, namespace: str | None, name: str | None, subresource: str
    ) -> tuple[int, Any]:
        registry, method = self.registry, request.method
        if name is None:
            if method == "GET" and request.flag("watch"):
                return 200, self._watch(request, resource, namespace)
            if method == "GET":
                return 200, self._list(request, resource, namespace)
            if method == "POST":
                if resource.namespaced and namespace is None:
                    raise ApiError(404, f"{resource.plural} is namespaced: POST to /namespaces/{{namespace}}/...")
                return 201, registry.create(resource, namespace, request.json(), request.dry_run, request.strict)
            raise ApiError(405, f"{method} is not allowed on a collection of {resource.plural}")
        if subresource == "scale":
            return 200, scale.handle(registry, request, resource, namespace, name)
        if method == "GET":
            obj = registry.get(resource, namespace, name)
            if wants_table(request.accept):
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return 200, table(resource, [obj], meta, request.query.get("includeObject", "Metadata"))
            return 200, obj
        if method == "PUT":
            return 200, registry.update(
                resource,
                namespace,
                name,
                request.json(),
                subresource=subresource,
                dry_run=request.dry_run,
                strict=request.strict,
            )
        if method == "PATCH":
            try:
                patch = json.loads(request.body or b"null")
            except ValueError as error:
                raise ApiError(400, f"the patch is not JSON: {error}") from error
            return 200, registry.patch(
                resource,
                namespace,
                name,
                request.content_type,
                patch,
                subresource=subresource,
                dry_run=request.dry_run,
                strict=request.strict,
            )
        if method == "DELETE" and not subresource:
            options = request.json() if request.body.strip() else {}
            in_body = options.get("dryRun") or []  # DeleteOptions may carry it, as kubectl delete sends it
            if in_body not in ([], ["All"]):
                raise ApiError(400, f'dryRun: Unsupported value: {json.dumps(in_body)}: supported values: "All"')
            return 200, registry.delete(resource, namespace, name, options, request.dry_run or bool(in_body))
        raise ApiError(405, f"{method} is not allowed on {request.path}")

    def _matcher(self, request: Request, resource: Resource) -> Callable[[dict[str, Any]], bool]:
        try:
            labels = label_selector(request.query.get("labelSelector", ""))
            fields = field_selector(request.query.get("fieldSelector", ""), resource.kind)
        except SelectorError as error:
            raise ApiError(400, str(error)) from None
        return lambda obj: labels(obj) and fields(obj)

    def _snapshot(
        self, resource: Resource, namespace: str | None, matches: Callable[[dict[str, Any]], bool], revision: int
    ) -> tuple[list[dict[str, Any]], int]:
        entries, revision = self.registry.store.list(self.registry.prefix(resource, namespace), revision)
        objects = [self.registry.present(entry, resource) for entry in entries]
        return [obj for obj in objects if matches(obj)], revision

    def _list(self, request: Request, resource: Resource, namespace: str | None) -> dict[str, Any]:
        matches = self._matcher(request, resource)
        version = parse_version(request.query.get("resourceVersion"))
        match = request.query.get("resourceVersionMatch", "")
        if match not in ("", "Exact", "NotOlderThan"):
            raise ApiError(400, f'resourceVersionMatch: Unsupported value: "{match}"')
        if match and not request.query.get("resourceVersion"):
            raise ApiError(400, "resourceVersionMatch: Forbidden: resourceVersionMatch needs a resourceVersion")
        exact = version if match == "Exact" else 0
        if version and version > self.registry.store.revision():
            raise ApiError(504, f"Too large resource version: {version}", "Timeout")
        objects, revision = self._snapshot(resource, namespace, matches, exact)
        meta = {"resourceVersion": str(revision)}
        if wants_table(request.accept):
            return table(resource, objects, meta, request.query.get("includeObject", "Metadata"))
        for obj in objects:  # items of a list carry no kind/apiVersion in Kubernetes' JSON; clients cope
            obj.setdefault("kind", resource.kind)
            obj.setdefault("apiVersion", resource.group_version)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.group_version,
            "metadata": meta,
            "items": objects,
        }

    def _watch(self, request: Request, resource: Resource, namespace: str | None) -> Iterator[bytes]:
        matches = self._matcher(request, resource)
        include = request.query.get("includeObject", "Metadata")

        def render(stored: dict[str, Any]) -> dict[str, Any]:
            obj = from_storage(resource, stored)
            if not wants_table(request.accept):
                return obj
            return table(resource, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include)

        return stream(
            self.registry.store,
            resource,
            self.registry.prefix(resource, namespace),
            matches,
            request.query,
            lambda: self._snapshot(resource, namespace, matches, 0),
            self.stopping,
            self.bookmark_interval,
            render,
        )
