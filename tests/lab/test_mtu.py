"""Two nodes, one tenant with a VLAN and a VXLAN network: real packets at the MTU's edge across the routed path,
and `tenetctl flows` comparing a fresh dump of the switch with the desired state."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.client import ClientError
from lab.cluster import Lab, LabError
from lab.ovs import Pod

CONFIG = {
    "tenants": [
        {
            "name": "blue",
            "networks": [
                {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"},
                {"name": "db", "encap": "vlan", "vlan": 101, "subnet": "10.2.0.0/24"},
            ],
        }
    ],
    "qos": [],
}
MTU = 1450  # a 1500-byte underlay less 50 bytes of VXLAN, for both networks of the tenant
MAX_PAYLOAD = MTU - 20 - 8  # ping -s: the ICMP payload, without the IPv4 and ICMP headers


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(Path(tmp_path_factory.mktemp("mtu")))
    try:
        lab.up(2, CONFIG)
        lab.pod_add("d", "node1", "blue/db")  # VLAN on node1
        lab.pod_add("b", "node2", "blue/web")  # VXLAN on node2: d <-> b is routed, and crosses nodes
        yield lab
    finally:
        lab.down()


def pod(lab: Lab, name: str) -> Pod:
    return lab.state.pods[name].as_pod()


def ping(source: Pod, target: str, size: int, *, fragment: str, wait: int = 3) -> tuple[bool, str, float]:
    """One ping of `size` payload bytes with -M `fragment`: (answered, ping's output, seconds it took)."""
    started = time.monotonic()
    args = ["ip", "netns", "exec", source.netns, "ping", "-c", "1", "-W", str(wait), "-M", fragment, "-s", str(size)]
    done = subprocess.run([*args, target], capture_output=True, text=True, timeout=wait + 10, check=False)
    return done.returncode == 0, done.stdout + done.stderr, time.monotonic() - started


def test_the_tenant_has_one_mtu_and_the_nodes_report_theirs(lab: Lab) -> None:
    networks = {n["key"]: n["mtu"] for n in lab.client.get("/v1/networks")}
    assert networks == {"blue/web": MTU, "blue/db": MTU}
    for node in lab.client.get("/v1/nodes"):  # read by each agent from br-phy (the tunnel IP's) and vl0
        assert (node["underlay_mtu"], node["uplink_mtu"]) == (1500, 1500), node
    for name in ("d", "b"):
        assert f"mtu {MTU} " in pod(lab, name).run("ip", "link", "show", "eth0")


@pytest.mark.parametrize(("source", "target"), [("d", "b"), ("b", "d")])
def test_the_largest_packet_crosses_the_routed_path_and_a_larger_one_fails_at_once(
    lab: Lab, source: str, target: str
) -> None:
    sender, address = pod(lab, source), lab.state.pods[target].ip
    assert address is not None
    answered, out, _ = ping(sender, address, MAX_PAYLOAD, fragment="do")
    if not answered:  # the first packet of a new flow can be lost while userspace OVS resolves the tunnel's ARP
        answered, out, _ = ping(sender, address, MAX_PAYLOAD, fragment="do")
    assert answered, out
    answered, out, took = ping(sender, address, MAX_PAYLOAD + 1, fragment="do", wait=5)
    assert not answered and "message too long" in out and f"mtu={MTU}" in out, out
    assert took < 3, f"the sender waited {took:.1f} s instead of failing at once: {out}"
    for size in (MAX_PAYLOAD + 1, 4000, 8000):  # fragmented by the sender, reassembled by the receiver
        answered, out, _ = ping(sender, address, size, fragment="dont")
        assert answered, out
    for name in lab.state.nodes:  # no frame was too big for the underlay anywhere: nothing dropped on the way
        log = (lab.node(name).dir / "ovs-vswitchd.log").read_text()
        assert "Message too long" not in log, f"{name}: {log[-2000:]}"


def test_a_network_mtu_the_underlay_cannot_carry_is_refused(lab: Lab) -> None:
    body = {"name": "big", "encap": "vxlan", "vni": 5009, "subnet": "10.9.0.0/24", "mtu": 9000}
    with pytest.raises(ClientError) as refused:
        lab.client.post("/v1/tenants/blue/networks", body)
    assert "network.mtu" in str(refused.value) and "576..1450" in str(refused.value)
    body = {"name": "small", "encap": "vlan", "vlan": 109, "subnet": "10.9.0.0/24", "mtu": 1400}
    with pytest.raises(ClientError) as refused:
        lab.client.post("/v1/tenants/blue/networks", body)
    assert "network.mtu" in str(refused.value) and "differs from 1450" in str(refused.value)
    assert sorted(n["key"] for n in lab.client.get("/v1/networks")) == ["blue/db", "blue/web"]


def tenetctl(lab: Lab, *args: str) -> tuple[int, str]:
    env = {**os.environ, "TENET_SERVER": f"http://127.0.0.1:{lab.state.api_port}", "TENET_TOKEN": lab.state.token}
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout


def differences(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"# (missing|extra|want|have):", line)]


def test_flows_compares_a_fresh_dump_with_the_desired_state(lab: Lab) -> None:
    # The controller repairs a switch only when it (re)connects, so what is done here behind its back stays
    # until the comparison has seen it; each step undoes itself before the next.
    node = lab.node("node1")
    status, out = tenetctl(lab, "flows", "node1")
    assert status == 0 and out.startswith("# OVS holds exactly that (dumped now: "), out

    node.ofctl("add-flow", "cookie=0x0,table=0,priority=1234,ip,nw_dst=10.99.99.99,actions=drop")
    node.ofctl("add-flow", "cookie=0x77,table=200,priority=5,in_port=9,actions=output:3")  # beyond the pipeline
    status, out = tenetctl(lab, "flows", "node1")
    assert status == 1 and "# OVS DIFFERS" in out
    assert differences(out) == [
        "# extra:   cookie=0x0,table=classify,priority=1234,eth_type=0x0800,nw_dst=10.99.99.99 actions=drop",
        "# extra:   cookie=0x77,table=200,priority=5,in_port=9 actions=output:3",
    ], out
    node.ofctl("--strict", "del-flows", "table=0,priority=1234,ip,nw_dst=10.99.99.99")
    node.ofctl("--strict", "del-flows", "table=200,priority=5,in_port=9")
    assert tenetctl(lab, "flows", "node1")[0] == 0

    listing = node.ofctl("--no-stats", "--no-names", "dump-flows", "table=0").splitlines()
    line = next(f.strip() for f in listing if "in_port=" in f)  # cookie=C, table=0, priority=P,in_port=N actions=A
    spec = line.split(" actions=")[0].split(", ", 1)[1].replace(" ", "")  # table=0,priority=P,in_port=N
    node.ofctl("--strict", "del-flows", spec)
    try:
        status, out = tenetctl(lab, "flows", "node1")
        found = differences(out)
        port = spec.split("in_port=")[1].split(",")[0]
        assert status == 1 and len(found) == 1 and found[0].startswith("# missing: "), out
        assert f"in_port={port}" in found[0] and "table=classify" in found[0], (spec, found)
    finally:
        node.ofctl("add-flow", line.replace(", ", ",").replace(" actions=", ",actions="))  # as it was
    assert tenetctl(lab, "flows", "node1")[0] == 0

    node.ofctl("--strict", "mod-flows", f"{spec},actions=drop")  # same match and cookie, other actions
    try:
        status, out = tenetctl(lab, "flows", "node1")
        found = differences(out)
        assert status == 1 and [f.split(":")[0] for f in found] == ["# want", "# have"], out
        assert found[1].endswith(" actions=drop") and not found[0].endswith(" actions=drop"), found
        assert found[0].split(" actions=")[0] == found[1].split(" actions=")[0].replace("# have", "# want"), found
    finally:
        node.ofctl("add-flow", line.replace(", ", ",").replace(" actions=", ",actions="))
    assert tenetctl(lab, "flows", "node1")[0] == 0


def test_an_agent_whose_uplink_is_too_small_is_refused_and_says_why(lab: Lab) -> None:
    node = lab.node("node2")
    log = lab.dir / "nodes" / "node2" / "agent.log"
    lab.kill_agent("node2")
    node.exec("ip", "link", "set", "vl0", "mtu", "1400")  # less than blue/db's 1450
    try:
        mark = log.stat().st_size
        with pytest.raises(LabError, match="the agent of node2 exited"):
            lab.start_agent("node2")
        said = log.read_text()[mark:]
        assert "node.uplink_mtu: MTU 1400 is too small for network 'blue/db' (MTU 1450)" in said, said
        assert lab.client.get("/v1/nodes/node2")["uplink_mtu"] == 1500  # the node as it was
    finally:
        node.exec("ip", "link", "set", "vl0", "mtu", "1500")
    lab.start_agent("node2")
    assert ping(pod(lab, "b"), lab.state.pods["d"].ip or "", MAX_PAYLOAD, fragment="do")[0]
