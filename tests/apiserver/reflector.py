"""A list-then-watch cache of the pods of one namespace over the official client, as client-go's reflector
works: it resumes a dropped watch from the last resourceVersion it saw, relists after 410 Gone, and on a
relist applies what changed and deletes what is gone (the resync). It records every change it applies, so
tests can tell a change lost from one applied twice."""

from __future__ import annotations

import json
import threading
from typing import Any, cast

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

RETRY = 0.1  # seconds between reconnects while the API server is away
REQUEST_TIMEOUT = (2.0, 10.0)  # seconds to connect, and to wait for a byte of a response
WATCH_SECONDS = 5  # timeoutSeconds of each watch request


class Reflector:
    """The pods of `namespace` through `api`; `start()` runs it in a thread, `stop()` ends it.

    `cache`: name -> pod (dict) as last applied; `applied`: every applied change as (type, name,
    resourceVersion), type ADDED, MODIFIED or DELETED; `version`: the resourceVersion to resume from ("" to
    relist); `relists`, `failures` (requests that failed other than with 410), `gone` (410s) count."""

    def __init__(self, api: client.CoreV1Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.cache: dict[str, dict[str, Any]] = {}
        self.applied: list[tuple[str, str, str]] = []
        self.version = ""
        self.relists = self.failures = self.gone = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    def start(self) -> Reflector:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="reflector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread (its open watch ends within `REQUEST_TIMEOUT` at worst); keeps the cache and the
        version, so `start()` resumes like a client whose connection dropped."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT[1] + WATCH_SECONDS)
            assert not self._thread.is_alive(), "the reflector did not stop"

    def snapshot(self) -> dict[str, str]:
        """name -> resourceVersion of the cache."""
        with self.lock:
            return {name: obj["metadata"]["resourceVersion"] for name, obj in self.cache.items()}

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name, version = obj["metadata"]["name"], obj["metadata"]["resourceVersion"]
        with self.lock:
            if kind == "DELETED":
                self.cache.pop(name, None)
            else:
                self.cache[name] = obj
            self.applied.append((kind, name, version))

    def _relist(self) -> None:
        # Unread (`_preload_content=False`), the answer is urllib3's response, its body the JSON as the API server
        # sent it, which the cache keeps; the client types every answer of `list_namespaced_pod` V1PodList.
        response = cast(
            urllib3.BaseHTTPResponse,
            self.api.list_namespaced_pod(self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT),
        )
        listed = json.loads(response.data)
        items = {item["metadata"]["name"]: item for item in listed["items"]}
        for name, old in list(self.cache.items()):
            if name not in items:  # deleted while we were not watching: the resync applies it
                self._apply("DELETED", old)
        for name, item in items.items():
            cached = self.cache.get(name)
            if cached is None:
                self._apply("ADDED", item)
            elif cached["metadata"]["resourceVersion"] != item["metadata"]["resourceVersion"]:
                self._apply("MODIFIED", item)
        self.version = listed["metadata"]["resourceVersion"]
        self.relists += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.version:
                    self._relist()
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    self.api.list_namespaced_pod,
                    self.namespace,
                    resource_version=self.version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=REQUEST_TIMEOUT,
                ):
                    obj = event["raw_object"]
                    if event["type"] != "BOOKMARK":
                        self._apply(event["type"], obj)
                    self.version = obj["metadata"]["resourceVersion"]
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    self.gone += 1
                    self.version = ""
                else:
                    self.failures += 1
                    self._stop.wait(RETRY)
            except (HTTPError, OSError):
                self.failures += 1
                self._stop.wait(RETRY)
