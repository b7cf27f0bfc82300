"""Watch semantics a controller relies on, through the official client and a client-go style reflector
(`tests.apiserver.reflector`): a change made while the watcher was disconnected arrives when it resumes; a
relist after 410 Gone loses no change and applies none twice, and its resync applies a delete the watch
missed; a restart of the API server over the same etcd is survived, with and without compaction meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lab.apiserver import StandInApiServer
from tests.apiserver.client import core_api, name_of, pod, version_of
from tests.apiserver.reflector import Reflector
from tests.etcd_server import EtcdServer

WAIT = 15.0  # seconds a test waits for a condition before it fails


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        time.sleep(0.05)  # poll interval, bounded by the deadline


def state(api: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """name -> resourceVersion of the pods the API server has."""
    return {name_of(p): version_of(p) for p in api.list_namespaced_pod(namespace).items}


def no_repeats(reflector: Reflector) -> None:
    assert len(reflector.applied) == len(set(reflector.applied)), reflector.applied


@pytest.fixture
def reflector(kubeconfig: Path, namespace: str) -> Iterator[Reflector]:
    running = Reflector(core_api(kubeconfig), namespace).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_change_made_while_disconnected_arrives_after_reconnect(
    kubeconfig: Path, namespace: str, reflector: Reflector
) -> None:
    api = core_api(kubeconfig)
    api.create_namespaced_pod(namespace, pod("a"))
    api.create_namespaced_pod(namespace, pod("b"))
    wait_for(lambda: reflector.snapshot() == state(api, namespace), "the cache holds a and b")
    reflector.stop()  # the connection drops; the reflector keeps its cache and resourceVersion
    mark, relists = len(reflector.applied), reflector.relists
    modified = api.patch_namespaced_pod("a", namespace, {"metadata": {"labels": {"x": "1"}}})
    api.delete_namespaced_pod("b", namespace)
    added = api.create_namespaced_pod(namespace, pod("c"))
    reflector.start()
    wait_for(lambda: reflector.snapshot() == state(api, namespace), "the cache caught up")
    changes = reflector.applied[mark:]
    assert [(kind, name) for kind, name, _ in changes] == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
    assert changes[0][2] == version_of(modified) and changes[2][2] == version_of(added)
    assert reflector.relists == relists and reflector.gone == 0, "resumed from its version, no relist"
    assert reflector.cache["a"]["metadata"]["labels"] == {"x": "1"}
    no_repeats(reflector)


def test_a_relist_after_410_gone_loses_nothing_repeats_nothing_and_resyncs_deletes(
    apiserver: StandInApiServer, kubeconfig: Path, namespace: str, reflector: Reflector
) -> None:
    api = core_api(kubeconfig)
    for name in ("a", "b", "c"):
        api.create_namespaced_pod(namespace, pod(name))
    wait_for(lambda: reflector.snapshot() == state(api, namespace), "the cache holds a, b and c")
    reflector.stop()
    mark, relists = len(reflector.applied), reflector.relists
    patches = [api.patch_namespaced_pod("a", namespace, {"metadata": {"labels": {"n": str(n)}}}) for n in range(3)]
    api.delete_namespaced_pod("b", namespace)  # its DELETED event will be compacted away
    api.create_namespaced_pod(namespace, pod("d"))
    apiserver.store.compact(apiserver.store.revision())
    reflector.start()
    wait_for(lambda: reflector.snapshot() == state(api, namespace), "the cache caught up")
    assert reflector.gone == 1 and reflector.relists == relists + 1
    changes = sorted((kind, name, version) for kind, name, version in reflector.applied[mark:])
    assert [(kind, name) for kind, name, _ in changes] == [("ADDED", "d"), ("DELETED", "b"), ("MODIFIED", "a")]
    assert changes[2][2] == version_of(patches[-1]), "only the newest version of a, once"
    assert "c" in reflector.cache and "b" not in reflector.cache
    no_repeats(reflector)
    api.patch_namespaced_pod("c", namespace, {"metadata": {"labels": {"after": "relist"}}})
    wait_for(lambda: reflector.snapshot() == state(api, namespace), "the watch after the relist")
    assert reflector.applied[-1][:2] == ("MODIFIED", "c")
    no_repeats(reflector)


def test_a_restart_of_the_api_server_is_survived(etcd: EtcdServer, tmp_path: Path) -> None:
    """The reflector keeps running while the API server stops and starts again on the same port and etcd;
    changes made meanwhile (through a second API server on that etcd) arrive once. The first outage
    resumes the watch; during the second, etcd compacts, and the relist's resync applies the missed delete."""

    def server(port: int = 0) -> StandInApiServer:
        """An API server over this test's etcd prefix, with the same certificates and token each time."""
        prefix = f"/reconnect-{tmp_path.name}"
        return StandInApiServer(etcd.client_url, port=port, prefix=prefix, cert_dir=tmp_path / "certs", token="t0")

    first = server().start()
    port = first._server.bind_addr[1]
    kubeconfig = first.write_kubeconfig(tmp_path / "kubeconfig")
    api = core_api(kubeconfig)
    servers = [first]
    reflector = Reflector(core_api(kubeconfig), "default").start()
    try:
        for name in ("a", "b", "c"):
            api.create_namespaced_pod("default", pod(name))
        wait_for(lambda: reflector.snapshot() == state(api, "default"), "the cache holds a, b and c")

        for outage, compact in ((1, False), (2, True)):
            servers[-1].stop()
            failures, mark, relists = reflector.failures, len(reflector.applied), reflector.relists

            def reconnects_failed(since: int = failures) -> bool:
                return reflector.failures >= since + 2

            wait_for(reconnects_failed, f"outage {outage}: reconnects fail")
            with server() as other:
                meanwhile = core_api(other.write_kubeconfig(tmp_path / f"other-{outage}"))
                victim = "b" if outage == 1 else "c"
                meanwhile.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"outage": str(outage)}}})
                meanwhile.delete_namespaced_pod(victim, "default")
                meanwhile.create_namespaced_pod("default", pod(f"new{outage}"))
                if compact:
                    other.store.compact(other.store.revision())
            servers.append(server(port).start())
            wait_for(lambda: reflector.snapshot() == state(api, "default"), f"outage {outage}: caught up")
            changes = sorted((kind, name) for kind, name, _ in reflector.applied[mark:])
            assert changes == [("ADDED", f"new{outage}"), ("DELETED", victim), ("MODIFIED", "a")], outage
            assert reflector.relists == relists + (1 if compact else 0), outage
            no_repeats(reflector)
        assert reflector.cache["a"]["metadata"]["labels"] == {"outage": "2"}
        api.delete_namespaced_pod("a", "default")
        wait_for(lambda: "a" not in reflector.cache, "a live change after the restarts")
    finally:
        reflector.stop()
        servers[-1].stop()  # the objects stay under this test's own etcd prefix
