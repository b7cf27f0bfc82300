"""List and watch one Kubernetes resource, handing each change to a handler exactly once.

Follows the API's watch contract (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
- list, then watch from the list's `resourceVersion`, with `allowWatchBookmarks` so a quiet watch still moves
  the version on; each event (and bookmark) advances the version a reconnect resumes from;
- 410 Gone (the version was compacted away): relist and diff the listed state against what was applied:
  objects new or at another `resourceVersion` are applied, objects no longer listed are deleted; an object
  at the version already applied is not applied again, so no change is lost or applied twice; deletions are
  applied first (a deleted object may hold what a new one needs, a VNI or a subnet), and an object the
  handler refused is applied again by every relist until it is taken;
- the API server unreachable: retry with exponential backoff (`backoff_s` doubling up to `max_backoff_s`);
  nothing is applied meanwhile, so the model, the flows and the controller's own API keep serving;
- every `resync_s` seconds a full relist and diff, which applies deletions a watch could not deliver.

Objects are plain dicts as the API serves them (camelCase keys), keyed "NAMESPACE/NAME" or "NAME".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)
Object = dict[str, Any]
REQUEST_TIMEOUT_S = 10  # seconds to connect, and to wait for an answer beyond a watch's own timeout


class Handler(Protocol):
    def upsert(self, kind: str, obj: Object, old: Object | None) -> bool | None:
        """Apply a new or changed object; False when it was refused (the next relist retries it)."""

    def delete(self, kind: str, old: Object) -> None: ...

    def synced(self, kind: str) -> None: ...


def object_key(obj: Object) -> str:
    """ "NAMESPACE/NAME" for a namespaced object, "NAME" for a cluster-scoped one."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


class Informer:
    """One resource's list-and-watch loop in a thread.

    `list_call(**kwargs)`: a `kubernetes` client list function (e.g. `CoreV1Api.list_node`, or a
    `functools.partial` of `CustomObjectsApi.list_cluster_custom_object`). `handler`: told of every change
    (its exceptions are logged, never end the loop). `resync_s`: seconds between full relists;
    `backoff_s`/`max_backoff_s`: the first and the longest wait before reconnecting, in seconds.
    """

    def __init__(
        self,
        kind: str,
        list_call: Callable[..., Any],
        handler: Handler,
        *,
        resync_s: float = 300.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        watch_timeout_s: int = 60,
    ) -> None:
        self.kind = kind
        self.list_call = list_call
        self.handler = handler
        self.resync_s = resync_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.watch_timeout_s = watch_timeout_s
        self.known: dict[str, Object] = {}  # key -> the object as last applied
        self.refused: set[str] = set()  # keys whose last upsert the handler refused: a relist applies them again
        self.resource_version: str | None = None
        self.listed_at = 0.0  # wall-clock time (time.time()) the last list was asked for
        self.relists = 0  # full lists done (the first, after 410, and resyncs)
        self.failures = 0  # connection failures in a row (0 while connected)
        self.outages = 0  # connection failures in all
        self.stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None
        self._serializer = client.ApiClient()

    def start(self) -> Informer:
        """Run in a new thread (again after `stop()`: from the version and state it had)."""
        self.stopping = threading.Event()  # each run its own: a run still ending cannot see the next one's
        self._thread = threading.Thread(target=self.run, name=f"k8s-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        stopping = self.stopping
        next_resync = 0.0
        delay = self.backoff_s
        while not stopping.is_set():
            try:
                if self.resource_version is None or time.monotonic() >= next_resync:
                    self.relist()
                    next_resync = time.monotonic() + self.resync_s
                self._watch_once(max(1, min(self.watch_timeout_s, int(next_resync - time.monotonic()) + 1)), stopping)
                self.failures, delay = 0, self.backoff_s
            except ApiException as error:
                if error.status == 410:
                    log.info("%s: resourceVersion %s is gone (410); relisting", self.kind, self.resource_version)
                    self.resource_version = None
                    continue
                delay = self._failed(error, delay, stopping)
            except Exception as error:
                delay = self._failed(error, delay, stopping)

    def _failed(self, error: BaseException, delay: float, stopping: threading.Event) -> float:
        delay = delay if self.failures else self.backoff_s
        self.failures += 1
        self.outages += 1
        # The traceback once per outage: a down API server is retried for as long as it is down.
        first = self.failures == 1
        log.warning("%s: the API server failed (%s); retrying in %.1f s", self.kind, error, delay, exc_info=first)
        stopping.wait(delay)
        return min(delay * 2, self.max_backoff_s)

    def relist(self) -> None:
        """List everything and apply the difference to what was applied (see the module docstring)."""
        started = time.time()
        listed = self.list_call(_request_timeout=REQUEST_TIMEOUT_S)
        items = self._serializer.sanitize_for_serialization(listed)
        items = items if isinstance(items, dict) else {}
        seen: dict[str, Object] = {}
        for item in items.get("items") or []:
            seen[object_key(item)] = item
        for key in sorted(set(self.known) - set(seen)):  # deletions first: they may free what a new one needs
            self._remove(key)
        for key, obj in seen.items():
            self._apply(key, obj)
        self.resource_version = (items.get("metadata") or {}).get("resourceVersion")
        self.listed_at = started
        self.relists += 1
        self.failures = 0
        self._call(self.handler.synced, self.kind)

    def _watch_once(self, timeout_s: int, stopping: threading.Event) -> None:
        self._watch = current = watch.Watch()
        stream = current.stream(
            self.list_call,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_s,
            _request_timeout=(REQUEST_TIMEOUT_S, timeout_s + REQUEST_TIMEOUT_S),  # a silent server is a failure
        )
        for event in stream:
            if stopping.is_set():
                current.stop()
                break
            if event is None:  # a blank keep-alive line (the client yields None for it): not an event
                continue
            self.failures = 0  # the API server answers: the next failure backs off from the start
            raw = event.get("raw_object") or {}
            kind = event.get("type")
            version = (raw.get("metadata") or {}).get("resourceVersion")
            if kind == "ERROR":
                raise ApiException(status=raw.get("code"), reason=raw.get("message"))
            if kind in ("ADDED", "MODIFIED"):
                self._apply(object_key(raw), raw)
            elif kind == "DELETED":
                self._remove(object_key(raw))
            if version:
                self.resource_version = version

    def _apply(self, key: str, obj: Object) -> None:
        old = self.known.get(key)
        version = obj["metadata"].get("resourceVersion")
        if old is not None and old["metadata"].get("resourceVersion") == version and key not in self.refused:
            return  # applied already (a relist after 410 lists it again)
        self.known[key] = obj
        if self._call(self.handler.upsert, self.kind, obj, old) is False:
            self.refused.add(key)  # the next relist applies it again (what refused it may be gone then)
        else:
            self.refused.discard(key)

    def _remove(self, key: str) -> None:
        old = self.known.pop(key, None)
        self.refused.discard(key)
        if old is not None:
            self._call(self.handler.delete, self.kind, old)

    def _call(self, method: Callable[..., bool | None], *args: Any) -> bool | None:
        """The handler's answer; False when it raised (logged: a change the model refuses must not end the
        watch)."""
        try:
            return method(*args)
        except Exception:
            log.exception("%s: handling a change failed", self.kind)
            return False
