"""List and watch (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).

A watch is a stream of JSON lines `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`:
- without `resourceVersion` (or with "0") it starts with an ADDED event for every object that exists, then
  the changes after that snapshot; with one, the changes after it;
- an object that stops (starts) matching the selectors comes as DELETED (ADDED), as Kubernetes does;
- a `resourceVersion` older than etcd's compaction gives an ERROR event whose object is a Status with code
  410 (reason Expired), and the stream ends: the client relists;
- `sendInitialEvents=true` (watch-list) starts with the ADDED events of the current state whatever the
  `resourceVersion`, then, with bookmarks allowed, a BOOKMARK annotated `k8s.io/initial-events-end: "true"`;
- with `allowWatchBookmarks=true` a BOOKMARK carries the newest revision seen every `bookmark_interval`
  seconds (Kubernetes sends them about once a minute; the interval is the server's setting);
- `timeoutSeconds` ends the stream; so does stopping the server. While nothing happens a bare newline is
  written every few seconds (clients skip blank lines) so a watch whose client left ends promptly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lab.apiserver.http import ApiError, encode
from lab.apiserver.resources import Resource
from lab.apiserver.store import Change, EtcdStore, Expired

Matcher = Callable[[dict[str, Any]], bool]
HEARTBEAT = 5.0  # seconds of silence after which a newline goes out
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_TIMEOUT = 1800  # seconds, the lower end of kube-apiserver's randomised watch timeout


def parse_version(value: str | None) -> int:
    """A resourceVersion query parameter as an int; 400 naming it when it is not a number."""
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f'resourceVersion: Invalid value: "{value}": must be a number') from None


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return encode({"type": kind, "object": obj})


def stream(
    store: EtcdStore,
    resource: Resource,
    prefix: str,
    matches: Matcher,
    query: dict[str, str],
    initial: Callable[[], tuple[list[dict[str, Any]], int]],
    stopping: threading.Event,
    bookmark_interval: float,
    render: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
) -> Iterator[bytes]:
    """The body of a watch response, as a generator of JSON lines (see the module's docstring); `render`
    turns each object into what the event carries (a Table for `kubectl get -w`)."""
    version = parse_version(query.get("resourceVersion"))
    timeout = float(query.get("timeoutSeconds") or DEFAULT_TIMEOUT)
    bookmarks = query.get("allowWatchBookmarks", "").lower() == "true"
    deadline = time.monotonic() + timeout
    first: list[bytes] = []
    send_initial = query.get("sendInitialEvents", "").lower() == "true"
    if version == 0 or send_initial:
        objects, version = initial()
        first = [event("ADDED", render(obj)) for obj in objects]
        if send_initial and bookmarks:
            first.append(event("BOOKMARK", _bookmark(resource, version, {INITIAL_EVENTS_END: "true"})))
    return _run(
        store, resource, prefix, matches, version, first, deadline, bookmarks, stopping, bookmark_interval, render
    )


def _bookmark(resource: Resource, version: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(version)}
    if annotations:
        meta["annotations"] = annotations
    return {"kind": resource.kind, "apiVersion": resource.group_version, "metadata": meta}


def _present(obj: dict[str, Any], revision: int) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = dict(obj.get("metadata", {}), resourceVersion=str(revision))
    return out


def translate(change: Change, matches: Matcher) -> tuple[str, dict[str, Any]] | None:
    """The watch event of an etcd change, under selectors; None when the object matched neither before nor
    after."""
    old = change.prev is not None and matches(change.prev)
    if change.kind == "DELETE" or change.obj is None:
        return ("DELETED", _present(change.prev, change.revision)) if old and change.prev else None
    new = matches(change.obj)
    obj = _present(change.obj, change.revision)
    if new and old:
        return "MODIFIED", obj
    if new:
        return "ADDED", obj
    if old:
        return "DELETED", obj
    return None


def _run(
    store: EtcdStore,
    resource: Resource,
    prefix: str,
    matches: Matcher,
    version: int,
    first: list[bytes],
    deadline: float,
    bookmarks: bool,
    stopping: threading.Event,
    bookmark_interval: float,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> Iterator[bytes]:
    yield from first
    try:
        watch = store.watch(prefix, version)
    except Expired as error:
        yield event("ERROR", ApiError(410, f"too old resource version: {version} ({error})").status())
        return
    last = version
    next_bookmark = time.monotonic() + bookmark_interval
    last_write = time.monotonic()
    try:
        while not stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + bookmark_interval
                last_write = now
                yield event("BOOKMARK", _bookmark(resource, last))
            if now - last_write >= HEARTBEAT:
                last_write = now
                yield b"\n"
            try:
                change = watch.next(timeout=min(0.2, max(0.0, deadline - now)))
            except Expired as error:
                yield event("ERROR", ApiError(410, f"too old resource version: {version} ({error})").status())
                return
            except (EOFError, OSError) as error:
                yield event("ERROR", ApiError(500, f"the store's watch ended: {error}").status())
                return
            if change is None:
                continue
            last = change.revision
            found = translate(change, matches)
            if found is not None:
                last_write = time.monotonic()
                yield event(found[0], render(found[1]))
    finally:
        watch.close()
