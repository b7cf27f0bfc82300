"""NetworkPolicy and the node's own host stack, traced in the simulator: "traffic to and from the node where
a Pod is running is always allowed" (the Kubernetes documentation "Network Policies"), and only that node's,
from the gateway port's own address."""

from __future__ import annotations

from controller.pipeline.compile import Compiler
from controller.pipeline.simulate import SimNetwork, gateway_endpoint
from tests.unit.test_gateway import cluster_model, ip, tcp
from topology.model import GATEWAY_OFPORT, Model

NODE1, NODE2 = ip("192.168.50.1"), ip("192.168.50.2")


def deny_all(*types: str) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-" + "-".join(t.lower() for t in types), "namespace": "app"},
        "spec": {"podSelector": {}, "policyTypes": list(types)},
    }


def isolated_model(*types: str) -> Model:
    """The gateway test cluster with pods q1 (on n1) and q2 (on n2) of the cluster network in namespace
    `app`, every pod of which a default-deny policy of `types` isolates."""
    model = cluster_model()
    model.add_namespace("app", tenant="default")
    model.add_endpoint("q1", network="default/pods", node="n1", namespace="app")
    model.add_endpoint("q2", network="default/pods", node="n2", namespace="app")
    model.apply_policy(deny_all(*types))
    return model


def network_of(model: Model) -> SimNetwork:
    return SimNetwork(model, Compiler(model).compile_all())


def test_the_own_host_reaches_an_ingress_isolated_pod_and_gets_its_reply() -> None:
    model = isolated_model("Ingress")
    sim = network_of(model)
    cluster, q1 = model.networks["default/pods"], model.endpoints["q1"]
    syn = tcp(NODE1, int(q1.ip), 40000, 8080, cluster.gateway_mac)
    assert sim.send_from("n1", GATEWAY_OFPORT, syn).delivered_to == ["q1"]
    reply = sim.send("q1", tcp(int(q1.ip), NODE1, 8080, 40000, cluster.gateway_mac, q1.mac))
    assert reply.delivered_to == [gateway_endpoint("n1")]
    # a pod of the same network is still denied: the exemption is the node's
    p1 = model.endpoints["p1"]
    assert sim.send("p1", tcp(int(p1.ip), int(q1.ip), 1234, 8080, q1.mac, p1.mac)).delivered_to == []


def test_another_source_at_the_gateway_port_and_another_nodes_host_stay_denied() -> None:
    model = isolated_model("Ingress")
    sim = network_of(model)
    cluster, q1, q2 = model.networks["default/pods"], model.endpoints["q1"], model.endpoints["q2"]
    outside = tcp(ip("203.0.113.10"), int(q1.ip), 40000, 8080, cluster.gateway_mac)  # routed in, not masqueraded
    assert sim.send_from("n1", GATEWAY_OFPORT, outside).delivered_to == []
    # n1's host reaches q2 on n2 only through the tunnel, where it is not n2's own host
    assert (
        sim.send_from("n1", GATEWAY_OFPORT, tcp(NODE1, int(q2.ip), 40000, 8080, cluster.gateway_mac)).delivered_to == []
    )
    # n2's address entering n1's gateway port is not n1's host either
    assert (
        sim.send_from("n1", GATEWAY_OFPORT, tcp(NODE2, int(q1.ip), 40000, 8080, cluster.gateway_mac)).delivered_to == []
    )
    # while n2's own host reaches q2
    assert sim.send_from(
        "n2", GATEWAY_OFPORT, tcp(NODE2, int(q2.ip), 40000, 8080, cluster.gateway_mac)
    ).delivered_to == ["q2"]


def test_an_egress_isolated_pod_reaches_its_own_node_and_no_other() -> None:
    model = isolated_model("Egress")
    sim = network_of(model)
    cluster, q1 = model.networks["default/pods"], model.endpoints["q1"]
    to_host = sim.send("q1", tcp(int(q1.ip), NODE1, 5000, 10250, cluster.gateway_mac, q1.mac))
    assert to_host.delivered_to == [gateway_endpoint("n1")]
    back = tcp(NODE1, int(q1.ip), 10250, 5000, cluster.gateway_mac)
    assert sim.send_from("n1", GATEWAY_OFPORT, back).delivered_to == ["q1"]
    assert sim.send("q1", tcp(int(q1.ip), NODE2, 5000, 10250, cluster.gateway_mac, q1.mac)).delivered_to == []
    p2 = model.endpoints["p2"]
    assert sim.send("q1", tcp(int(q1.ip), int(p2.ip), 5000, 80, cluster.gateway_mac, q1.mac)).delivered_to == []


def test_without_isolation_the_node_flows_change_nothing() -> None:
    model = cluster_model()
    sim = network_of(model)
    cluster, p1 = model.networks["default/pods"], model.endpoints["p1"]
    syn = tcp(ip("203.0.113.10"), int(p1.ip), 40000, 8080, cluster.gateway_mac)
    assert sim.send_from("n1", GATEWAY_OFPORT, syn).delivered_to == ["p1"]
