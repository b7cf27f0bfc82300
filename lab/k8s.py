"""The lab's Kubernetes side (`tenet-lab up --kubernetes`): etcd, the stand-in API server (lab/apiserver/), a
kubeconfig in STATE_DIR/kubeconfig, the lab nodes as Node objects, Tenet's CRDs (deploy/10-crds.yaml), and one
kubelet stand-in per node (lab/kubelet.py), each a process the lab records by pid in lab.json.

    tenet-lab up --kubernetes
    kubectl --kubeconfig /var/lib/tenet-lab/kubeconfig apply -f pods.yaml     # Pods with spec.nodeName: node1

The controller runs with `--kubeconfig STATE_DIR/kubeconfig` and the nodes' conflists say `"kubernetes": true`,
so a Pod's network is the controller's choice (README "Kubernetes"); there is no scheduler: a Pod names its
node in `spec.nodeName`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from lab.ovs import ROOT, free_ports, sh, wait_for

if TYPE_CHECKING:
    from lab.cluster import Lab

CRDS = ROOT / "deploy" / "10-crds.yaml"
ETCD = "/usr/bin/etcd"


def kubeconfig(lab: Lab) -> Path:
    return lab.dir / "kubeconfig"


def api(lab: Lab) -> client.ApiClient:
    """A client of the lab's API server, from its kubeconfig."""
    return config.new_client_from_config(config_file=str(kubeconfig(lab)))


def start_api(lab: Lab, spawn: Any, alive: Any) -> None:
    """etcd, then the API server writing STATE_DIR/kubeconfig; then the nodes as Node objects and the CRDs.
    `spawn(args, log) -> pid` and `alive(pid)` are the lab's. Raises LabError (from lab.cluster) when either
    process exits while starting, TimeoutError when one does not answer."""
    from lab.cluster import LabError

    etcd = shutil.which("etcd") or ETCD
    if not Path(etcd).exists():
        raise LabError("--kubernetes needs etcd: install the Debian package etcd-server")
    client_port, peer_port, api_port = free_ports(3)  # etcd's two, the API server's
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    data = lab.dir / "etcd"
    lab.progress(f"etcd: {client_url}, data in {data}")
    command = [
            etcd, "--name=lab", f"--data-dir={data}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=lab={peer_url}", "--initial-cluster-state=new",
            "--heartbeat-interval=20", "--election-timeout=200", "--log-level=warn",
    ]  # fmt: skip
    lab.state.etcd_pid = spawn(command, lab.dir / "etcd.log")
    lab.save()

    def etcd_answers() -> bool:
        if not alive(lab.state.etcd_pid):
            raise LabError(f"etcd exited; see {lab.dir / 'etcd.log'}")
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as answer:
                return json.loads(answer.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    wait_for(etcd_answers, "etcd", timeout=30)
    lab.state.etcd_url, lab.state.apiserver_port = client_url, api_port
    lab.state.apiserver_token = secrets.token_urlsafe(24)
    lab.save()
    start_apiserver(lab, spawn, alive)
    with api(lab) as connection:
        register_nodes(lab, client.CoreV1Api(connection))
        apply_crds(client.ApiextensionsV1Api(connection))
    lab.progress(f"Kubernetes: nodes {', '.join(lab.state.nodes)} registered, CRDs from {CRDS.name} applied")


def start_apiserver(lab: Lab, spawn: Any = None, alive: Any = None) -> None:
    """The API server on the lab's port with the lab's token and certificate directory (STATE_DIR/apiserver),
    so the kubeconfig it writes is the one the controller and the kubelets hold already: a restart keeps them
    all valid. Waited for until it serves. Raises LabError (from lab.cluster) when it is running already or
    exits while starting, TimeoutError when it does not serve within 60 s."""
    from lab.cluster import LabError, _alive, _spawn

    spawn, alive = spawn or _spawn, alive or _alive
    if lab.state.apiserver_pid and alive(lab.state.apiserver_pid):
        raise LabError(f"the API server runs already (pid {lab.state.apiserver_pid})")
    port = lab.state.apiserver_port
    lab.progress(f"API server: https://127.0.0.1:{port}, kubeconfig {kubeconfig(lab)}")
    log = lab.dir / "apiserver.log"
    mark = log.stat().st_size if log.exists() else 0
    command = [
            sys.executable, "-m", "lab.apiserver", "--etcd", lab.state.etcd_url, "--port", str(port),
            # One argument: a random token may begin with "-", which argparse would take for an option.
            f"--token={lab.state.apiserver_token}", "--kubeconfig-out", str(kubeconfig(lab)),
            "--cert-dir", str(lab.dir / "apiserver"), "--bookmark-interval", "10",
    ]  # fmt: skip
    pid = lab.state.apiserver_pid = spawn(command, log)
    lab.save()

    def serving() -> bool:
        if not alive(pid):
            raise LabError(f"the API server exited; see {log}")
        return kubeconfig(lab).exists() and "serving on" in log.read_text()[mark:]

    wait_for(serving, "the API server", timeout=60)


def stop_apiserver(lab: Lab) -> None:
    """Stop the API server alone (an outage: etcd, the controller and the kubelets keep running, and pods keep
    their traffic); `start_apiserver` brings it back on the same port with the same token and certificate.
    Raises LabError (from lab.cluster) when it is not running."""
    from lab.cluster import LabError, _alive, _stop

    pid = lab.state.apiserver_pid
    if not pid or not _alive(pid):
        raise LabError("the API server is not running")
    _stop(pid)
    lab.state.apiserver_pid = None
    lab.save()


def wait_for_nodes(lab: Lab) -> None:
    """Wait until the controller's Node watch has put every lab node in its model (its first list applied)."""
    from controller.client import ClientError

    def listed() -> bool:
        try:
            names = {node["name"] for node in lab.client.get("/v1/nodes")}
        except ClientError:
            return False
        return names >= set(lab.state.nodes)

    wait_for(listed, "the controller to list the Nodes", timeout=60, interval=0.1)
    lab.progress("controller: watching the API server, the Nodes in its model")


def register_nodes(lab: Lab, core: client.CoreV1Api) -> None:
    """Each lab node as a Node, its InternalIP the node's tunnel address, Ready (no heartbeats follow)."""
    from lab.cluster import UNDERLAY

    for index, name in enumerate(lab.state.nodes, start=1):
        body: Any = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": f"{UNDERLAY}.{index}"},
                    {"type": "Hostname", "address": name},
                ],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }
        try:
            core.create_node(body)
        except ApiException as error:
            if error.status != 409:
                raise


def apply_crds(extensions: client.ApiextensionsV1Api) -> None:
    """Create every CustomResourceDefinition of deploy/10-crds.yaml (those already there are kept)."""
    for document in yaml.safe_load_all(CRDS.read_text()):
        if not document or document.get("kind") != "CustomResourceDefinition":
            continue
        try:
            extensions.create_custom_resource_definition(document)
        except ApiException as error:
            if error.status != 409:
                raise


def start_kubelets(lab: Lab, spawn: Any, alive: Any) -> None:
    """One `python -m lab.kubelet` per node, each waited for until its first list of Pods is applied."""
    for name in lab.state.nodes:
        start_kubelet(lab, name, spawn, alive)


def start_kubelet(lab: Lab, name: str, spawn: Any = None, alive: Any = None) -> None:
    """The kubelet stand-in of node `name`, waited for until its first list of Pods is applied (it picks up
    the sandboxes a previous one recorded and removes those whose Pod is gone). Raises LabError (from
    lab.cluster) when it exits, TimeoutError when it does not list within 60 s. `spawn`, `alive`: the lab's."""
    from lab.cluster import LabError, _alive, _spawn

    spawn, alive = spawn or _spawn, alive or _alive
    log = lab.dir / "nodes" / name / "kubelet.log"
    mark = log.stat().st_size if log.exists() else 0
    args = [sys.executable, "-m", "lab.kubelet", "--state-dir", str(lab.dir), "--node", name]
    pid = lab.state.kubelet_pids[name] = spawn(args, log)
    lab.save()

    def watching() -> bool:
        if not alive(pid):
            raise LabError(f"the kubelet of {name} exited; see {log}")
        return "watching pods" in log.read_text()[mark:]

    wait_for(watching, f"the kubelet of {name}", timeout=60)
    lab.progress(f"{name}: kubelet stand-in watching Pods with spec.nodeName={name}")


def stop_kubelet(lab: Lab, name: str) -> None:
    """Stop the kubelet stand-in of node `name`; its pods keep running (`start_kubelet` takes them up again)."""
    from lab.cluster import _stop

    _stop(lab.state.kubelet_pids.pop(name))
    lab.save()


def stop_kubelets(lab: Lab, stop: Any) -> None:
    """Stop the kubelets, then remove what they ran: their pods' port servers and namespaces (no CNI DEL:
    the nodes' switches and the controller go next)."""
    from lab.ovs import stop_pid
    from lab.sandbox import load_sandboxes, state_file

    for name, pid in lab.state.kubelet_pids.items():
        lab.progress(f"{name}: stopping the kubelet")
        stop(pid)
    lab.state.kubelet_pids = {}
    for name in lab.state.nodes:
        file = state_file(lab.dir, name)
        for box in load_sandboxes(file).values():
            if box.server_pid:
                stop_pid(box.server_pid)
            if box.container_id:
                sh("ip", "netns", "del", box.netns, check=False)
        file.unlink(missing_ok=True)


def stop_api(lab: Lab, stop: Any) -> None:
    """Stop the API server and etcd, and remove etcd's data, the certificate and the kubeconfig."""
    for what, pid in (("the API server", lab.state.apiserver_pid), ("etcd", lab.state.etcd_pid)):
        if pid:
            lab.progress(f"stopping {what} (pid {pid})")
            stop(pid)
    lab.state.apiserver_pid = lab.state.etcd_pid = None
    for directory in ("etcd", "apiserver"):
        shutil.rmtree(lab.dir / directory, ignore_errors=True)
    kubeconfig(lab).unlink(missing_ok=True)
