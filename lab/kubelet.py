"""A kubelet stand-in for one lab node: it runs the Pods the API server binds to the node (`spec.nodeName`) as
network namespaces plumbed by the node's real CNI plugin, and reports them back in each Pod's status.

    python -m lab.kubelet --state-dir /var/lib/tenet-lab --node node1     (`tenet-lab up --kubernetes` starts it)

What it does, as the kubelet and a CRI runtime do together:
- lists and watches Pods with the field selector `spec.nodeName=NODE` through the official `kubernetes` client,
  from the list's `resourceVersion` with bookmarks; on 410 Gone (or a broken watch) it lists again and diffs;
- for a new Pod: a network namespace (the pod sandbox, `tl-ID-k<uid>`), then the node's installed conflist
  (loopback, then tenet) run with `CNI_COMMAND=ADD`, `CNI_CONTAINERID` (the sandbox id), `CNI_NETNS`,
  `CNI_IFNAME=eth0` and `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
  K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..` (what containerd and CRI-O pass); then `status.phase=Running`,
  `podIP`, `podIPs`, `hostIP` (the node's tunnel IP), the conditions PodScheduled, PodReadyToStartContainers,
  Initialized, ContainersReady and Ready, and a running containerStatus per container, through the status
  subresource (`patch_namespaced_pod_status`, a strategic merge patch);
- a failed ADD: CNI DEL and the namespace removed (as a runtime cleans up a failed sandbox), the Pod stays
  Pending with the condition `PodReadyToStartContainers=False`, reason `FailedCreatePodSandBox` and the
  plugin's error as message (and an Event of that reason where the API server serves Events); retried with
  backoff (1 s doubling to 30 s);
- a Pod deleted, given a `deletionTimestamp`, or replaced by one of the same name and a new uid: CNI DEL,
  the namespace removed; a Pod with a `deletionTimestamp` is then deleted with grace period 0, as the kubelet
  does once its containers are gone;
- ports: the containers' declared `ports` are served inside the pod by one small process (TCP: accept, send
  the pod's `NAMESPACE/NAME` and a newline, close; UDP: answer each datagram with the same, as the servers of
  `tenet-lab pod add --serve` do), so probes and policies can be checked with
  real packets; pods with `hostNetwork: true` get the node's address and no CNI call.

What it leaves out (honest limits): no containers, images, commands or restarts (a "container" is its ports'
server); no probes (liveness, readiness, startup: Ready is True once the network is up), no volumes,
ConfigMaps, Secrets, environment, resources, cgroups, QoS or eviction; no node heartbeat or Lease, no
node status updates; no graceful termination (the grace period is not waited for), no static pods, no
init or ephemeral containers; no CNI CHECK or GC; no pod logs, exec or port-forward through the API.

State: the sandboxes it runs, in `STATE_DIR/nodes/NODE/kubelet.json` (read by `tenet-lab status`, `matrix` and
`exec`, which name such pods `NAMESPACE/NAME`); a restarted kubelet picks them up and removes those whose Pod
is gone. SIGTERM ends it and leaves the pods running (`tenet-lab down` removes them).
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from controller.client import ClientError
from lab.cluster import UNDERLAY, Lab, LabError, LabPod
from lab.ovs import sh, stop_pid
from lab.sandbox import (
    PYTHON,
    SERVER,
    Sandbox,
    failed_condition,
    failure_event,
    key_of,
    load_sandboxes,
    pod_ports,
    running_status,
    served,
    state_file,
)

log = logging.getLogger("tenet-kubelet")
WORKERS = 4  # pods set up or torn down at once
BACKOFF_S, MAX_BACKOFF_S = 1.0, 30.0  # retry of a failed ADD, and reconnect of a broken watch
WATCH_TIMEOUT_S = 300  # a watch request's timeoutSeconds; it is renewed from the last resourceVersion


class Kubelet:
    """Runs the Pods bound to `node` of the lab in `state_dir` (see the module docstring). `api`: a
    `kubernetes.client.ApiClient` for the lab's API server. `start()` returns at once; `stop()` ends the
    watch and the workers, leaving the pods as they are."""

    def __init__(self, state_dir: Path, node: str, api: client.ApiClient, *, workers: int = WORKERS) -> None:
        self.lab = Lab(state_dir)
        if node not in self.lab.state.nodes:
            raise LabError(f"--node {node!r}: the lab has {', '.join(self.lab.state.nodes) or 'no nodes'}")
        self.node = node
        self.host_ip = f"{UNDERLAY}.{self.lab.state.nodes.index(node) + 1}"
        self.core = client.CoreV1Api(api)
        self.file = state_file(state_dir, node)
        self.sandboxes = load_sandboxes(self.file)
        self.servers: dict[str, subprocess.Popen] = {}
        self.known: dict[str, dict[str, Any]] = {}  # NAMESPACE/NAME -> the Pod as last listed or watched
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.queue: list[str] = []
        self.queued: set[str] = set()
        self.busy: set[str] = set()
        self.again: set[str] = set()  # changed while a worker had it
        self.retries: list[tuple[float, str]] = []  # (monotonic time, key): failed ADDs to try again
        self.backoff: dict[str, float] = {}  # the next wait after a failed ADD, seconds
        self.not_before: dict[str, float] = {}  # no ADD of this key before this monotonic time
        self.synced = threading.Event()  # the first list is applied
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._watch, name="watch", daemon=True)]
        self.threads += [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True) for i in range(workers)]

    def start(self) -> Kubelet:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.wake:
            self.wake.notify_all()
        for thread in self.threads[1:]:
            thread.join(timeout=30)
            if thread.is_alive():
                log.warning("%s still busy after 30 s", thread.name)

    # --- the watch -----------------------------------------------------------------------------

    def _watch(self) -> None:
        delay = BACKOFF_S
        selector = f"spec.nodeName={self.node}"
        while not self.stopping.is_set():
            try:
                version = self._list(selector)
                delay = BACKOFF_S
                while not self.stopping.is_set():
                    stream = _RawWatch().stream(
                        self.core.list_pod_for_all_namespaces,
                        field_selector=selector,
                        resource_version=version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=WATCH_TIMEOUT_S,
                        _request_timeout=(10, WATCH_TIMEOUT_S + 30),
                    )
                    for event in stream:
                        if event is None:  # a blank line the server sends to keep the stream alive
                            continue
                        kind, pod = event["type"], event["object"]
                        version = pod.get("metadata", {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED"):
                            self._saw(pod)
                        elif kind == "DELETED":
                            self._saw(pod, gone=True)
                        if self.stopping.is_set():
                            return
            except ApiException as error:
                if error.status != 410:
                    log.warning("watch of pods: %s; again in %.1f s", error.reason, delay)
                    self.stopping.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                else:
                    log.info("watch of pods: 410 Gone, listing again")
            except Exception as error:  # the API server away, a broken stream: list again after a wait
                log.warning("watch of pods: %s; again in %.1f s", error, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _list(self, selector: str) -> str:
        """List the node's Pods, apply the difference to what is known, return the list's resourceVersion."""
        response: Any = self.core.list_pod_for_all_namespaces(
            field_selector=selector, _preload_content=False, _request_timeout=30
        )
        listed = json.loads(response.data)
        pods = {key_of(pod): pod for pod in listed.get("items", [])}
        with self.lock:
            gone = (set(self.known) | set(self.sandboxes)) - set(pods)
            self.known = pods
            for key in [*pods, *gone]:
                self._enqueue(key)
        self.synced.set()
        log.info("listed %d pod(s) on %s", len(pods), self.node)
        return str(listed.get("metadata", {}).get("resourceVersion", ""))

    def _saw(self, pod: dict[str, Any], *, gone: bool = False) -> None:
        key = key_of(pod)
        with self.lock:
            if gone:
                self.known.pop(key, None)
            else:
                self.known[key] = pod
            self._enqueue(key)

    # --- the work queue ------------------------------------------------------------------------

    def _enqueue(self, key: str) -> None:
        """Queue `key` once (the lock held); a key being worked on is queued again when its worker is done."""
        if key in self.busy:
            self.again.add(key)
        elif key not in self.queued:
            self.queued.add(key)
            self.queue.append(key)
            self.wake.notify()

    def _next(self) -> str | None:
        with self.wake:
            while not self.stopping.is_set():
                moment = time.monotonic()
                while self.retries and self.retries[0][0] <= moment:
                    self._enqueue(heapq.heappop(self.retries)[1])
                if self.queue:
                    key = self.queue.pop(0)
                    self.queued.discard(key)
                    self.busy.add(key)
                    return key
                self.wake.wait(timeout=(self.retries[0][0] - moment) if self.retries else 1.0)
        return None

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._sync(key)
            except Exception:  # a bug must not end the worker: log it, try the key again later
                log.exception("pod %s", key)
                self._retry(key)
            finally:
                with self.wake:
                    self.busy.discard(key)
                    if key in self.again:
                        self.again.discard(key)
                        self._enqueue(key)

    def _retry(self, key: str) -> float:
        with self.wake:
            delay = self.backoff.get(key, BACKOFF_S)
            self.backoff[key] = min(delay * 2, MAX_BACKOFF_S)
            self.not_before[key] = time.monotonic() + delay
            heapq.heappush(self.retries, (self.not_before[key], key))
            self.wake.notify()
        return delay

    # --- one pod -------------------------------------------------------------------------------

    def _sync(self, key: str) -> None:
        """Make the sandbox of `key` match its Pod: tear down what is gone or replaced, set up what is new."""
        with self.lock:
            pod = self.known.get(key)
            box = self.sandboxes.get(key)
        deleting = pod is not None and bool(pod["metadata"].get("deletionTimestamp"))
        if box is not None and (pod is None or deleting or pod["metadata"].get("uid") != box.uid):
            self._teardown(box)
        elif box is not None and pod is not None and (pod["metadata"].get("labels") or {}) != box.labels:
            box.labels = dict(pod["metadata"].get("labels") or {})  # `kubectl label`: the record follows
            self._record(box)
        if pod is None:
            self.backoff.pop(key, None)
            self.not_before.pop(key, None)
            return
        if deleting:
            self._delete_pod(pod)
            return
        if key not in self.sandboxes and time.monotonic() >= self.not_before.get(key, 0):
            self._setup(pod)  # else a failed ADD waits for its retry, whatever events come meanwhile

    def _setup(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        key = key_of(pod)
        if spec.get("hostNetwork"):
            netns = self.lab.node(self.node).netns
            box = Sandbox(meta["namespace"], meta["name"], meta["uid"], netns, "", self.host_ip)
            self._record(box)
            self._running(pod, box)
            return
        sandbox_id = uuid.uuid4().hex
        box = Sandbox(meta["namespace"], meta["name"], meta["uid"], f"tl-{self.lab.id}-k{meta['uid'][:13]}", sandbox_id)
        box.labels = dict(meta.get("labels") or {})
        sh("ip", "netns", "add", box.netns)
        self._record(box)  # first: a crash after this must not leak the namespace
        started = time.monotonic()
        try:
            result = self.lab.run_cni("ADD", self._lab_pod(box), cni_args=self._cni_args(box))
        except (LabError, OSError, subprocess.SubprocessError) as error:
            self._teardown(box)
            self._failed(pod, str(error))
            return
        ours = result["ips"][-1]
        box.ip = ours["address"].split("/")[0]
        box.mac = result.get("interfaces", [{}])[ours.get("interface", 0)].get("mac", "")
        box.network, box.endpoint = self._endpoint_of(box)
        ports = pod_ports(spec)
        if ports:
            box.server_pid = self._serve(box, ports)
            box.serve = served(ports)
        self._record(box)
        self._running(pod, box)
        self.backoff.pop(key, None)
        self.not_before.pop(key, None)
        log.info("pod %s: %s (%s) in %.0f ms", key, box.ip, box.network, (time.monotonic() - started) * 1000)

    def _teardown(self, box: Sandbox) -> None:
        if box.server_pid:
            server = self.servers.pop(box.key, None)
            if server is not None:
                server.kill()
                server.wait(timeout=10)
            else:
                stop_pid(box.server_pid)
        if box.container_id:  # not a hostNetwork pod
            try:
                self.lab.run_cni("DEL", self._lab_pod(box), cni_args=self._cni_args(box))
            except (LabError, OSError, subprocess.SubprocessError) as error:
                log.warning("pod %s: CNI DEL: %s", box.key, error)  # the namespace goes anyway
            sh("ip", "netns", "del", box.netns, check=False)
        with self.lock:
            if box.key in self.sandboxes and self.sandboxes[box.key].uid == box.uid:
                del self.sandboxes[box.key]
                self._save()
        log.info("pod %s: removed", box.key)

    def _lab_pod(self, box: Sandbox) -> LabPod:
        return LabPod(box.key, self.node, box.network, box.netns, box.container_id)

    @staticmethod
    def _cni_args(box: Sandbox) -> str:
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={box.namespace};K8S_POD_NAME={box.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={box.container_id};K8S_POD_UID={box.uid}"
        )

    def _endpoint_of(self, box: Sandbox) -> tuple[str, str]:
        """(network TENANT/NAME, endpoint id) the controller gave the pod, for the lab's matrix: the endpoint
        of this node with the pod's address and MAC; ("", "") when the controller does not say."""
        try:
            endpoints = self.lab.client.get("/v1/endpoints", node=self.node)
        except ClientError as error:
            log.warning("pod %s: its endpoint: %s", box.key, error)
            return "", ""
        mine = [e for e in endpoints if e.get("ip") == box.ip and e.get("mac") == box.mac]
        return (str(mine[0].get("network", "")), str(mine[0].get("id", ""))) if mine else ("", "")

    def _serve(self, box: Sandbox, ports: list[str]) -> int:
        args = ["ip", "netns", "exec", box.netns, PYTHON, "-I", "-S", "-c", SERVER, box.key, *ports]
        server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"listening":
            server.kill()
            server.wait(timeout=10)
            raise LabError(f"pod {box.key}: the server of ports {', '.join(ports)} did not start")
        self.servers[box.key] = server
        return server.pid

    def _record(self, box: Sandbox) -> None:
        with self.lock:
            self.sandboxes[box.key] = box
            self._save()

    def _save(self) -> None:
        """Write the sandboxes (the lock held), atomically: `tenet-lab status` reads the file at any time."""
        temporary = self.file.with_suffix(".tmp")
        temporary.write_text(json.dumps({key: asdict(box) for key, box in self.sandboxes.items()}, indent=1))
        os.replace(temporary, self.file)

    # --- what the API server is told -----------------------------------------------------------

    def _running(self, pod: dict[str, Any], box: Sandbox) -> None:
        self._patch_status(pod, running_status(pod, box, self.host_ip))

    def _failed(self, pod: dict[str, Any], message: str) -> None:
        delay = self._retry(key_of(pod))
        log.warning("pod %s: sandbox failed (again in %.0f s): %s", key_of(pod), delay, message)
        self._patch_status(pod, {"phase": "Pending", "conditions": [failed_condition(message)]})
        try:
            event: Any = failure_event(pod, message, self.node)
            self.core.create_namespaced_event(pod["metadata"]["namespace"], event, _request_timeout=10)
        except Exception as error:  # an API server without Events: the condition carries the error
            log.debug("pod %s: no Event: %s", key_of(pod), error)

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(
                meta["name"],
                meta["namespace"],
                {"metadata": {"uid": meta["uid"]}, "status": status},
                _content_type="application/strategic-merge-patch+json",
                _request_timeout=30,
            )
        except ApiException as error:
            if error.status != 404:  # a Pod deleted meanwhile: its DELETED event tears the sandbox down
                raise

    def _delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(
                meta["name"], meta["namespace"], grace_period_seconds=0, _request_timeout=30
            )
        except ApiException as error:
            if error.status != 404:
                raise


class _RawWatch(watch.Watch):
    """The client's watch, its events' objects left as the server's JSON (camelCase dicts, not models)."""

    def get_return_type(self, func: Any) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.kubelet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="the lab's state directory")
    parser.add_argument("--node", required=True, help="the lab node whose Pods to run (node1, ...)")
    parser.add_argument("--kubeconfig", type=Path, help="the API server's kubeconfig (default STATE_DIR/kubeconfig)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api = config.new_client_from_config(config_file=str(args.kubeconfig or args.state_dir / "kubeconfig"))
    try:
        kubelet = Kubelet(args.state_dir, args.node, api)
    except LabError as error:
        print(f"python -m lab.kubelet: {error}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    kubelet.start()
    while not done.is_set() and not kubelet.synced.wait(0.2):
        pass
    if kubelet.synced.is_set():
        print(f"kubelet of {args.node}: watching pods", flush=True)
    done.wait()
    log.info("stopping")
    kubelet.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
