"""NetworkPolicy end to end: pods in namespaces with labels on a real br-int, a policy PUT through the
controller's API, and real TCP and ping deciding as the policy says, then as before once it is gone."""

from __future__ import annotations

from typing import Any

from lab.cni import ControllerProcess
from lab.ovs import OvsNode, tcp_connects, wait_for
from tests.functional.test_controller import DPID, wait_in_sync

POLICY = "/v1/namespaces/shop/networkpolicies/web"
DOC = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "web"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "vnc"}]}],
    },
}


def test_a_policy_lets_only_its_peers_reach_its_pods_on_its_port(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    api = controller.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    api.post("/v1/tenants", {"name": "blue"})
    api.post("/v1/tenants/blue/networks", {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"})
    api.post("/v1/namespaces", {"name": "shop", "tenant": "blue"})
    ovs_node.add_bridge(DPID, controller.ofp_port)
    pods = {}
    for name, labels in (("server", {"app": "web"}), ("client", {"role": "client"}), ("other", {})):
        body: dict[str, Any] = {"id": name, "network": "blue/web", "node": "n1", "namespace": "shop", "labels": labels}
        body["ports"] = [{"name": "vnc", "port": 5900}]
        doc = api.post("/v1/endpoints", body)
        pods[name] = ovs_node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    wait_in_sync(controller)
    server, client, other = pods["server"], pods["client"], pods["other"]
    assert tcp_connects(other, server) and other.ping(server.ip, count=1)

    api.put(POLICY, DOC)
    wait_for(lambda: "conjunction(" in ovs_node.ofctl("dump-flows"), "the policy's flows on the switch")
    wait_in_sync(controller)
    ovs_node.purge_datapath_flows()  # what the agent does after a policy change; there is no agent here
    assert tcp_connects(client, server)  # a peer, on the named port: request and answers through conntrack
    assert not tcp_connects(other, server, timeout=1)  # not a peer
    assert not client.ping(server.ip, count=1, wait=1)  # a peer, but not on the rule's port and protocol
    assert tcp_connects(server, other) and server.ping(other.ip, count=1)  # isolated for ingress only
    assert other.ping(client.ip, count=1)  # pods no policy selects are as before

    api.delete(POLICY)
    wait_for(lambda: "conjunction(" not in ovs_node.ofctl("dump-flows"), "the policy's flows gone")
    ovs_node.purge_datapath_flows()
    assert tcp_connects(other, server)
