"""List and watch through the official Python client: events in order, 410 Gone and relist, bookmarks,
selectors, and a watch that resumes across a restart of the stand-in API server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from lab.apiserver import StandInApiServer
from tests.apiserver.client import core_api, error_body, meta, name_of, pod, version_of
from tests.etcd_server import EtcdServer

WAIT = 10.0  # seconds a test waits for an event before it fails


def events(api: client.CoreV1Api, namespace: str, **kwargs: object) -> list[tuple[str, str, str]]:
    """Every event of a watch that ends by its own `timeout_seconds`: (type, name, resourceVersion)."""
    out = []
    for event in watch.Watch().stream(api.list_namespaced_pod, namespace, **kwargs):
        obj = event["object"]
        if event["type"] == "BOOKMARK":
            out.append(("BOOKMARK", "", obj["metadata"]["resourceVersion"]))
        else:
            out.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
    return out


def test_live_watch_sees_added_modified_deleted_in_order(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    start = version_of(api.list_namespaced_pod(namespace))
    watcher = watch.Watch()
    stream = watcher.stream(
        api.list_namespaced_pod, namespace, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=30
    )
    seen: list[tuple[str, str, str]] = []
    written: list[str] = []
    deadline = time.monotonic() + WAIT
    for event in stream:
        assert time.monotonic() < deadline, f"no ADDED/MODIFIED/DELETED within {WAIT} s: {seen}"
        if event["type"] == "BOOKMARK":
            if not written:  # the first bookmark shows the watch is established: now change things
                created = api.create_namespaced_pod(namespace, pod("p1", {"app": "a"}))
                patched = api.patch_namespaced_pod("p1", namespace, {"metadata": {"labels": {"app": "b"}}})
                api.delete_namespaced_pod("p1", namespace)
                written = [version_of(created), version_of(patched)]
            continue
        seen.append((event["type"], event["object"].metadata.name, event["object"].metadata.resource_version))
        if len(seen) == 3:
            watcher.stop()
    assert [kind for kind, _, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert [name for _, name, _ in seen] == ["p1"] * 3
    versions = [int(version) for _, _, version in seen]
    assert versions[:2] == [int(v) for v in written] and versions == sorted(set(versions))
    assert versions[0] > int(start)


def test_watch_from_a_version_replays_history_and_without_one_starts_with_the_state(
    kubeconfig: Path, namespace: str
) -> None:
    api = core_api(kubeconfig)
    start = version_of(api.list_namespaced_pod(namespace))
    api.create_namespaced_pod(namespace, pod("a"))
    api.create_namespaced_pod(namespace, pod("b"))
    api.delete_namespaced_pod("a", namespace)
    replay = events(api, namespace, resource_version=start, timeout_seconds=1)
    assert [(kind, name) for kind, name, _ in replay] == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    state = events(api, namespace, timeout_seconds=1)
    assert [(kind, name) for kind, name, _ in state] == [("ADDED", "b")]


def test_compacted_version_is_gone_and_a_relist_recovers(
    apiserver: StandInApiServer, kubeconfig: Path, namespace: str
) -> None:
    api = core_api(kubeconfig)
    old = version_of(api.create_namespaced_pod(namespace, pod("p", {"n": "0"})))
    for n in range(1, 4):
        api.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"n": str(n)}}})
    apiserver.store.compact(apiserver.store.revision())
    with pytest.raises(ApiException) as gone:
        events(api, namespace, resource_version=old, timeout_seconds=2)
    assert gone.value.status == 410
    with pytest.raises(ApiException) as listed:
        api.list_namespaced_pod(namespace, resource_version=old, resource_version_match="Exact")
    assert listed.value.status == 410 and "Expired" in error_body(listed.value)
    relist = api.list_namespaced_pod(namespace)
    assert [(name_of(p), meta(p).labels) for p in relist.items] == [("p", {"n": "3"})]
    api.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"n": "4"}}})
    resumed = events(api, namespace, resource_version=version_of(relist), timeout_seconds=1)
    assert [(kind, name) for kind, name, _ in resumed] == [("MODIFIED", "p")]


def test_bookmarks_arrive_only_when_asked(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    start = version_of(api.list_namespaced_pod(namespace))
    asked = events(api, namespace, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=1)
    assert asked and all(kind == "BOOKMARK" and int(version) >= int(start) for kind, _, version in asked)
    assert events(api, namespace, resource_version=start, timeout_seconds=1) == []


def test_label_and_field_selectors_filter_list_and_watch(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    api.create_namespaced_pod(namespace, pod("a1", {"app": "a", "tier": "front"}, node="n1"))
    api.create_namespaced_pod(namespace, pod("a2", {"app": "a"}, node="n2"))
    api.create_namespaced_pod(namespace, pod("b1", {"app": "b", "tier": "back"}, node="n1"))

    def names(label_selector: str | None = None, field_selector: str | None = None) -> list[str]:
        listed = api.list_namespaced_pod(namespace, label_selector=label_selector, field_selector=field_selector)
        return [name_of(p) for p in listed.items]

    assert names(label_selector="app=a") == ["a1", "a2"]
    assert names(label_selector="app==b") == ["b1"]
    assert names(label_selector="app!=a") == ["b1"]
    assert names(label_selector="tier in (front,back)") == ["a1", "b1"]
    assert names(label_selector="tier notin (front)") == ["a2", "b1"]
    assert names(label_selector="tier") == ["a1", "b1"]
    assert names(label_selector="!tier") == ["a2"]
    assert names(label_selector="app=a,tier") == ["a1"]
    assert names(field_selector="spec.nodeName=n1") == ["a1", "b1"]
    assert names(field_selector="metadata.name!=a1,spec.nodeName=n1") == ["b1"]
    assert names(field_selector=f"metadata.namespace={namespace}", label_selector="app=b") == ["b1"]
    everywhere = api.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={namespace},spec.nodeName=n2")
    assert [(meta(p).namespace, name_of(p)) for p in everywhere.items] == [(namespace, "a2")]
    with pytest.raises(ApiException) as bad:
        api.list_namespaced_pod(namespace, field_selector="spec.hostname=x")
    assert bad.value.status == 400 and "spec.hostname" in error_body(bad.value)

    start = version_of(api.list_namespaced_pod(namespace))
    api.patch_namespaced_pod("a2", namespace, {"metadata": {"labels": {"app": "b"}}})  # leaves app=a
    api.patch_namespaced_pod("b1", namespace, {"metadata": {"labels": {"app": "a"}}})  # joins app=a
    api.patch_namespaced_pod("a1", namespace, {"metadata": {"labels": {"x": "y"}}})  # stays in
    api.delete_namespaced_pod("a2", namespace)  # no longer app=a: not seen
    seen = events(api, namespace, resource_version=start, label_selector="app=a", timeout_seconds=1)
    assert [(kind, name) for kind, name, _ in seen] == [("DELETED", "a2"), ("ADDED", "b1"), ("MODIFIED", "a1")]
    on_n2 = events(api, namespace, resource_version=start, field_selector="spec.nodeName=n2", timeout_seconds=1)
    assert [(kind, name) for kind, name, _ in on_n2] == [("MODIFIED", "a2"), ("DELETED", "a2")]


def test_restart_keeps_objects_and_a_watch_resumes(etcd: EtcdServer, tmp_path: Path) -> None:
    prefix = f"/restart-{tmp_path.name}"
    first = StandInApiServer(etcd.client_url, prefix=prefix, cert_dir=tmp_path / "certs", token="t0")
    with first:
        api = core_api(first.write_kubeconfig(tmp_path / "one"))
        made = api.create_namespaced_pod("default", pod("keep", {"k": "v"}))
        api.patch_namespaced_pod("keep", "default", {"metadata": {"labels": {"k": "w"}}})
        seen = version_of(api.list_namespaced_pod("default"))
    with StandInApiServer(etcd.client_url, prefix=prefix, cert_dir=tmp_path / "certs", token="t0") as second:
        api = core_api(second.write_kubeconfig(tmp_path / "two"))
        kept = api.read_namespaced_pod("keep", "default")
        assert meta(kept).uid == meta(made).uid
        assert int(version_of(kept)) <= int(seen)
        assert meta(kept).labels == {"k": "w"}
        api.patch_namespaced_pod("keep", "default", {"metadata": {"labels": {"k": "x"}}})
        api.delete_namespaced_pod("keep", "default")
        resumed = events(api, "default", resource_version=seen, timeout_seconds=1)
        assert [(kind, name) for kind, name, _ in resumed] == [("MODIFIED", "keep"), ("DELETED", "keep")]
        assert all(int(version) > int(seen) for _, _, version in resumed)


def test_watch_list_sends_the_state_then_an_initial_events_end_bookmark(kubeconfig: Path, namespace: str) -> None:
    api = core_api(kubeconfig)
    api.create_namespaced_pod(namespace, pod("here"))
    stream = watch.Watch().stream(
        api.list_namespaced_pod,
        namespace,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        resource_version="",
        allow_watch_bookmarks=True,
        timeout_seconds=1,
        deserialize=False,
    )
    first, second = list(stream)[:2]
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "here")
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_stopping_the_server_ends_open_watches(etcd: EtcdServer, tmp_path: Path) -> None:
    server = StandInApiServer(etcd.client_url, prefix=f"/stop-{tmp_path.name}", bookmark_interval=0.1)
    server.start()
    api = core_api(server.write_kubeconfig(tmp_path / "kubeconfig"))
    watching, ended = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            for _ in watch.Watch().stream(
                api.list_namespaced_pod, "default", allow_watch_bookmarks=True, timeout_seconds=60
            ):
                watching.set()
            outcome.append(None)
        except BaseException as error:  # reported by the assertion below
            outcome.append(error)
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert watching.wait(WAIT), "no bookmark arrived"
    finally:
        server.stop()
    assert ended.wait(WAIT), "the watch outlived the server"
    assert outcome == [None]
    thread.join()
