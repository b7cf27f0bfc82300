"""The small HTTP layer under the API: requests, responses, errors, and typed reading of JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from controller.api.auth import Principal
from topology.errors import ValidationError

MAX_BODY = 64 * 1024  # bytes; the largest real body is a few hundred
JSON_TYPE = "application/json"

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """An answer other than success: status, message and, where one field is to blame, its path."""

    def __init__(self, status: int, message: str, *, field: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def not_found(message: str) -> HttpError:
    return HttpError(404, message)


def forbidden(what: str) -> HttpError:
    return HttpError(403, f"{what} needs the cluster-admin token")


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[str, list[tuple[str, str]], bytes]:
        # default=str: a switch status from the OpenFlow app may hold values JSON has no type for.
        payload = b"" if self.body is None else (json.dumps(self.body, indent=1, default=str) + "\n").encode()
        headers = list(self.headers.items())
        if self.body is not None:
            headers.append(("Content-Type", JSON_TYPE))
        headers.append(("Content-Length", str(len(payload))))
        return f"{self.status} {REASONS.get(self.status, 'Unknown')}", headers, payload


def error_response(error: HttpError) -> Response:
    return Response(error.status, {"error": {"message": error.message, "field": error.field}}, error.headers)


def validation_response(error: ValidationError) -> Response:
    return Response(409 if error.conflict else 400, {"error": {"message": str(error), "field": error.path}})


@dataclass
class Request:
    method: str
    path: str
    handler: str  # the `Api` method that answers it
    params: dict[str, str]  # from the path template
    query: dict[str, str]
    principal: Principal
    raw_body: bytes = b""

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; anything else is the client's error (400)."""
        if not self.raw_body.strip():
            raise HttpError(400, "the request body is empty; want a JSON object")
        try:
            value = json.loads(self.raw_body)
        except (ValueError, RecursionError) as error:
            raise HttpError(400, f"the request body is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise HttpError(400, f"the request body must be a JSON object, not {_json_kind(value)}")
        return value


class Body:
    """Typed access to a JSON object body; every mistake is a ValidationError naming `path.field`."""

    def __init__(self, data: dict[str, Any], path: str, *, allowed: set[str]) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValidationError(f"{path}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
        self.data = data
        self.path = path

    @overload
    def text(self, name: str, *, required: Literal[True] = ...) -> str: ...
    @overload
    def text(self, name: str, *, required: bool) -> str | None: ...
    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self._typed(name, str, "a string", required=required)
        if value is not None and not _encodable(value):  # JSON allows lone surrogates ("\ud800"); stores do not
            raise ValidationError(f"{self.path}.{name}", "is not valid Unicode text")
        return value

    @overload
    def integer(self, name: str, *, required: Literal[True] = ...) -> int: ...
    @overload
    def integer(self, name: str, *, required: bool) -> int | None: ...
    def integer(self, name: str, *, required: bool = True) -> int | None:
        value = self._typed(name, int, "an integer", required=required)
        if isinstance(value, bool):
            raise ValidationError(f"{self.path}.{name}", f"want an integer, got {json.dumps(value)}")
        return value

    @overload
    def boolean(self, name: str, *, required: Literal[True] = ...) -> bool: ...
    @overload
    def boolean(self, name: str, *, required: bool) -> bool | None: ...
    def boolean(self, name: str, *, required: bool = True) -> bool | None:
        return self._typed(name, bool, "true or false", required=required)

    def _typed(self, name: str, kind: type, what: str, *, required: bool) -> Any:
        value = self.data.get(name)
        if value is None:
            if required:
                problem = f"is null; want {what}" if name in self.data else "is required"
                raise ValidationError(f"{self.path}.{name}", problem)
            return None
        if not isinstance(value, kind):
            raise ValidationError(f"{self.path}.{name}", f"want {what}, got {json.dumps(value)[:60]}")
        return value


def _json_kind(value: object) -> str:
    """What JSON calls the type of a decoded value: "an array", "a string", "null"..."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(type(value), "a value")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
