"""A small client of the northbound API (standard library only), for tenetctl and agents."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_SERVER = "http://127.0.0.1:8780"


class ClientError(Exception):
    """The request failed: `status` is the HTTP status (None when no answer came), the message the API's."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def path(*parts: str) -> str:
    """An API path from segments, each escaped: `path("v1", "tenants", name)`."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


class Client:
    def __init__(self, server: str = DEFAULT_SERVER, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, url_path: str, **query: str | None) -> Any:
        return self.request("GET", url_path, query=query)

    def post(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", url_path, body=body)

    def put(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("PUT", url_path, body=body)

    def delete(self, url_path: str, **query: str | None) -> Any:
        return self.request("DELETE", url_path, query=query)

    def request(
        self,
        method: str,
        url_path: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str | None] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON answer (None for an empty one) or raise ClientError."""
        url = self.server + url_path
        wanted = {k: v for k, v in (query or {}).items() if v is not None}
        if wanted:
            url += "?" + urlencode(wanted)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return _decode(answer.read(), answer.status)
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(f"cannot reach the controller at {self.server}: {_reason(reason)}") from None
        except ValueError as error:  # a malformed server URL
            raise ClientError(f"bad controller URL {self.server!r}: {error}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, socket.timeout | TimeoutError):
        return "timed out"
    return getattr(reason, "strerror", None) or str(reason)


def _decode(raw: bytes, status: int) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ClientError(f"the controller answered {status} with a body that is not JSON", status=status) from None


def _api_error(error: urllib.error.HTTPError) -> ClientError:
    """The API's `{"error": {"message", "field"}}`, or the bare HTTP status when the body is not that."""
    try:
        detail = json.loads(error.read() or b"{}").get("error") or {}
        message, field = detail.get("message"), detail.get("field")
    except (ValueError, AttributeError, OSError):
        message, field = None, None
    if not isinstance(message, str) or not message:
        message = f"HTTP {error.code} {error.reason}"
    return ClientError(message, status=error.code, field=field if isinstance(field, str) else None)
