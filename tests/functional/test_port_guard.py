"""A pod's port left on br-int after its endpoint went through the API, on a real switch: the next endpoint on
the node, another tenant's, gets its OpenFlow port number, and the flows of that endpoint name the number
only. The port is guarded (OFPPC_NO_RECV | OFPPC_NO_FWD), so the old pod can neither pose as the new
endpoint nor receive its traffic; the new endpoint's own port, once there, works."""

from __future__ import annotations

from lab.cni import ControllerProcess
from lab.ovs import OvsNode, Pod, wait_for
from tests.functional.test_controller import DPID, wait_in_sync


def test_an_orphaned_port_cannot_take_over_another_tenants_endpoint_on_its_number(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    api = controller.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    for tenant, network, vni in (("red", "db", 5001), ("blue", "web", 5002)):
        api.post("/v1/tenants", {"name": tenant})
        body = {"name": network, "encap": "vxlan", "vni": vni, "subnet": "10.1.0.0/24"}
        api.post(f"/v1/tenants/{tenant}/networks", body)
    ovs_node.add_bridge(DPID, controller.ofp_port)

    def pod(eid: str, network: str) -> tuple[dict, Pod]:
        doc = api.post("/v1/endpoints", {"id": eid, "network": network, "node": "n1"})
        return doc, ovs_node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])

    red_doc, red = pod("red-db", "red/db")
    _, client = pod("blue-client", "blue/web")
    wait_in_sync(controller)
    assert controller.node("n1")["switch"]["guarded_ports"] == []

    api.delete("/v1/endpoints/red-db")  # red's pod and its port stay on br-int
    wait_for(
        lambda: controller.node("n1")["switch"]["guarded_ports"] == [red_doc["port_name"]],
        "the orphaned port guarded",
    )
    blue = api.post("/v1/endpoints", {"id": "blue-web", "network": "blue/web", "node": "n1"})
    assert blue["ofport"] == red_doc["ofport"]  # the lowest free number: the orphan's
    wait_in_sync(controller)
    assert "NO_RECV NO_FWD" in ovs_node.ofctl("dump-ports-desc")

    # red's pod poses as blue's new endpoint, with its MAC and address
    red.run("ip", "link", "set", "eth0", "address", blue["mac"])
    red.run("ip", "addr", "flush", "dev", "eth0")
    red.run("ip", "addr", "add", f"{blue['ip']}/{blue['prefix_len']}", "dev", "eth0")
    assert not red.ping(client.ip, count=2, wait=1)
    assert not client.ping(blue["ip"], count=2, wait=1)

    # the orphan goes; blue's own port takes the number and works at once
    ovs_node.vsctl("del-port", "br-int", red_doc["port_name"])
    web = ovs_node.add_pod(blue, gateway=blue["gateway"], prefix=blue["prefix_len"], mtu=blue["mtu"])
    wait_for(lambda: api.get("/v1/endpoints/blue-web/ready", wait="5")["ready"], "blue-web ready")
    assert controller.node("n1")["switch"]["guarded_ports"] == []
    assert client.ping(web.ip, count=1)
