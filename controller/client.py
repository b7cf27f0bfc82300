"""A small client of the northbound API over HTTP or HTTPS (standard library only), for tenetctl and agents."""

from __future__ import annotations

import json
import socket
import ssl
import time
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
    """Requests to the API at `server` (http:// or https://), as the holder of `token`.

    For https, `ca_file` is the PEM CA that signed the controller's certificate (default: the system's CAs);
    the certificate and the host name are always verified. `cert_file`/`key_file` are this client's PEM
    certificate and key, for a controller that wants mutual TLS. `timeout` is in seconds. A GET answered
    503 with `Retry-After` (every readiness wait slot taken) is asked again after that many seconds, while
    `timeout` lasts. Raises ClientError when a TLS file is unusable.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = tls_context(ca_file, cert_file, key_file) if self.server.startswith("https:") else None

    def get(self, url_path: str, **query: str | None) -> Any:
        return self.request("GET", url_path, query=query)

    def post(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", url_path, body=body)

    def put(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("PUT", url_path, body=body)

    def patch(self, url_path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", url_path, body=body)

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
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._send(urllib.request.Request(url, data=data, headers=headers, method=method))
            except _RetryAfter as busy:
                if time.monotonic() + busy.seconds >= deadline:
                    raise busy.error from None
                time.sleep(busy.seconds)

    def _send(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as answer:
                return _decode(answer.read(), answer.status)
        except urllib.error.HTTPError as error:
            retry = _retry_after(error) if request.get_method() == "GET" else None
            api_error = _api_error(error)
            if retry is not None:
                raise _RetryAfter(retry, api_error) from None
            raise api_error from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(f"cannot reach the controller at {self.server}: {_reason(reason)}") from None
        except ValueError as error:  # a malformed server URL
            raise ClientError(f"bad controller URL {self.server!r}: {error}") from None


def tls_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """A client context verifying the server against `ca_file` (None: the system's CAs), with this client's
    certificate when `cert_file` is given (`key_file`: its key, if not in the same file)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ClientError(f"CA file {ca_file}: {getattr(error, 'strerror', None) or error}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as error:
            raise ClientError(f"client certificate {cert_file}: {getattr(error, 'strerror', None) or error}") from None
    return context


class _RetryAfter(Exception):
    def __init__(self, seconds: float, error: ClientError) -> None:
        super().__init__(str(error))
        self.seconds, self.error = seconds, error


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    """Seconds to wait before asking again, when a 503 says so (delta-seconds only, capped at 10)."""
    text = error.headers.get("Retry-After") if error.code == 503 and error.headers else None
    if text is None or not text.strip().isdigit():
        return None
    return min(float(text), 10.0)


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
