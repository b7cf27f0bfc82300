"""The cluster store: etcd v3, spoken through its HTTP/JSON gateway with the `etcd3gw` client.

Every store key lives in etcd under `<prefix>/` (the prefix is normalized to one trailing slash, so the
stores of "/tenet" and "/tenet2" cannot see each other); the store key is appended verbatim, so the key
"/networks/7" is the etcd key "/tenet//networks/7". Values are JSON text.

Revisions are etcd's own: a commit is one etcd transaction and returns the header revision, a record's
`mod_revision` is etcd's. They are cluster-wide, so they count every write to the etcd cluster, not only
this prefix's; and a fresh etcd starts at revision 1, not 0.

Semantics shared with the SQLite store live in `controller.store.sqlite.prepare_commit`; in particular a
commit that changes nothing does not create a revision (etcd's own behaviour). Limits of etcd apply: a
commit may hold at most `--max-txn-ops` operations (128 by default) and 1.5 MiB. When `commit` fails with
a StoreError because etcd became unreachable mid-request, the transaction may or may not have been applied.
"""

from __future__ import annotations

import base64
import json
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from controller.store.base import Conflict, Operation, Record, StoreError
from controller.store.sqlite import check_key, conflict_message, decode_value, prepare_commit

with warnings.catch_warnings():
    # futurist, an etcd3gw dependency, imports eventlet when it is installed (os-ken needs it), and eventlet
    # warns on import that it is deprecated: noise unrelated to the store.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)
    import etcd3gw
    from etcd3gw import exceptions as etcd_exceptions

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/tenet"
DEFAULT_TIMEOUT_SECONDS = 10.0

# Enum values of etcd's RangeRequest, as the JSON gateway takes them.
_SORT_ASCEND = 1
_SORT_BY_KEY = 0

T = TypeVar("T")


def parse_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of `etcd://host[:port]` or `http://host[:port]`; StoreError for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as error:
        raise StoreError(f"bad etcd URL {url!r}: {error}") from error
    if parts.scheme not in ("etcd", "http"):
        raise StoreError(f"bad etcd URL {url!r}: expected etcd://host:port or http://host:port")
    if not parts.hostname:
        raise StoreError(f"bad etcd URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise StoreError(f"bad etcd URL {url!r}: only scheme, host and port are allowed")
    return parts.hostname, port


def normalize_prefix(prefix: str) -> str:
    """'/tenet', 'tenet/' and '/tenet/' all become '/tenet/'; '' and '/' become '/'."""
    inner = prefix.strip("/")
    return f"/{inner}/" if inner else "/"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range_end(start: bytes) -> bytes:
    """The first key after every key starting with `start` (etcd's prefix range end)."""
    trimmed = start.rstrip(b"\xff")
    if not trimmed:
        return b"\x00"  # etcd: every key >= start
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def _detail(error: etcd_exceptions.Etcd3Exception) -> str:
    # etcd3gw puts the response body (or the requests error) in `detail_text`; str(error) is often empty.
    text = error.detail_text or str(error) or type(error).__name__
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and isinstance(body.get("message") or body.get("error"), str):
        return str(body.get("message") or body.get("error"))
    return text


class EtcdStore:
    """The `Store` protocol on etcd; safe to share between threads (each thread gets its own HTTP session)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._host, self._port = parse_endpoint(url)
        self.url = url
        self.prefix = normalize_prefix(prefix)
        self._root = self.prefix.encode("utf-8")
        self._timeout = timeout
        self._api_path: str | None = None
        self._local = threading.local()
        self._clients: weakref.WeakSet[etcd3gw.Etcd3Client] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        # Fail at open, not at the first write: status() also discovers the API path (/v3/ on etcd >= 3.4).
        try:
            self._call("status", lambda client: client.status())
        except StoreError:
            self.close()  # the probe's HTTP session
            raise
        self._api_path = self._client().api_path

    def _client(self) -> etcd3gw.Etcd3Client:
        client: etcd3gw.Etcd3Client | None = getattr(self._local, "client", None)
        with self._lock:
            if self._closed:
                raise StoreError(f"etcd store at {self.url} is closed")
            if client is None:
                client = etcd3gw.client(
                    host=self._host, port=self._port, timeout=self._timeout, api_path=self._api_path
                )
                self._clients.add(client)
                self._local.client = client
        return client

    def _call(self, what: str, request: Callable[[etcd3gw.Etcd3Client], T]) -> T:
        """Run one request; every failure becomes a StoreError that names etcd's URL."""
        client = self._client()
        try:
            return request(client)
        except (etcd_exceptions.ConnectionFailedError, etcd_exceptions.ConnectionTimeoutError) as error:
            raise StoreError(f"etcd at {self.url} is unreachable: {_detail(error)}") from error
        except etcd_exceptions.Etcd3Exception as error:
            detail = _detail(error)
            if "too many operations in txn request" in detail:
                detail += " (etcd's --max-txn-ops, 128 by default)"
            raise StoreError(f"etcd at {self.url} refused the {what}: {detail}") from error
        except ValueError as error:  # a 200 answer that is not JSON (requests' JSONDecodeError): not etcd
            raise StoreError(f"etcd at {self.url} answered the {what} with something unexpected: {error}") from error
        except requests.RequestException as error:  # what etcd3gw does not wrap, e.g. a truncated response
            raise StoreError(f"etcd at {self.url} is unreachable: {error}") from error

    def _post(self, what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        # etcd3gw's get() drops the response header (we need its revision) and encodes str keys as latin-1,
        # so ranges go through its plain post() with keys we encode as UTF-8 ourselves.
        def request(client: etcd3gw.Etcd3Client) -> dict[str, Any]:
            answer: dict[str, Any] = client.post(client.get_url(path), json=payload)
            return answer

        return self._call(what, request)

    def _etcd_key(self, key: str) -> bytes:
        return self._root + key.encode("utf-8")

    def _record(self, kv: dict[str, Any]) -> Record:
        key = base64.b64decode(kv["key"])[len(self._root) :].decode("utf-8")
        # The gateway omits empty fields; a stored value is never empty, but be exact about it.
        return Record(key, decode_value(key, base64.b64decode(kv.get("value", ""))), int(kv["mod_revision"]))

    def get(self, key: str) -> Record | None:
        answer = self._post("read", "/kv/range", {"key": _b64(self._etcd_key(check_key(key)))})
        kvs = answer.get("kvs") or []
        return self._record(kvs[0]) if kvs else None

    def list(self, prefix: str) -> list[Record]:
        if not isinstance(prefix, str):
            raise TypeError(f"a key prefix is a str, not {type(prefix).__name__}")
        start = self._etcd_key(prefix)
        payload = {
            "key": _b64(start),
            "range_end": _b64(_range_end(start)),
            "sort_order": _SORT_ASCEND,
            "sort_target": _SORT_BY_KEY,
        }
        answer = self._post("read", "/kv/range", payload)
        return [self._record(kv) for kv in answer.get("kvs") or []]

    def revision(self) -> int:
        # Any read answers with the current revision in its header; count_only keeps it small.
        answer = self._post("read", "/kv/range", {"key": _b64(self._root), "count_only": True})
        return int(answer["header"]["revision"])

    def commit(self, operations: Sequence[Operation], *, expect: Mapping[str, int] | None = None) -> int:
        encoded, expected = prepare_commit(operations, expect)
        compare: list[dict[str, Any]] = []
        for key, revision in expected.items():
            etcd_key = _b64(self._etcd_key(key))
            if revision == 0:  # must not exist: an absent (or deleted) key has version 0
                compare.append({"key": etcd_key, "result": "EQUAL", "target": "VERSION", "version": 0})
            else:
                compare.append({"key": etcd_key, "result": "EQUAL", "target": "MOD", "mod_revision": revision})
        success: list[dict[str, Any]] = []
        for key, text in encoded:
            etcd_key = _b64(self._etcd_key(key))
            if text is None:
                success.append({"request_delete_range": {"key": etcd_key}})
            else:
                success.append({"request_put": {"key": etcd_key, "value": _b64(text.encode("utf-8"))}})
        # On failure read the expected keys in the same transaction, so Conflict can say what they were.
        failure = [{"request_range": {"key": _b64(self._etcd_key(key))}} for key in expected]
        txn = {"compare": compare, "success": success, "failure": failure}
        answer = self._call("commit", lambda client: client.transaction(txn))
        # proto3 JSON leaves out false booleans: a failed compare has no "succeeded" at all.
        if answer.get("succeeded"):
            return int(answer["header"]["revision"])
        mismatches: dict[str, tuple[int, int]] = {}
        for (key, want), response in zip(expected.items(), answer.get("responses") or [], strict=True):
            kvs = response.get("response_range", {}).get("kvs") or []
            actual = int(kvs[0]["mod_revision"]) if kvs else 0
            if actual != want:
                mismatches[key] = (want, actual)
        raise Conflict(conflict_message(mismatches))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            client.session.close()

    def __repr__(self) -> str:
        return f"EtcdStore({self.url!r}, prefix={self.prefix!r})"
