"""The northbound API as a WSGI application; `controller.api.server` serves it (both exported by
`controller.api`).

    app = make_app(service, load_tokens("/etc/tenet/tokens.json"), switch_status=ofapp.status)
    server = serve(app, "127.0.0.1", 8780).start()   # bound at once, then served from a thread
    ...
    server.stop()

Errors are JSON, `{"error": {"message": ..., "field": ...}}`: the model's validation errors are 400, or 409
when something is already in use; unknown objects 404; a missing or unknown token 401; admin-only
operations 403 for tenant tokens; a failing store 503, as is a readiness wait over the cap (with
Retry-After). Nothing a client sends may cause a 500; a change the compiler fails on is rolled back and
answers 500 naming the change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from controller.api.auth import Principal, Tokens, bearer
from controller.api.http import (
    MAX_BODY,
    HttpError,
    Request,
    Response,
    error_response,
    validation_response,
)
from controller.api.routes import NODE_HANDLERS, ROUTES, Api, EndpointReadiness, Route, SwitchStatus, SwitchVerify
from controller.api.server import Limits, ReadyWaits
from controller.service import ChangeFailed, Service
from controller.store.base import Conflict, StoreError
from topology.errors import ValidationError

log = logging.getLogger(__name__)
DRAIN_LIMIT = 1 << 20  # an oversized body up to this size is read and dropped, so the client sees the 413

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = [(route, _pattern(route.template)) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route, pattern in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
        if allowed:
            raise HttpError(405, f"{method} is not allowed on {path}", headers={"Allow": ", ".join(allowed)})
        raise HttpError(404, f"no such resource: {path}")


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


def make_app(
    service: Service,
    tokens: Tokens,
    *,
    switch_status: SwitchStatus | None = None,
    readiness: EndpointReadiness | None = None,
    verify: SwitchVerify | None = None,
    max_body: int = MAX_BODY,
    ready_waits: int = Limits.ready_waits,
    k8s: object | None = None,
) -> WsgiApp:
    """The API as a WSGI app; at most `ready_waits` readiness calls wait at once (see `ReadyWaits`)."""
    if readiness is not None:
        readiness = ReadyWaits(readiness, ready_waits)
    api = Api(service, switch_status=switch_status, readiness=readiness, verify=verify)
    api.k8s = k8s  # controller.k8s.Kubernetes: CNI ADDs name the pod, not the network
    router = Router(ROUTES)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        response = handle(api, router, tokens, environ, max_body=max_body)
        status, headers, payload = response.encode()
        start_response(status, headers)
        return [payload]

    return app


def handle(api: Api, router: Router, tokens: Tokens, environ: Environ, *, max_body: int) -> Response:
    request: Request | None = None
    try:
        request = parse_request(router, tokens, environ, max_body=max_body)
        if request.principal.node_only and request.handler not in NODE_HANDLERS:
            raise HttpError(
                403, f"{request.method} {request.path}: a node token manages only its own node and its endpoints"
            )
        return getattr(api, request.handler)(request)
    except HttpError as error:
        return error_response(error)
    except ValidationError as error:
        return validation_response(api.redact(error, request) if request else error)
    except Conflict as error:
        return error_response(HttpError(409, f"the store refused a conflicting write, try again: {error}"))
    except ChangeFailed as error:  # valid, but it could not be compiled: rolled back everywhere
        return error_response(HttpError(500, str(error)))
    except StoreError as error:
        log.error("store failure: %s", error)
        return error_response(HttpError(503, f"the store is unavailable: {error}"))
    except Exception:
        log.exception("%s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        return error_response(HttpError(500, "internal error; the controller log has the details"))


def parse_request(router: Router, tokens: Tokens, environ: Environ, *, max_body: int) -> Request:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = _decode_path(environ.get("PATH_INFO") or "/")
    route, params = router.match(method, path)
    principal = tokens.lookup(bearer(environ.get("HTTP_AUTHORIZATION")) or b"") if route.auth else None
    if route.auth and principal is None:
        raise HttpError(401, "missing or unknown bearer token", headers={"WWW-Authenticate": 'Bearer realm="tenet"'})
    query = dict(reversed(parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True)))  # first wins
    body = read_body(environ, max_body=max_body)
    return Request(method, path, route.handler, params, query, principal or Principal(), body)


def _decode_path(raw: str) -> str:
    """PATH_INFO is the URL-decoded bytes as latin-1 (PEP 3333); names are UTF-8."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HttpError(400, "the request path is not valid UTF-8") from None


def read_body(environ: Environ, *, max_body: int) -> bytes:
    text = (environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        return b""
    if not text.isdigit():
        raise HttpError(400, f"bad Content-Length {text[:40]!r}")
    length = int(text)
    if length > max_body:
        if length <= DRAIN_LIMIT:
            # Read and drop it: closing on unread data resets the connection before the client reads the 413.
            _drain(environ["wsgi.input"], length)
        raise HttpError(413, f"the request body is {length} bytes; the limit is {max_body}")
    body = environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise HttpError(400, f"the request body ended after {len(body)} of {length} bytes")
    return body


def _drain(stream: Any, length: int) -> None:
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)
