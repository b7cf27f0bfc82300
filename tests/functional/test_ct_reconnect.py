"""Conntrack, NAT and conjunction flows on a real br-int: installed through the controller's own path, read
back by it on reconnect as the same IR, so a reconnect sends nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import cni
from lab.cni import ControllerProcess
from lab.ovs import OvsNode, launch, wait_for
from tests.functional.test_controller import DPID, assert_switch_is_desired, wait_in_sync
from tests.unit.ct_flows import ct_flows


class CtControllerProcess(ControllerProcess):
    """The controller with its own arguments, started as `tests.functional.ct_controller` instead."""

    def start(self) -> CtControllerProcess:
        def launch_ct(args: list[str], log: Path, **options: bool) -> subprocess.Popen:
            at = args.index("controller.main")
            return launch([*args[:at], "tests.functional.ct_controller", *args[at + 1 :]], log, **options)

        cni.launch = launch_ct
        try:
            super().start()
        finally:
            cni.launch = launch
        return self


@pytest.fixture
def ct_controller(tmp_path: Path) -> Iterator[CtControllerProcess]:
    process = CtControllerProcess(tmp_path, api_host="127.0.0.1")
    try:
        yield process.start()
    finally:
        process.stop()


def test_ct_and_conjunction_flows_survive_a_reconnect_with_no_flow_mods(
    ct_controller: CtControllerProcess, ovs_node: OvsNode
) -> None:
    api = ct_controller.client
    api.put("/v1/nodes/n1", {"tunnel_ip": "192.168.77.1", "datapath_id": DPID})
    api.post("/v1/tenants", {"name": "blue"})
    api.post("/v1/tenants/blue/networks", {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"})
    ovs_node.add_bridge(DPID, ct_controller.ofp_port)
    first = wait_in_sync(ct_controller)
    assert not first.get("errors"), first

    dump = ovs_node.ofctl("dump-flows")
    for text in (
        "ct(commit,zone=NXM_NX_REG0[0..15],nat(src=192.168.10.1-192.168.10.4:1024-2047,persistent,random)",
        "exec(set_field:0x1->ct_mark,set_field:0x5->ct_label)",
        "ct(table=5,zone=NXM_NX_REG0[0..15])",
        "ct_clear,ct(table=9,zone=NXM_NX_REG0[0..15],nat)",
        "conjunction(10,1/2)",
        "conjunction(10,2/2),conjunction(11,2/3)",
        "conj_id=10",
        "load:0x1->NXM_NX_REG2[4..5]",
    ):
        assert text in dump, f"{text} not on the switch:\n{dump}"
    assert dump.count("cookie=") >= len(ct_flows())
    assert_switch_is_desired(ct_controller, ovs_node)

    before = ct_controller.node("n1")["switch"]
    ovs_node.appctl("bridge/reconnect", "br-int")
    switch = wait_for(
        lambda: (
            (s := ct_controller.node("n1")["switch"]).get("in_sync")
            and s.get("connections", 0) > before.get("connections", 0)
            and s
        ),
        "the switch to reconnect and reconcile",
        timeout=60,
    )
    assert switch["last_push"]["flow_mods"] == 0, switch
    assert_switch_is_desired(ct_controller, ovs_node)
