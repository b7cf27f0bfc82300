"""A real switch that refuses what the controller sends, and is then put right: the session resyncs with
backoff by itself until the switch holds the desired state, and endpoints on it become ready again.
Two switches claiming one datapath id: the one that answers keeps it."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cni import ControllerProcess
from lab.ovs import OvsNode, Pod, wait_for
from tests.functional.test_controller import DPID, assert_switch_is_desired, on_switch, wait_in_sync


def build(controller: ControllerProcess, node: OvsNode) -> dict[str, Pod]:
    """One tenant, one network, two pods on node n1, its switch in sync (kept small: these tests are about
    the session, and every pod costs a namespace)."""
    api = controller.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    api.post("/v1/tenants", {"name": "blue"})
    api.post("/v1/tenants/blue/networks", {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"})
    node.add_bridge(DPID, controller.ofp_port)
    pods = {}
    for endpoint_id in ("b1", "b2"):
        doc = api.post("/v1/endpoints", {"id": endpoint_id, "network": "blue/web", "node": "n1"})
        pods[endpoint_id] = node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    wait_in_sync(controller)
    return pods


def switch(controller: ControllerProcess) -> dict:
    return controller.node("n1")["switch"]


def in_sync_again(controller: ControllerProcess) -> dict:
    return wait_for(
        lambda: (s := switch(controller)).get("in_sync") and s, "the switch to be in sync again", timeout=30
    )


def test_a_refused_bundle_commit_is_resolved_at_once_and_healed_once_the_table_has_room(
    controller: ControllerProcess, ovs_node: OvsNode
) -> None:
    pods = build(controller, ovs_node)
    # Table 0 (classify) may hold no more flows than now: the next endpoint's classify flow is refused.
    held = len([line for line in ovs_node.ofctl("dump-flows", "table=0").splitlines() if "cookie=" in line])
    ovs_node.vsctl(
        "--", "--id=@t", "create", "Flow_Table", f"flow_limit={held}", "overflow_policy=refuse",
        "--", "set", "Bridge", "br-int", "flow_tables:0=@t",
    )  # fmt: skip
    api = controller.client
    started = time.monotonic()
    doc = api.post("/v1/endpoints", {"id": "b9", "network": "blue/web", "node": "n1"})
    errors = wait_for(
        lambda: [e for e in switch(controller).get("errors", []) if "for bundle commit" in e],
        "the refused bundle commit to be reported",
        timeout=60,
    )
    resolved_s = time.monotonic() - started
    print(f"refused bundle commit resolved in {resolved_s * 1000:.0f} ms")
    assert resolved_s < 5, f"{resolved_s:.1f} s for an error to answer a bundle commit"
    assert "ONFERR_ET_BUNDLE" in errors[0] or "ONFERR_ET_FAILED" in errors[0], errors
    assert any("OFPFMFC_TABLE_FULL" in e for e in switch(controller)["errors"]), switch(controller)["errors"]

    # The pod is plumbed as a CNI ADD would; the endpoint is not ready while the switch refuses its flows,
    # and the session keeps retrying with growing delays.
    pod = ovs_node.add_pod(doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"])
    not_ready = api.get("/v1/endpoints/b9/ready", wait="1")
    assert not_ready["ready"] is False, not_ready
    wait_for(lambda: switch(controller)["resyncs"] >= 3, "several resyncs")
    state = switch(controller)
    assert state["in_sync"] is False and state["connections"] == 1, state

    ovs_node.vsctl("remove", "Bridge", "br-int", "flow_tables", "0")  # room again: no manual resync
    assert api.get("/v1/endpoints/b9/ready", wait="15") == {"ready": True, "reason": None, "ofport": doc["ofport"]}
    in_sync_again(controller)
    assert_switch_is_desired(controller, ovs_node)
    assert pod.ping(pods["b1"].ip)
    # A CNI ADD after the healing: the next endpoint on the node is ready as soon as its port is there.
    late = api.post("/v1/endpoints", {"id": "b10", "network": "blue/web", "node": "n1"})
    ovs_node.add_pod(late, gateway=late["gateway"], prefix=late["prefix_len"], mtu=late["mtu"])
    assert api.get("/v1/endpoints/b10/ready", wait="10")["ready"] is True
    resyncs = switch(controller)["resyncs"]
    time.sleep(1)  # a healed session stays quiet: no resync without a failure
    assert switch(controller)["resyncs"] == resyncs


def test_a_refused_meter_mod_heals_by_itself(controller: ControllerProcess, ovs_node: OvsNode) -> None:
    build(controller, ovs_node)
    # b1's egress meter (numbered by its ofport) already exists on the switch, put there behind the controller.
    meter = controller.client.get("/v1/endpoints/b1")["ofport"]
    ovs_node.ofctl("add-meter", f"meter={meter},kbps,burst,band=type=drop,rate=5,burst_size=5")
    controller.client.post("/v1/qos", {"name": "slow", "rate_kbps": 10000, "burst_kb": 1000})
    controller.client.post("/v1/qos/slow/attachments", {"target": "b1"})
    errors = wait_for(lambda: switch(controller).get("errors"), "the refused meter-mod to be reported")
    assert any(re.search(rf"OFPMMFC_METER_EXISTS\(\d+\) for meter {meter}$", e) for e in errors), errors
    healed = in_sync_again(controller)
    assert healed["resyncs"] >= 1, healed
    assert_switch_is_desired(controller, ovs_node)
    assert "rate=10000" in ovs_node.ofctl("dump-meters")


@pytest.fixture
def second_node(tmp_path: Path) -> Iterator[OvsNode]:
    node = OvsNode("n2", tmp_path / "ovs2", index=2, control_net=f"10.{150 + os.getpid() % 100}")
    try:
        yield node.start()
    finally:
        node.close()


def test_a_second_switch_claiming_a_live_datapath_id_is_refused_until_the_first_goes(
    controller: ControllerProcess, ovs_node: OvsNode, second_node: OvsNode
) -> None:
    pods = build(controller, ovs_node)
    second_node.add_bridge(DPID, controller.ofp_port)  # the same other-config:datapath-id
    second_node.vsctl("set", "controller", "br-int", "max_backoff=1000")  # retry every second
    refused = wait_for(
        lambda: (s := switch(controller)).get("refused_connections") and s, "the second connection to be refused"
    )
    assert f"refused a connection from {second_node.node_ip} claiming datapath id {DPID:#x}" in refused["errors"][-1]
    assert f"claiming datapath id {DPID:#x}" in controller.log.read_text()
    # The first keeps its session and its flows; the second got none.
    assert refused["connections"] == 1 and refused["in_sync"], refused
    assert_switch_is_desired(controller, ovs_node)
    assert pods["b1"].ping(pods["b2"].ip)
    assert on_switch(second_node)[0] == {}

    ovs_node.close()  # the first goes away: the second is adopted at its next attempt
    adopted = wait_for(
        lambda: (s := switch(controller)).get("connections") == 2 and s.get("in_sync") and s,
        "the second switch to be adopted",
        timeout=30,
    )
    assert adopted["refused_connections"] == 0, adopted
    assert_switch_is_desired(controller, second_node)


def test_a_silent_holder_of_a_datapath_id_is_replaced_by_the_newcomer(
    controller: ControllerProcess, ovs_node: OvsNode, second_node: OvsNode
) -> None:
    build(controller, ovs_node)
    vswitchd = int((ovs_node.dir / "ovs-vswitchd.pid").read_text())
    os.kill(vswitchd, signal.SIGSTOP)  # its TCP connection stays up, but nothing answers on it
    try:
        second_node.add_bridge(DPID, controller.ofp_port)
        second_node.vsctl("set", "controller", "br-int", "max_backoff=1000")
        adopted = wait_for(
            lambda: (s := switch(controller)).get("connections") == 2 and s.get("in_sync") and s,
            "the newcomer to take over from the silent switch",
            timeout=30,
        )
        assert adopted["refused_connections"] == 0, adopted
        assert "missed 3 echo requests (1.0 s each)" in controller.log.read_text()
        assert_switch_is_desired(controller, second_node)
    finally:
        os.kill(vswitchd, signal.SIGCONT)
