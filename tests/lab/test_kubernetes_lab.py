"""`tenet-lab up --kubernetes` on 2 nodes: Pods applied with the real kubectl run through the kubelet stand-ins
and the nodes' real CNI plugin, reach each other across nodes with real packets, and leave nothing behind.

TENET_LAB_K8S_PODS (default 100) sets how many Pods the churn test creates and deletes."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import k8s
from lab.cluster import Lab
from lab.ovs import pid_alive, sh, wait_for
from lab.sandbox import load_sandboxes, state_file
from tests.apiserver.kubectl import kubectl

CHURN_PODS = int(os.environ.get("TENET_LAB_K8S_PODS", "100"))
BATCH = 20  # Pods per `kubectl apply`


def processes(lab: Lab) -> list[int]:
    state = lab.state
    pids = [state.controller_pid, state.etcd_pid, state.apiserver_pid, *state.agent_pids.values()]
    return [p for p in [*pids, *state.kubelet_pids.values(), *state.outside_pids] if p]


def lab_namespaces(lab: Lab) -> list[str]:
    names = [n.split()[0] for n in sh("ip", "netns", "list").splitlines() if n.strip()]
    return [n for n in names if n.startswith(f"tl-{lab.id}-") or re.match(rf"tn-node\d+-{lab.id}", n)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(Path(tmp_path_factory.mktemp("k8slab")))
    started: list[int] = []
    try:
        lab.up(2, kubernetes=True)
        started = processes(lab)
        yield lab
    finally:
        servers = [box.server_pid for n in lab.state.nodes for box in load_sandboxes(state_file(lab.dir, n)).values()]
        lab.down()
    assert lab_namespaces(lab) == []
    assert [p for p in [*started, *servers] if p and pid_alive(p)] == []
    assert not (lab.dir / "kubeconfig").exists() and not (lab.dir / "etcd").exists()


def pod(namespace: str, name: str, node: str, *, labels: dict[str, str] | None = None, **extra: Any) -> dict:
    ports = [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, **extra},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox", "ports": ports}]},
    }


def apply(lab: Lab, *documents: dict) -> str:
    return kubectl(lab.dir / "kubeconfig", "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))


def pods_in(lab: Lab, namespace: str) -> dict[str, dict]:
    listed = json.loads(kubectl(lab.dir / "kubeconfig", "get", "pods", "-n", namespace, "-o", "json"))
    return {item["metadata"]["name"]: item for item in listed["items"]}


def all_running(lab: Lab, namespace: str, count: int) -> dict[str, dict] | None:
    pods = pods_in(lab, namespace)
    running = [p for p in pods.values() if p["status"].get("phase") == "Running" and p["status"].get("podIP")]
    return pods if len(running) == count == len(pods) else None


def running(lab: Lab, namespace: str, count: int, *, timeout: float) -> dict[str, dict]:
    """`count` Pods of `namespace`, all Running with an IP, waited for; else the Pods' phases and the tail of
    each kubelet's log in the failure."""
    try:
        return wait_for(
            lambda: all_running(lab, namespace, count), f"{count} pods of {namespace} to run", timeout=timeout
        )
    except TimeoutError as error:
        phases = {name: p["status"].get("phase") for name, p in pods_in(lab, namespace).items()}
        logs = {n: (lab.dir / "nodes" / n / "kubelet.log").read_text()[-1500:] for n in lab.state.nodes}
        raise AssertionError(f"{error}: {phases}\n{logs}") from None


def leftovers(lab: Lab) -> dict[str, Any]:
    """What the kubelets' pods could leave: endpoints, pod ports on br-int, pod veths, pod namespaces, sandboxes."""
    ports, links = [], []
    for name in lab.state.nodes:
        node = lab.node(name)
        ports += [p for p in node.vsctl("list-ports", "br-int").split() if p.startswith("tn")]
        links += [line.split(":")[1].strip() for line in node.exec("ip", "-o", "link").splitlines() if ": tn" in line]
    sandboxes = [key for n in lab.state.nodes for key in load_sandboxes(state_file(lab.dir, n))]
    return {
        "endpoints": [e["id"] for e in lab.client.get("/v1/endpoints")],
        "ports": ports,
        "veths": links,
        "netns": [n for n in lab_namespaces(lab) if n.startswith(f"tl-{lab.id}-k")],
        "sandboxes": sandboxes,
    }


def free_addresses(lab: Lab) -> int:
    return int(lab.client.get("/v1/tenants/default/networks/pods")["free_addresses"])


def test_kubectl_pods_run_on_both_nodes_and_ping_across(lab: Lab) -> None:
    apply(
        lab,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        pod("shop", "front", "node1", labels={"app": "front"}),
        pod("shop", "back", "node2", labels={"app": "back"}),
    )
    pods = running(lab, "shop", 2, timeout=60)
    for name, node in (("front", "node1"), ("back", "node2")):
        status = pods[name]["status"]
        assert pods[name]["spec"]["nodeName"] == node and status["podIPs"] == [{"ip": status["podIP"]}]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
        assert status["hostIP"] == f"192.168.100.{node[-1]}"
    front, back = (lab.pods()[f"shop/{n}"] for n in ("front", "back"))
    assert front.ip is not None and back.ip is not None, (front, back)
    assert front.ip == pods["front"]["status"]["podIP"] and back.node == "node2"
    assert front.network == back.network == "default/pods"  # no Network claims shop: the cluster network
    assert front.as_pod().ping(back.ip, count=2) and back.as_pod().ping(front.ip, count=2)
    # the containers' declared ports are served in the pod: TCP and UDP answer with the pod's name
    tcp = "import socket,sys;c=socket.create_connection((sys.argv[1],80),timeout=3);print(c.recv(64).decode())"
    assert front.as_pod().run(sys.executable, "-c", tcp, back.ip).strip() == "shop/back"
    udp = (
        "import socket,sys;s=socket.socket(type=socket.SOCK_DGRAM);s.settimeout(3)\n"
        "s.sendto(b'ping',(sys.argv[1],53));print(s.recv(64).decode())"
    )
    assert back.as_pod().run(sys.executable, "-c", udp, front.ip).strip() == "shop/front"
    shown = subprocess.run(
        [sys.executable, "-m", "lab.cli", "--state-dir", str(lab.dir), "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    status = json.loads(shown.stdout)
    assert status["pods"]["shop/front"]["ip"] == front.ip and "shop/back" in status["nodes"][1]["pods"]
    assert status["kubernetes"]["kubelets"] == {"node1": "running", "node2": "running"}
    kubectl(lab.dir / "kubeconfig", "delete", "namespace", "shop")
    wait_for(lambda: not any(k.startswith("shop/") for k in lab.pods()), "shop's sandboxes to go", timeout=60)
    wait_for(lambda: not any(leftovers(lab).values()), "nothing left of shop's pods", timeout=30)


def test_a_failed_add_keeps_the_pod_pending_with_the_error_then_retries(lab: Lab) -> None:
    """The pod names a network that does not exist yet: ADD fails, the Pod stays Pending with the CNI error;
    once the Network exists, a retry runs it."""
    apply(lab, pod("default", "early", "node1", annotations={"tenet.io/network": "late"}))

    def failed() -> dict | None:
        status = pods_in(lab, "default")["early"]["status"]
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        sandbox = conditions.get("PodReadyToStartContainers")
        return sandbox if status["phase"] == "Pending" and sandbox and sandbox["status"] == "False" else None

    condition = wait_for(failed, "the pod's failed sandbox condition", timeout=60)
    assert condition["reason"] == "FailedCreatePodSandBox" and "late" in condition["message"]
    log = lab.dir / "nodes" / "node1" / "kubelet.log"
    wait_for(lambda: log.read_text().count("sandbox failed") >= 2, "a retry (1 s later) to fail too", timeout=30)
    assert len(leftovers(lab)["netns"]) <= 1  # each failed sandbox's namespace went (a retry may be under way)
    stamps = [
        datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for line in log.read_text().splitlines()
        if "sandbox failed" in line
    ]
    assert (stamps[1] - stamps[0]).total_seconds() >= 0.9  # backoff: 1 s, whatever the Pod's own updates
    network = {
        "apiVersion": "tenet.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": "late"},
        "spec": {"tenant": "default", "encap": "vxlan", "subnet": "10.77.0.0/24"},
    }
    apply(lab, network)
    try:
        pods = running(lab, "default", 1, timeout=90)
        assert pods["early"]["status"]["podIP"].startswith("10.77.0.")
        sandbox = {c["type"]: c for c in pods["early"]["status"]["conditions"]}["PodReadyToStartContainers"]
        assert sandbox["status"] == "True" and "reason" not in sandbox and "message" not in sandbox, sandbox
        assert lab.pods()["default/early"].network == "default/late"
    finally:
        kubectl(lab.dir / "kubeconfig", "delete", "pod", "early", "--ignore-not-found")
        wait_for(lambda: not any(leftovers(lab).values()), "nothing left of the pod", timeout=60)
        kubectl(lab.dir / "kubeconfig", "delete", "network", "late")


def test_pods_created_and_deleted_in_batches_leave_nothing(lab: Lab) -> None:
    free = free_addresses(lab)
    apply(lab, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "churn"}})
    started = time.monotonic()
    for first in range(0, CHURN_PODS, BATCH):
        names = range(first, min(first + BATCH, CHURN_PODS))
        apply(lab, *(pod("churn", f"p{i}", f"node{i % 2 + 1}", labels={"batch": str(first)}) for i in names))
    pods = running(lab, "churn", CHURN_PODS, timeout=30 + CHURN_PODS)
    up_s = time.monotonic() - started
    addresses = [p["status"]["podIP"] for p in pods.values()]
    assert len(set(addresses)) == CHURN_PODS
    assert free_addresses(lab) == free - CHURN_PODS
    assert len(leftovers(lab)["endpoints"]) == CHURN_PODS
    for first in range(0, CHURN_PODS, BATCH):
        kubectl(lab.dir / "kubeconfig", "delete", "pods", "-n", "churn", "-l", f"batch={first}", "--wait=false")
    wait_for(lambda: not pods_in(lab, "churn"), "the churn pods to go", timeout=60)
    empty: dict[str, list[str]] = {"endpoints": [], "ports": [], "veths": [], "netns": [], "sandboxes": []}
    wait_for(lambda: leftovers(lab) == empty, "nothing left of the churn pods", timeout=30 + CHURN_PODS)
    print(f"{CHURN_PODS} pods: running in {up_s:.1f} s, all gone {time.monotonic() - started:.1f} s after start")
    assert free_addresses(lab) == free
    kubectl(lab.dir / "kubeconfig", "delete", "namespace", "churn")


def test_a_restarted_kubelet_removes_what_was_deleted_meanwhile_and_runs_what_was_added(lab: Lab) -> None:
    apply(lab, pod("default", "stays", "node2"), pod("default", "goes", "node2"))
    running(lab, "default", 2, timeout=60)
    kept = lab.pods()["default/stays"]
    gone = lab.pods()["default/goes"]
    k8s.stop_kubelet(lab, "node2")  # the kubelet of node2 is away: its pods run on
    kubectl(lab.dir / "kubeconfig", "delete", "pod", "goes")
    apply(lab, pod("default", "new", "node2"))
    assert "default/goes" in lab.pods() and gone.netns in sh("ip", "netns", "list")  # no kubelet removed it yet
    k8s.start_kubelet(lab, "node2")
    try:
        running(lab, "default", 2, timeout=60)
        wait_for(lambda: "default/goes" not in lab.pods(), "the deleted pod's sandbox to go", timeout=60)
        assert lab.pods()["default/stays"].container_id == kept.container_id  # kept, not made again
        assert gone.netns not in sh("ip", "netns", "list")
        new = lab.pods()["default/new"]
        assert new.as_pod().ping(kept.ip or "")
    finally:
        kubectl(lab.dir / "kubeconfig", "delete", "pod", "stays", "new", "--ignore-not-found")
        wait_for(lambda: not any(leftovers(lab).values()), "nothing left of the pods", timeout=60)


def lab_cli(lab: Lab, *words: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lab.cli", "--state-dir", str(lab.dir), *words]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_an_api_server_outage_keeps_pods_talking_and_its_return_keeps_every_kubeconfig_valid(lab: Lab) -> None:
    """`tenet-lab apiserver stop`, then `start`: the same port, token and certificate, so the controller and the
    kubelets (which never re-read the kubeconfig) carry on; a Pod made after the return runs."""
    apply(lab, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "outage"}})
    apply(lab, pod("outage", "a", "node1"), pod("outage", "b", "node2"))
    running(lab, "outage", 2, timeout=60)
    a, b = (lab.pods()[f"outage/{n}"] for n in ("a", "b"))
    assert a.ip is not None and b.ip is not None, (a, b)
    kubeconfig_before = (lab.dir / "kubeconfig").read_text()
    others = {p: pid_alive(p) for p in processes(lab) if p != lab.state.apiserver_pid}
    try:
        stopped = lab_cli(lab, "apiserver", "stop")
        assert stopped.returncode == 0, stopped.stderr
        shown = json.loads(lab_cli(lab, "status", "--json").stdout)["kubernetes"]
        assert shown["apiserver"] == "down" and shown["apiserver_pid"] is None
        assert shown["etcd"] == "running" and pid_alive(shown["etcd_pid"])
        assert "API server down" in lab_cli(lab, "status").stdout
        assert a.as_pod().ping(b.ip, count=2) and b.as_pod().ping(a.ip, count=2)  # the data path needs no API
        again = lab_cli(lab, "apiserver", "stop")
        assert again.returncode == 1 and "not running" in again.stderr
        started = lab_cli(lab, "apiserver", "start")
        assert started.returncode == 0, started.stderr
        lab.state = type(lab.state).load(lab.file)
        assert (lab.dir / "kubeconfig").read_text() == kubeconfig_before
        apply(lab, pod("outage", "c", "node1"))
        running(lab, "outage", 3, timeout=60)
        c = lab.pods()["outage/c"]
        assert c.as_pod().ping(b.ip, count=2)
        assert {p: pid_alive(p) for p in others} == dict.fromkeys(others, True)  # nothing else restarted
        text = lab_cli(lab, "status").stdout
        assert f"API server running (pid {lab.state.apiserver_pid})" in text and "etcd running (pid" in text
    finally:
        if not lab.state.apiserver_pid or not pid_alive(lab.state.apiserver_pid):
            lab_cli(lab, "apiserver", "start")
            lab.state = type(lab.state).load(lab.file)
        kubectl(lab.dir / "kubeconfig", "delete", "namespace", "outage")
        wait_for(lambda: not any(k.startswith("outage/") for k in lab.pods()), "outage's sandboxes", timeout=60)
        wait_for(lambda: not any(leftovers(lab).values()), "nothing left of outage's pods", timeout=30)
