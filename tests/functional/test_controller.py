"""The controller against a real br-int: desired state on the switch, real packets, restarts without loss."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from controller.client import ClientError
from controller.pipeline.cookies import ROUND_MASK, ROUND_SHIFT
from controller.pipeline.tables import PIPELINE
from lab.cni import ControllerProcess
from lab.ovs import OvsNode, Pod, iperf_works, wait_for

DPID = 0x7E1
FLOW = re.compile(r"cookie=(0x[0-9a-f]+), .*?table=(\d+), .*?priority=(\d+)")
Flows = Counter[tuple[str, int, int]]  # (table, priority, cookie without round) -> how many


def build(controller: ControllerProcess, node: OvsNode) -> dict[str, Pod]:
    """Two tenants with identical subnets on one node, and a pod for every endpoint."""
    api = controller.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    for tenant, vni in (("blue", 5001), ("red", 6001)):
        api.post("/v1/tenants", {"name": tenant})
        api.post(
            f"/v1/tenants/{tenant}/networks", {"name": "web", "encap": "vxlan", "vni": vni, "subnet": "10.1.0.0/24"}
        )
    endpoints = [("b1", "blue/web"), ("b2", "blue/web"), ("r1", "red/web"), ("r2", "red/web"), ("r3", "red/web")]
    node.add_bridge(DPID, controller.ofp_port)
    pods = {}
    for endpoint_id, network in endpoints:
        doc = api.post("/v1/endpoints", {"id": endpoint_id, "network": network, "node": "n1"})
        pods[endpoint_id] = node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    wait_in_sync(controller)
    return pods


def wait_in_sync(controller: ControllerProcess) -> dict:
    def synced() -> dict | None:
        switch = controller.node("n1").get("switch") or {}
        assert not switch.get("errors"), switch
        return switch if switch.get("connected") and switch.get("in_sync") else None

    status = wait_for(synced, "the switch to be in sync", timeout=60)
    # in_sync comes with a reconcile; changes made meanwhile may still be queued for the switch. A verification
    # runs on the switch's session after every change queued before it: then the switch has them all.
    controller.client.get("/v1/nodes/n1/flows", verify="1")
    return status


def desired(controller: ControllerProcess) -> tuple[Flows, set[str], set[str]]:
    text = controller.client.get("/v1/nodes/n1/flows")["flows"]
    flows: Flows = Counter()
    groups: set[str] = set()
    meters: set[str] = set()
    for line in text.splitlines():
        if line.startswith("cookie="):
            found = re.match(r"cookie=(0x[0-9a-f]+),table=(\w+),priority=(\d+)", line)
            assert found is not None, line
            flows[(found.group(2), int(found.group(3)), int(found.group(1), 16))] += 1
        elif line.startswith("group_id="):
            groups.add(line.split(",")[0].split("=")[1])
        elif line.startswith("meter="):
            meters.add(line.split(",")[0].split("=")[1])
    return flows, groups, meters


def on_switch(node: OvsNode) -> tuple[Flows, set[int], set[str], set[str]]:
    """Flows as (table, priority, cookie without round), the rounds seen, group ids and meter ids."""
    flows: Flows = Counter()
    rounds: set[int] = set()
    for line in node.ofctl("dump-flows").splitlines():
        found = FLOW.search(line)
        if found:
            cookie = int(found.group(1), 16)
            rounds.add(cookie >> ROUND_SHIFT)
            flows[(PIPELINE.names[int(found.group(2))], int(found.group(3)), cookie & ~ROUND_MASK)] += 1
    groups = set(re.findall(r"group_id=(\d+)", node.ofctl("dump-groups")))
    meters = set(re.findall(r"meter=(\d+)", node.ofctl("dump-meters")))
    return flows, rounds, groups, meters


def assert_switch_is_desired(controller: ControllerProcess, node: OvsNode) -> int:
    want_flows, want_groups, want_meters = desired(controller)
    have_flows, rounds, have_groups, have_meters = on_switch(node)
    assert have_flows == want_flows, f"extra {have_flows - want_flows}, missing {want_flows - have_flows}"
    assert (have_groups, have_meters) == (want_groups, want_meters)
    assert len(rounds) == 1, f"flows of several rounds on the switch: {rounds}"
    return rounds.pop()


def test_switch_matches_desired_state_after_connect_change_and_restart(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    pods = build(controller, ovs_node)
    first_round = assert_switch_is_desired(controller, ovs_node)
    assert pods["b1"].ping(pods["b2"].ip)

    # A model change is pushed incrementally: a QoS profile on one endpoint, one endpoint fewer.
    controller.client.post("/v1/qos", {"name": "slow", "rate_kbps": 10000, "burst_kb": 1000})
    controller.client.post("/v1/qos/slow/attachments", {"target": "b1"})
    controller.client.delete("/v1/endpoints/r2")
    wait_for(lambda: on_switch(ovs_node)[0] == desired(controller)[0], "the change to reach the switch")
    assert_switch_is_desired(controller, ovs_node)

    # A restarted controller restores the model from its store and works in a new round, with no leftovers.
    controller.stop()
    controller.start()
    wait_for(lambda: on_switch(ovs_node)[1] == {first_round + 1}, "the new round on the switch", timeout=60)
    assert assert_switch_is_desired(controller, ovs_node) == first_round + 1


def test_pods_talk_within_a_tenant_and_never_across(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    pods = build(controller, ovs_node)
    b1, b2, r1, r3 = pods["b1"], pods["b2"], pods["r1"], pods["r3"]
    assert b1.ip == r1.ip  # identical subnets, identical addresses
    assert b1.ping(b2.ip, count=2)
    assert iperf_works(b1, b2)
    assert r1.ping(r3.ip, count=2)  # red's own third address works for red...
    assert r3.ip not in (b1.ip, b2.ip)
    assert not b1.ping(r3.ip, count=2)  # ...and is unreachable from blue
    assert not iperf_works(b1, r3)


def test_qos_limits_throughput(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    pods = build(controller, ovs_node)
    controller.client.post("/v1/qos", {"name": "slow", "rate_kbps": 10000, "burst_kb": 1000})
    controller.client.post("/v1/qos/slow/attachments", {"target": "b1"})
    wait_for(lambda: on_switch(ovs_node)[3], "the meter on the switch")
    server = pods["b2"].popen("iperf3", "-s", "-1", "-B", pods["b2"].ip, "-J")
    try:
        wait_for(lambda: "iperf3" in pods["b2"].run("ss", "-ltnp", check=False), "iperf3 to listen")
        result = json.loads(pods["b1"].run("iperf3", "-c", pods["b2"].ip, "-t", "3", "-J", timeout=60))
    finally:
        server.kill()
        server.wait(timeout=10)
    mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
    assert 1.0 < mbps < 13.0, f"{mbps:.1f} Mbit/s through a 10 Mbit/s meter"  # capped, yet flowing


def test_reconnect_sends_no_flow_mods(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    build(controller, ovs_node)
    before = controller.node("n1")["switch"]
    # Drop the connection, keeping the controller configured (removing it would make OVS flush the flows).
    ovs_node.appctl("bridge/reconnect", "br-int")
    switch = wait_for(
        lambda: (
            (s := controller.node("n1")["switch"]).get("in_sync")
            and s.get("connections", 0) > before.get("connections", 0)
            and s
        ),
        "the switch to reconnect and reconcile",
    )
    assert switch["last_push"]["flow_mods"] == 0, switch
    # Every flow was found right by its bytes (controller.openflow.dump_compare), none had to be decoded.
    flows = [line for line in ovs_node.ofctl("dump-flows", "--no-stats").splitlines() if "actions=" in line]
    assert switch["verified_flows"] == len(flows) > 0, switch
    assert_switch_is_desired(controller, ovs_node)


def test_kill_9_and_restart_lose_no_packet(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    pods = build(controller, ovs_node)
    first_round = assert_switch_is_desired(controller, ovs_node)
    ping = pods["b1"].popen("ping", "-i", "0.05", "-c", "200", pods["b2"].ip)
    try:
        time.sleep(1)  # traffic flows before the controller dies
        controller.kill9()
        time.sleep(2)  # and while it is dead: fail_mode=secure keeps the flows
        controller.start()
        wait_for(lambda: on_switch(ovs_node)[1] == {first_round + 1}, "the new round", timeout=60)
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
    assert " 0% packet loss" in out, out
    assert re.search(r"200 packets transmitted, 200 received", out), out
    assert assert_switch_is_desired(controller, ovs_node) == first_round + 1


@pytest.mark.parametrize("bad", [{"vni": 5001}, {"subnet": "10.1.0.128/25"}])
def test_conflicting_networks_are_refused_through_the_controller(controller: ControllerProcess, bad: dict) -> None:
    api = controller.client
    api.post("/v1/tenants", {"name": "blue"})
    api.post("/v1/tenants/blue/networks", {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"})
    network = {"name": "other", "encap": "vxlan", "vni": 5002, "subnet": "10.2.0.0/24", **bad}
    with pytest.raises(ClientError) as raised:
        api.post("/v1/tenants/blue/networks", network)
    assert raised.value.status == 409
    assert [n["name"] for n in api.get("/v1/networks")] == ["web"]


def test_switch_errors_are_reported_with_what_caused_them_and_healed(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    build(controller, ovs_node)
    api = controller.client
    # A group the next network will need already exists on the switch, put there behind the controller's back.
    api.post("/v1/tenants/blue/networks", {"name": "db", "encap": "vxlan", "vni": 5002, "subnet": "10.9.0.0/24"})
    network_id = api.get("/v1/tenants/blue/networks/db")["id"]
    ovs_node.ofctl("add-group", f"group_id={network_id << 1},type=all,bucket=actions=drop")
    api.post("/v1/endpoints", {"id": "d1", "network": "blue/db", "node": "n1"})
    errors = wait_for(lambda: controller.node("n1")["switch"].get("errors"), "the switch's error to be reported")
    assert any(f"OFPGMFC_GROUP_EXISTS(0) for group {network_id << 1}" in error for error in errors), errors
    # The session resyncs by itself: the dump shows the group, and the resync sets it as desired.
    healed = wait_for(lambda: (s := controller.node("n1")["switch"]).get("in_sync") and s, "the switch to heal")
    assert healed["resyncs"] >= 1, healed
    assert_switch_is_desired(controller, ovs_node)


def test_a_port_numbered_other_than_planned_is_reported(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    build(controller, ovs_node)
    doc = controller.client.post("/v1/endpoints", {"id": "b3", "network": "blue/web", "node": "n1"})
    wrong = doc["ofport"] + 50
    ovs_node.exec("ip", "link", "add", doc["port_name"], "type", "veth", "peer", "name", "b3peer")
    ovs_node.vsctl(
        "add-port", "br-int", doc["port_name"], "--", "set", "interface", doc["port_name"], f"ofport_request={wrong}"
    )
    errors = wait_for(lambda: controller.node("n1")["switch"].get("errors"), "the port mismatch to be reported")
    assert errors == [f"port {doc['port_name']} is OpenFlow port {wrong} on the switch, but flows use {doc['ofport']}"]


def test_an_endpoint_is_ready_once_its_port_and_flows_are_on_the_switch(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    pods = build(controller, ovs_node)
    api = controller.client
    doc = api.post("/v1/endpoints", {"id": "b9", "network": "blue/web", "node": "n1"})
    waiting = api.get("/v1/endpoints/b9/ready", wait="0")
    assert waiting == {
        "ready": False,
        "reason": f"port {doc['port_name']} is not on the switch of node n1 yet",
        "ofport": None,
    }
    pod = ovs_node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    assert api.get("/v1/endpoints/b9/ready", wait="10") == {"ready": True, "reason": None, "ofport": doc["ofport"]}
    assert pod.ping(pods["b1"].ip)  # ready means it talks


def test_a_node_registering_again_with_another_datapath_id_keeps_its_switch(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    pods = build(controller, ovs_node)
    api = controller.client

    def synced_as(dpid: int) -> bool:
        switch = controller.node("n1").get("switch") or {}
        return bool(switch.get("in_sync")) and switch.get("datapath_id") == f"{dpid:#x}"

    # The bridge first, then the registration: the switch that connected as nobody is matched on the change.
    new = DPID + 1
    ovs_node.vsctl("set", "bridge", "br-int", f"other-config:datapath-id={new:016x}")
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.9", "datapath_id": new})
    wait_for(lambda: synced_as(new), "the switch to be matched by its new datapath id", timeout=60)
    assert_switch_is_desired(controller, ovs_node)
    assert pods["b1"].ping(pods["b2"].ip)
    # The registration first, then the bridge: the old connection is no longer the node's.
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    assert controller.node("n1")["switch"] == {"connected": False}
    ovs_node.vsctl("set", "bridge", "br-int", f"other-config:datapath-id={DPID:016x}")
    wait_for(lambda: synced_as(DPID), "the switch to be matched by its datapath id again", timeout=60)
    assert_switch_is_desired(controller, ovs_node)
    assert pods["r1"].ping(pods["r2"].ip)
