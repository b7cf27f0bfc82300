"""Objects in etcd through its JSON gateway (etcd3gw): etcd's revision is the Kubernetes `resourceVersion`.

Keys are `{prefix}/{group or "core"}/{plural}/{namespace}/{name}` (cluster-scoped: no namespace segment),
values the object's JSON without `metadata.resourceVersion`, which is the key's `mod_revision` on every read.
A write that names a `resourceVersion` is a compare-and-swap on `mod_revision` (409 when it lost); a read or
watch at a revision etcd compacted away raises `Expired` (410 Gone).
"""

from __future__ import annotations

import base64
import json
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw.exceptions import Etcd3Exception


class Expired(Exception):
    """The revision asked for is older than the oldest etcd keeps (compacted): Kubernetes' 410 Gone."""


class Conflict(Exception):
    """The key changed (or appeared, or went) since the revision the caller wrote against."""


def _b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def _unb64(data: str) -> str:
    return base64.b64decode(data).decode()


def _range_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


@dataclass(frozen=True)
class Entry:
    """One stored object: its key, body (without resourceVersion) and `mod_revision`."""

    key: str
    obj: dict[str, Any]
    revision: int


@dataclass(frozen=True)
class Change:
    """One etcd event under a watched prefix: `kind` is "PUT" or "DELETE"; `prev` the object before it (None
    on a create), `obj` after it (None on a delete); `revision` the event's revision."""

    kind: str
    key: str
    obj: dict[str, Any] | None
    prev: dict[str, Any] | None
    revision: int


class EtcdStore:
    """Objects under `prefix` of the etcd at `url` (e.g. "http://127.0.0.1:2379"); thread-safe.

    The constructor raises ValueError for a URL that is not http(s)://HOST[:PORT]; the methods raise
    `Expired`, `Conflict`, and etcd3gw's `Etcd3Exception` when etcd cannot be reached."""

    def __init__(self, url: str, prefix: str = "/tenet-apiserver") -> None:
        parts = urlsplit(url)
        try:
            port = parts.port or 2379
        except ValueError:
            port = 0
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            raise ValueError(f"etcd URL: {url!r} is not http(s)://HOST[:PORT]")
        self.client = etcd3gw.client(host=parts.hostname, port=port, protocol=parts.scheme)
        self.prefix = prefix.rstrip("/")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self.client.post(self.client.get_url(path), json=body))
        except Etcd3Exception as error:
            if "compacted" in (error.detail_text or ""):
                raise Expired(str(error)) from error
            raise

    def revision(self) -> int:
        """The store's current revision (etcd's header revision)."""
        reply = self._post("/kv/range", {"key": _b64(self.prefix + "/"), "count_only": True})
        return int(reply["header"]["revision"])

    def get(self, key: str) -> Entry | None:
        reply = self._post("/kv/range", {"key": _b64(key)})
        for kv in reply.get("kvs", []):
            return Entry(key, json.loads(_unb64(kv["value"])), int(kv["mod_revision"]))
        return None

    def list(self, prefix: str, revision: int | None = None) -> tuple[list[Entry], int]:
        """Every entry under `prefix` (at `revision`, or the latest) and the revision of that snapshot."""
        body: dict[str, Any] = {"key": _b64(prefix), "range_end": _range_end(prefix)}
        if revision:
            body["revision"] = revision
        reply = self._post("/kv/range", body)
        entries = [
            Entry(_unb64(kv["key"]), json.loads(_unb64(kv["value"])), int(kv["mod_revision"]))
            for kv in reply.get("kvs", [])
        ]
        return entries, revision or int(reply["header"]["revision"])

    def put(self, key: str, obj: dict[str, Any], expect: int | None) -> int:
        """Write `obj` at `key` if its `mod_revision` is `expect` (0: the key must not exist; None: any).
        Returns the new revision; raises Conflict when the comparison fails."""
        compare = []
        if expect is not None:
            compare = [{"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": expect}]
        value = json.dumps(obj, separators=(",", ":"))
        txn = {"compare": compare, "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}]}
        reply = self._post("/kv/txn", txn)
        if not reply.get("succeeded"):
            raise Conflict(key)
        return int(reply["header"]["revision"])

    def delete(self, key: str, expect: int) -> int:
        """Delete `key` if its `mod_revision` is still `expect`; returns the deletion's revision."""
        compare = [{"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": expect}]
        reply = self._post("/kv/txn", {"compare": compare, "success": [{"request_delete_range": {"key": _b64(key)}}]})
        if not reply.get("succeeded"):
            raise Conflict(key)
        return int(reply["header"]["revision"])

    def compact(self, revision: int) -> None:
        """Drop the history before `revision` (etcd compaction); later reads or watches before it expire."""
        self._post("/kv/compaction", {"revision": revision, "physical": True})

    def watch(self, prefix: str, after: int) -> Watch:
        """Changes under `prefix` with revisions above `after`; raises Expired (from `Watch.next`) when
        `after` is older than what etcd keeps."""
        return Watch(self.client.get_url("/watch"), prefix, after)


class Watch:
    """An etcd watch read by a thread into a queue; `next(timeout)` gives a Change or None on timeout."""

    def __init__(self, url: str, prefix: str, after: int) -> None:
        self._queue: queue.Queue[Change | BaseException] = queue.Queue()
        self._session = requests.Session()
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _range_end(prefix),
                "start_revision": after + 1,
                "prev_kv": True,
            }
        }
        self._response = self._session.post(url, json=request, stream=True, timeout=(5, None))
        self._thread = threading.Thread(target=self._pump, name=f"watch {prefix}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for line in self._response.iter_lines():
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                if int(result.get("compact_revision", 0) or 0):
                    raise Expired(f"revision compacted up to {result['compact_revision']}")
                if result.get("canceled"):
                    raise Expired(result.get("cancel_reason", "watch canceled"))
                for event in result.get("events", []):
                    kv = event["kv"]
                    prev = event.get("prev_kv")
                    self._queue.put(
                        Change(
                            event.get("type", "PUT"),
                            _unb64(kv["key"]),
                            json.loads(_unb64(kv["value"])) if kv.get("value") else None,
                            json.loads(_unb64(prev["value"])) if prev and prev.get("value") else None,
                            int(kv["mod_revision"]),
                        )
                    )
        except BaseException as error:  # the stream's end or failure ends the consumer too
            self._queue.put(error)
        else:
            self._queue.put(EOFError("etcd closed the watch"))

    def next(self, timeout: float) -> Change | None:
        """The next Change, None after `timeout` seconds without one; raises Expired or the stream's error."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return item

    def __iter__(self) -> Iterator[Change]:  # pragma: no cover - convenience
        while True:
            change = self.next(3600)
            if change is not None:
                yield change

    def close(self) -> None:
        """End the watch: shut the connection's socket down (closing the response alone waits for the
        reading thread, which waits for etcd), then release it."""
        try:
            sock = socket.fromfd(self._response.raw.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        except (OSError, ValueError, AttributeError):
            pass  # already closed
        self._thread.join(timeout=2)
        self._response.close()
        self._session.close()
