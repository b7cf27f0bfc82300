"""Kubernetes Events (core v1) about the objects the controller applies: a NetworkPolicy or a Namespace the
model refused, a NetworkPolicy realized on every switch that needs it.

Recording is best-effort and never blocks a watcher: `Recorder.record` queues the Event and `flush` (run by
`controller.k8s.cluster.Kubernetes`'s background thread) creates them; an API server that cannot take
Events (404, an outage) is logged, and the Event is dropped. An Event goes to the object's namespace, a
cluster-scoped object's to `default`, as kubectl's event recorder does.
"""

from __future__ import annotations

import collections
import datetime
import logging
import queue
import socket
import uuid
from typing import Any

log = logging.getLogger(__name__)
Object = dict[str, Any]
COMPONENT = "tenet-controller"
REQUEST_TIMEOUT_S = 5  # seconds one Event's POST may take
HISTORY = 200  # Events kept in `Recorder.history`, newest last
SEEN = 1024  # (object, generation, reason, message) remembered so that one is recorded once


class Recorder:
    """Queue and create core v1 Events. `core`: a `kubernetes.client.CoreV1Api` (None: only logged).

    `history`: the last HISTORY Events as recorded (dicts: `type`, `reason`, `message`, `involvedObject`,
    `created`: whether the API server took it), what `tenetctl`-less debugging and the tests read."""

    def __init__(self, core: Any | None) -> None:
        self.core = core
        self.pending: queue.SimpleQueue[Object] = queue.SimpleQueue()
        self.history: collections.deque[Object] = collections.deque(maxlen=HISTORY)
        self.instance = socket.gethostname()
        self._refused = False  # the API server refused an Event: later failures are logged at debug
        self._seen: collections.OrderedDict[tuple[Any, ...], None] = collections.OrderedDict()

    def record(self, obj: Object, kind: str, event_type: str, reason: str, message: str) -> None:
        """Queue an Event about `obj` (a dict as the API serves it) of `kind` (e.g. "NetworkPolicy");
        `event_type` "Normal" or "Warning"; `reason` UpperCamelCase; `message` at most 1024 characters.
        The same Event about the same generation of an object is recorded once (a status write or a resync
        brings the object back unchanged), as client-go's event correlator folds repeats."""
        meta = obj.get("metadata") or {}
        seen = (kind, meta.get("namespace"), meta.get("name"), meta.get("uid"), meta.get("generation"), reason, message)
        if seen in self._seen:
            return
        self._seen[seen] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        involved = {
            "apiVersion": obj.get("apiVersion") or _API_VERSIONS.get(kind, "v1"),
            "kind": kind,
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        level = logging.WARNING if event_type == "Warning" else logging.INFO
        log.log(level, "%s %s: %s: %s", kind, _name(meta), reason, message)
        self.pending.put(body)

    def flush(self) -> int:
        """Create every queued Event; returns how many the API server took."""
        taken = 0
        while True:
            try:
                body = self.pending.get_nowait()
            except queue.Empty:
                return taken
            entry = {k: body[k] for k in ("type", "reason", "message", "involvedObject")}
            entry["created"] = False
            if self.core is not None:
                try:
                    self.core.create_namespaced_event(
                        body["metadata"]["namespace"], body, _request_timeout=REQUEST_TIMEOUT_S
                    )
                    entry["created"] = True
                    taken += 1
                except Exception as error:
                    level = logging.DEBUG if self._refused else logging.WARNING
                    log.log(level, "recording Event %s failed (logged only): %s", body["reason"], error)
                    self._refused = True
            self.history.append(entry)


_API_VERSIONS = {
    "NetworkPolicy": "networking.k8s.io/v1",
    "Network": "tenet.io/v1alpha1",
    "Namespace": "v1",
    "Pod": "v1",
}


def _name(meta: Object) -> str:
    return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
