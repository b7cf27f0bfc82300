"""A NetworkPolicy from the API server on real pods: the controller process watches the stand-in API server
(`--kubeconfig`), endpoints are made by the agent's POST for a pod (`k8s`), and real TCP on a real br-int
decides as the policy says; the controller says the policy is realized once its switch holds it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.client import ClientError
from lab.cni import ControllerProcess
from lab.ovs import OvsNode, launch, tcp_connects
from tests.functional.test_controller import DPID, wait_in_sync
from tests.k8s.conftest import Lab, create_network_policy, wait_for

WEB = {"tenant": "blue", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24", "namespaces": ["shop"]}
POLICY: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "web"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "vnc"}]}],
    },
}


@pytest.fixture
def watching(lab: Lab, tmp_path: Path) -> Iterator[ControllerProcess]:
    """`tenet-controller --kubeconfig` on the lab's API server, its own store and tokens."""
    state = tmp_path / "controller"
    state.mkdir()
    process = ControllerProcess(state, api_host="127.0.0.1")
    args = [
        "-m", "controller.main",
        "--ofp-host", "0.0.0.0", "--ofp-port", str(process.ofp_port),
        "--api-host", "127.0.0.1", "--api-port", str(process.api_port),
        "--store", f"sqlite:///{state}/tenet.db", "--token-file", str(process.tokens),
        "--log-level", "info", "--kubeconfig", str(lab.kubeconfig),
    ]  # fmt: skip
    process.process = launch([sys.executable, *args], process.log)
    try:
        wait_for(process._answers, "the controller's API", timeout=60)
        yield process
    finally:
        process.stop()


@pytest.fixture
def ovs_node(tmp_path: Path) -> Iterator[OvsNode]:
    node = OvsNode("n1", tmp_path / "ovs")
    try:
        yield node.start()
    finally:
        node.close()


def pod(lab: Lab, name: str, labels: dict[str, str]) -> None:
    ports = [client.V1ContainerPort(container_port=5900, name="vnc")]
    container = client.V1Container(name="c", image="busybox", ports=ports)
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(node_name="n1", containers=[container]),
    )
    lab.core.create_namespaced_pod("shop", body)


def created(controller: ControllerProcess, name: str) -> dict[str, Any] | None:
    """The agent's POST for pod shop/NAME, once the controller knows the pod's network."""
    try:
        return controller.client.post(
            "/v1/endpoints", {"id": name, "node": "n1", "k8s": {"namespace": "shop", "pod": name}}
        )
    except ClientError as error:
        assert error.status == 400 and error.field == "endpoint.k8s", error
        return None


def test_a_policy_from_the_api_server_decides_real_tcp_and_is_realized(
    lab: Lab, watching: ControllerProcess, ovs_node: OvsNode
) -> None:
    api = watching.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    lab.create("networks", "blue-web", WEB)
    lab.namespace("shop")
    for name, labels in (("server", {"app": "web"}), ("client", {"role": "client"}), ("other", {})):
        pod(lab, name, labels)
    ovs_node.add_bridge(DPID, watching.ofp_port)
    pods = {}
    for name in ("server", "client", "other"):
        doc = wait_for(lambda name=name: created(watching, name), f"endpoint {name} made")  # type: ignore[misc]
        assert doc["namespace"] == "shop" and doc["ports"] == [{"name": "vnc", "port": 5900, "protocol": "TCP"}]
        pods[name] = ovs_node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    wait_in_sync(watching)
    server, peer, other = pods["server"], pods["client"], pods["other"]
    assert tcp_connects(other, server)

    create_network_policy(client.NetworkingV1Api(lab.api), "shop", POLICY)
    wait_for(lambda: "conjunction(" in ovs_node.ofctl("dump-flows"), "the policy's flows on the switch", timeout=30)
    wait_in_sync(watching)
    ovs_node.purge_datapath_flows()  # what the agent does after a policy change; there is no agent here
    assert tcp_connects(peer, server)
    assert not tcp_connects(other, server, timeout=1)
    realized = "NetworkPolicy shop/web: Realized: installed on the switches of nodes n1"
    wait_for(lambda: realized in watching.log.read_text(), "the controller says shop/web is realized", timeout=30)

    client.NetworkingV1Api(lab.api).delete_namespaced_network_policy("web", "shop")
    wait_for(lambda: "conjunction(" not in ovs_node.ofctl("dump-flows"), "the policy's flows gone", timeout=30)
    ovs_node.purge_datapath_flows()
    assert tcp_connects(other, server)
