"""A small client of the northbound API over HTTP or HTTPS, for tenetctl and agents.

Requests go through a urllib3 connection pool: a connection is kept open and used again by the next request
(HTTP/1.1 keep-alive), so an agent's calls on the ADD path (create the endpoint, wait for its flows) pay for
no TCP connect or TLS handshake of their own. A pooled connection the controller closed in the meantime is
noticed before it is used, and an idempotent request (GET, PUT, DELETE) that finds it dropped mid-way is
sent once more on a new one; a POST is not (it may have been done).
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import LocationValueError, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as TransportTimeout

DEFAULT_SERVER = "http://127.0.0.1:8780"
POOL_SIZE = 16  # connections kept open to the controller; more requests at once open (and close) more


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
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=POOL_SIZE,
            ssl_context=self.context,
            retries=_Retry(
                total=1,
                connect=0,
                read=1,
                redirect=0,
                status=0,
                other=0,
                raise_on_redirect=False,
                respect_retry_after_header=False,  # a 503's Retry-After is `request`'s to honour, for GETs only
            ),
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )

    def close(self) -> None:
        """Close the pooled connections (a later request opens new ones)."""
        self._pool.clear()

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
                return self._send(method, url, data, headers)
            except _RetryAfter as busy:
                if time.monotonic() + busy.seconds >= deadline:
                    raise busy.error from None
                time.sleep(busy.seconds)

    def _send(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Any:
        try:
            answer = self._pool.request(method, url, body=data, headers=headers, redirect=False)
        except LocationValueError as error:  # a malformed server URL
            raise ClientError(f"bad controller URL {self.server!r}: {error}") from None
        except (TransportError, OSError) as error:
            raise ClientError(f"cannot reach the controller at {self.server}: {_reason(error)}") from None
        if answer.status >= 400:
            api_error = _api_error(answer.status, answer.reason, answer.data)
            retry = _retry_after(answer.status, answer.headers.get("Retry-After")) if method == "GET" else None
            if retry is not None:
                raise _RetryAfter(retry, api_error)
            raise api_error
        return _decode(answer.data, answer.status)


class _Retry(urllib3.Retry):
    """urllib3's Retry, except that a read that timed out is never retried: the controller was there and
    took too long, and asking again would double the wait."""

    def increment(self, *args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("error")
        if isinstance(error, ReadTimeoutError):
            raise error  # `_send` reports it as "timed out"
        return super().increment(*args, **kwargs)


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


def _retry_after(status: int, text: str | None) -> float | None:
    """Seconds to wait before asking again, when a 503 says so (delta-seconds only, capped at 10)."""
    if status != 503 or text is None or not text.strip().isdigit():
        return None
    return min(float(text), 10.0)


def _reason(error: BaseException) -> str:
    """What went wrong underneath urllib3's wrapping: "timed out", the OS's words ("Connection refused"), or
    the TLS library's."""
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    seen: BaseException | None = error
    while seen is not None:  # NewConnectionError and friends are raised from the OSError underneath
        if isinstance(seen, TimeoutError) or (isinstance(seen, TransportTimeout) and not _refused(seen)):
            return "timed out"
        if isinstance(seen, ssl.SSLError):
            return str(seen)
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, TransportError) and len(error.args) > 1:  # ProtocolError("Connection aborted.", cause)
        return str(error.args[1]) or str(error)
    return str(error)


def _refused(error: BaseException) -> bool:
    """urllib3's NewConnectionError is a ConnectTimeoutError by descent, though most are refusals."""
    return isinstance(error, NewConnectionError) and not isinstance(error.__cause__, TimeoutError)


def _decode(raw: bytes, status: int) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ClientError(f"the controller answered {status} with a body that is not JSON", status=status) from None


def _api_error(status: int, reason: str | None, body: bytes) -> ClientError:
    """The API's `{"error": {"message", "field"}}`, or the bare HTTP status when the body is not that."""
    try:
        detail = json.loads(body or b"{}").get("error") or {}
        message, field = detail.get("message"), detail.get("field")
    except (ValueError, AttributeError):
        message, field = None, None
    if not isinstance(message, str) or not message:
        message = f"HTTP {status} {reason or ''}".rstrip()
    return ClientError(message, status=status, field=field if isinstance(field, str) else None)
