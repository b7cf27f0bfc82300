"""Requests, `Status` errors and JSON answers of the stand-in API server (WSGI level)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

REASONS = {
    400: ("Bad Request", "BadRequest"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "Forbidden"),
    404: ("Not Found", "NotFound"),
    405: ("Method Not Allowed", "MethodNotAllowed"),
    406: ("Not Acceptable", "NotAcceptable"),
    409: ("Conflict", "Conflict"),
    410: ("Gone", "Expired"),
    415: ("Unsupported Media Type", "UnsupportedMediaType"),
    422: ("Unprocessable Entity", "Invalid"),
    500: ("Internal Server Error", "InternalError"),
    503: ("Service Unavailable", "ServiceUnavailable"),
    504: ("Gateway Timeout", "Timeout"),
    413: ("Request Entity Too Large", "RequestEntityTooLarge"),
}
PHRASES = {200: "OK", 201: "Created", 202: "Accepted"}
MAX_BODY = 3 * 1024 * 1024  # bytes, the Kubernetes API's request size limit


class ApiError(Exception):
    """An answer as a `Status` object: HTTP `code`, `reason` (NotFound, AlreadyExists, Conflict, Invalid...),
    message, and the `details` Kubernetes gives (name, group, kind)."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, ("", "Unknown"))[1]
        self.details = {k: v for k, v in details.items() if v not in (None, "")}

    def status(self) -> dict[str, Any]:
        """The `Status` object (meta.k8s.io, apiVersion v1)."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


@dataclass
class Request:
    """One HTTP request: method, path split into segments, query (last value of each name), headers we
    read, and the raw body."""

    method: str
    path: str
    query: dict[str, str]
    accept: str
    content_type: str
    authorization: str
    body: bytes = b""
    segments: list[str] = field(default_factory=list)

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> Request:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_BODY:
            raise ApiError(413, f"request entity too large: limit is {MAX_BODY}", "RequestEntityTooLarge")
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "/")
        query = {name: values[-1] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        return cls(
            method=environ["REQUEST_METHOD"].upper(),
            path=path,
            query=query,
            accept=environ.get("HTTP_ACCEPT", ""),
            content_type=environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower(),
            authorization=environ.get("HTTP_AUTHORIZATION", ""),
            body=body,
            segments=[part for part in path.split("/") if part],
        )

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; 400 when it is not one, 415 for another media type (protobuf, which
        kubectl's generator commands such as `create namespace` send, is not served)."""
        if self.content_type not in ("", "application/json", "*/*"):
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json (not {self.content_type})",
            )
        try:
            value = json.loads(self.body or b"null")
        except ValueError as error:
            raise ApiError(400, f"the request body is not JSON: {error}") from error
        if not isinstance(value, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")

    @property
    def dry_run(self) -> bool:
        """dryRun=All (the only value Kubernetes accepts); 400 for any other value."""
        value = self.query.get("dryRun")
        if value is None:
            return False
        if value != "All":
            raise ApiError(400, f'dryRun: Unsupported value: "{value}": supported values: "All"')
        return True

    @property
    def strict(self) -> bool:
        """fieldValidation=Strict: unknown fields are an error (Ignore and Warn, the default, drop them)."""
        value = self.query.get("fieldValidation", "")
        if value not in ("", "Ignore", "Warn", "Strict"):
            raise ApiError(
                400, f'fieldValidation: Unsupported value: "{value}": supported values: Ignore, Warn, Strict'
            )
        return value == "Strict"


def phrase(code: int) -> str:
    return PHRASES.get(code) or REASONS.get(code, ("Unknown",))[0]


def encode(body: Any) -> bytes:
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()
