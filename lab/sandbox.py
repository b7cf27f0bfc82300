"""What the lab's kubelet stand-in (lab/kubelet.py) records of a pod and tells the API server of it: the
sandbox record in `STATE_DIR/nodes/NODE/kubelet.json` (read by `tenet-lab status`, `matrix`, `exec`), the
pod's status documents, and the small server of its containers' ports (TCP: accept, send `NAMESPACE/NAME` and a
newline, close; UDP: answer every datagram with the same, as `tenet-lab pod add --serve` does, lab/servers.py)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.cluster import Lab, LabPod

PYTHON = "/usr/bin/python3"
SERVER = (
    "import socket,sys,threading\n"
    "name=sys.argv[1].encode()+b'\\n'\n"
    "def tcp(s):\n"
    " while True:\n"
    "  c,_=s.accept()\n"
    "  try:c.sendall(name)\n"
    "  except OSError:pass\n"
    "  c.close()\n"
    "def udp(s):\n"
    " while True:\n"
    "  d,a=s.recvfrom(65535);s.sendto(name,a)\n"
    "for spec in sys.argv[2:]:\n"
    " kind,port=spec.split(':');port=int(port)\n"
    " if kind=='TCP':\n"
    "  s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',port));s.listen(64)\n"
    "  threading.Thread(target=tcp,args=(s,),daemon=True).start()\n"
    " else:\n"
    "  s=socket.socket(type=socket.SOCK_DGRAM);s.bind(('0.0.0.0',port))\n"
    "  threading.Thread(target=udp,args=(s,),daemon=True).start()\n"
    "print('listening',flush=True)\n"
    "threading.Event().wait()\n"
)


@dataclass
class Sandbox:
    """A running pod: its network namespace, CNI sandbox id, address, network and its ports' server."""

    namespace: str
    name: str
    uid: str
    netns: str
    container_id: str
    ip: str = ""
    mac: str = ""
    network: str = ""  # TENANT/NAME, as the controller chose it
    server_pid: int | None = None  # the process serving the containers' ports
    endpoint: str = ""  # the id of the pod's endpoint, as the controller gave it
    labels: dict[str, str] = field(default_factory=dict)  # the Pod's, as last seen
    serve: list[str] = field(default_factory=list)  # "80/tcp": the served container ports (`tenet-lab matrix`)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_sandboxes(file: Path) -> dict[str, Sandbox]:
    """The sandboxes recorded in a kubelet's state file (`NAMESPACE/NAME` -> Sandbox); none if it is absent."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return {key: Sandbox(**value) for key, value in data.items()}


def lab_pods(lab: Lab) -> dict[str, LabPod]:
    """The pods the lab's kubelets run, as `tenet-lab` shows them: `NAMESPACE/NAME` -> LabPod."""
    from lab.cluster import LabPod

    pods = {}
    for node in lab.state.nodes:
        for key, box in load_sandboxes(state_file(lab.dir, node)).items():
            if box.ip:
                pods[key] = LabPod(
                    key,
                    node,
                    box.network,
                    box.netns,
                    box.container_id,
                    box.ip,
                    box.mac or None,
                    endpoint=box.endpoint or None,
                    namespace=box.namespace,
                    labels=dict(box.labels),
                    serve=list(box.serve),
                    server_pid=box.server_pid,
                )
    return pods


def state_file(state_dir: Path, node: str) -> Path:
    return state_dir / "nodes" / node / "kubelet.json"


def running_status(pod: dict[str, Any], box: Sandbox, host_ip: str) -> dict[str, Any]:
    """The Pod's `status` once its sandbox is up: Running, its IPs, the node's, the conditions a kubelet sets
    (PodScheduled, PodReadyToStartContainers, Initialized, ContainersReady, Ready) and a running
    containerStatus per container (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/)."""
    stamp = now()
    # reason and message null: the strategic merge patch (conditions merge by `type`) removes those a failed
    # sandbox left (FailedCreatePodSandBox), so a retried Pod's condition does not keep the old error
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": stamp, "reason": None, "message": None}
        for kind in ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
        {
            "name": container.get("name", ""),
            "image": container.get("image", ""),
            "imageID": "",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": stamp}},
        }
        for container in pod.get("spec", {}).get("containers", [])
    ]
    return {
        "phase": "Running",
        "podIP": box.ip,
        "podIPs": [{"ip": box.ip}],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": stamp,
        "conditions": conditions,
        "containerStatuses": containers,
    }


def failed_condition(message: str) -> dict[str, Any]:
    """The condition of a Pod whose sandbox failed: `message` is the CNI plugin's error."""
    return {
        "type": "PodReadyToStartContainers",
        "status": "False",
        "reason": "FailedCreatePodSandBox",
        "message": message,
        "lastTransitionTime": now(),
    }


def failure_event(pod: dict[str, Any], message: str, node: str) -> dict[str, Any]:
    """A core/v1 Warning Event FailedCreatePodSandBox about `pod`, from the kubelet of `node`."""
    meta = pod["metadata"]
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
        "reason": "FailedCreatePodSandBox",
        "message": message,
        "type": "Warning",
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": now(),
        "lastTimestamp": now(),
        "count": 1,
    }


def key_of(pod: dict[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def served(ports: list[str]) -> list[str]:
    """`PORT/protocol` (as `tenet-lab pod add --serve` names them, "80/tcp") of `pod_ports`' `PROTOCOL:PORT`."""
    return [f"{port}/{protocol.lower()}" for protocol, _, port in (p.partition(":") for p in ports)]


def pod_ports(spec: dict[str, Any]) -> list[str]:
    """`PROTOCOL:PORT` of every port the containers declare (TCP and UDP; SCTP is not served), each once."""
    found = []
    for container in spec.get("containers", []):
        for port in container.get("ports") or []:
            protocol = port.get("protocol", "TCP")
            if protocol in ("TCP", "UDP") and isinstance(port.get("containerPort"), int):
                found.append(f"{protocol}:{port['containerPort']}")
    return list(dict.fromkeys(found))
