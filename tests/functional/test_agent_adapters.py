"""The agent's adapters against the real thing: veth pairs in real network namespaces, ports on a real OVS.

Netlink tests run the adapter from the test process, in the root namespace, with host ends and namespaces
named after the test's pid and removed afterwards whatever happens. The end-to-end test runs it as the agent
runs: from a thread inside the node's namespace, next to that node's ovs-vswitchd.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from agent.netlink import (
    HostLinkExists,
    InterfaceExists,
    Netlink,
    NetlinkError,
    NetnsMissing,
    PodInterface,
    PodView,
)
from agent.ovsdb import Ovsdb, OvsdbError, kernel_datapath_available
from lab.ovs import OvsNode, Pod, iperf_works, sh

CLONE_NEWNET = 0x40000000
DPID = 0x7E1
CONTROLLER = "tcp:127.0.0.1:6653"  # nothing listens there: fail_mode=secure keeps the bridge as it is
T = TypeVar("T")


# --- namespaces and links made by a test, undone after it ---------------------------------------------


class Scratch:
    """Namespaces and host link names for one test; `close` removes whatever of them exists."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 100000:05d}"
        self.namespaces: list[str] = []
        self.links: list[str] = []

    def netns(self) -> str:
        name = f"tna{self.tag}-{len(self.namespaces)}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def link(self) -> str:
        name = f"tx{self.tag}{len(self.links):02x}"  # <= 15 characters
        self.links.append(name)
        return name

    def close(self) -> None:
        for name in self.namespaces:
            sh("ip", "netns", "del", name, check=False)
        for name in self.links:
            if Path(f"/sys/class/net/{name}").exists():
                sh("ip", "link", "del", name, check=False)


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    made = Scratch()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def netlink() -> Iterator[Netlink]:
    adapter = Netlink()
    try:
        yield adapter
    finally:
        adapter.close()


def pod_interface(scratch: Scratch, netns: str, *, ip: str = "10.1.0.5", **changes: Any) -> PodInterface:
    host = scratch.link()
    last = int(ip.rsplit(".", 1)[1])
    pod = PodInterface(
        netns=f"/var/run/netns/{netns}",
        ifname="eth0",
        host_name=host,
        mac=f"02:00:0a:01:00:{last:02x}",
        address=f"{ip}/24",
        gateway="10.1.0.1",
        mtu=1450,
        tx_checksum_off=True,
    )
    return replace(pod, **changes)


def in_pod(netns: str, *args: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", netns, *args, check=check)


def pod_links(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(in_pod(netns, "ip", "-j", "link", "show")))


def host_link(name: str) -> dict[str, Any] | None:
    out = sh("ip", "-j", "-d", "link", "show", name, check=False)
    return json.loads(out)[0] if out.strip() else None


# --- Netlink ------------------------------------------------------------------------------------------


def test_a_pair_is_made_sized_sealed_then_up_and_promiscuous(scratch: Scratch, netlink: Netlink) -> None:
    """`make_pair` makes both ends with the MTU asked, seals the host end while it is down (no IPv6 on it at
    all, the IPv4 settings of agent/hostend.py), then sets it up and promiscuous in one change, as OVS will
    want it; the pod end is up before it, with IPv6 off and no address, so the carrier comes with the host
    end's change. An MTU under 1280 is left to `finish`: the kernel would keep no IPv6 settings for such a
    link, and raising it later would bring IPv6 back unsealed."""
    netns = scratch.netns()
    host_name = scratch.link()
    netlink.make_pair(f"/var/run/netns/{netns}", "eth0", host_name, mtu=1400)
    host = host_link(host_name)
    assert host is not None and host["mtu"] == 1400
    assert {"UP", "PROMISC", "LOWER_UP"} <= set(host["flags"])
    assert Path(f"/proc/sys/net/ipv6/conf/{host_name}/disable_ipv6").read_text().strip() == "1"
    assert Path(f"/proc/sys/net/ipv4/conf/{host_name}/rp_filter").read_text().strip() == "1"
    assert sh("ip", "-6", "addr", "show", "dev", host_name).strip() == ""  # no link-local address
    eth0 = json.loads(in_pod(netns, "ip", "-j", "addr", "show", "eth0"))[0]
    assert eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    assert eth0["addr_info"] == []  # no IPv4 address yet, and no IPv6 link-local address ever
    assert in_pod(netns, "sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6").strip() == "1"
    assert netlink.delete(host_name) is True
    for small in (1000, None):  # the kernel's MTU, and the same seal
        netlink.make_pair(f"/var/run/netns/{netns}", "eth0", host_name, mtu=small)
        host = host_link(host_name)
        assert host is not None and host["mtu"] == 1500 and {"UP", "PROMISC"} <= set(host["flags"])
        assert Path(f"/proc/sys/net/ipv6/conf/{host_name}/disable_ipv6").read_text().strip() == "1"
        assert netlink.delete(host_name) is True


def test_create_gives_the_pod_its_configured_interface_and_delete_removes_both_ends(
    scratch: Scratch, netlink: Netlink
) -> None:
    netns = scratch.netns()
    pod = pod_interface(scratch, netns)
    netlink.create(pod)

    eth0 = json.loads(in_pod(netns, "ip", "-j", "addr", "show", "eth0"))[0]
    assert eth0["address"] == pod.mac
    assert eth0["mtu"] == 1450
    assert "UP" in eth0["flags"] and eth0["operstate"] == "UP"
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [("10.1.0.5", 24)]
    # IPv6 off on it (pods are IPv4 only): no link-local address, nothing for the switch to drop
    assert not [a for a in eth0["addr_info"] if a["family"] == "inet6"]
    assert in_pod(netns, "sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6").strip() == "1"
    assert in_pod(netns, "sysctl", "-n", "net.ipv6.conf.lo.disable_ipv6").strip() == "0"  # the rest untouched
    routes = json.loads(in_pod(netns, "ip", "-j", "route", "show", "default"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.1.0.1", "eth0")]
    lo = json.loads(in_pod(netns, "ip", "-j", "link", "show", "lo"))[0]
    assert "UP" in lo["flags"]
    assert "tx-checksumming: off" in in_pod(netns, "ethtool", "-k", "eth0")

    host = host_link(pod.host_name)
    assert host is not None and host["mtu"] == 1450 and "UP" in host["flags"]
    assert host["linkinfo"]["info_kind"] == "veth"
    assert netlink.host_link_exists(pod.host_name)
    assert netlink.host_links(pod.host_name[:-2]) == [pod.host_name]
    assert netlink.inspect(pod.netns, "eth0") == PodView(
        ifname="eth0",
        mac=pod.mac,
        addresses=("10.1.0.5/24",),
        gateway="10.1.0.1",
        mtu=1450,
        up=True,
        source_gateway="10.1.0.1",
    )
    assert "from 10.1.0.5 lookup" in in_pod(netns, "ip", "rule", "show")

    assert netlink.delete(pod.host_name) is True
    assert netlink.forget_source_routes(pod.netns) == 1
    assert "from 10.1.0.5 lookup" not in in_pod(netns, "ip", "rule", "show")
    assert host_link(pod.host_name) is None
    assert pod_links(netns) == ["lo"]
    assert netlink.delete(pod.host_name) is False
    assert not netlink.host_link_exists(pod.host_name)
    assert netlink.inspect(pod.netns, "eth0") is None


def test_checksum_offload_is_left_alone_unless_asked(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    netlink.create(pod_interface(scratch, netns, tx_checksum_off=False, ifname="net1"))
    assert "tx-checksumming: on" in in_pod(netns, "ethtool", "-k", "net1")


def test_inspect_reports_what_is_really_there(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    pod = pod_interface(scratch, netns)
    netlink.create(pod)
    in_pod(netns, "ip", "link", "set", "eth0", "down")
    in_pod(netns, "ip", "addr", "add", "10.1.0.99/24", "dev", "eth0")
    view = netlink.inspect(pod.netns, "eth0")
    assert view is not None
    assert not view.up and view.gateway is None  # a link going down takes its routes along
    assert view.addresses == ("10.1.0.5/24", "10.1.0.99/24")
    assert netlink.inspect(pod.netns, "eth1") is None
    assert netlink.inspect("/var/run/netns/no-such-namespace", "eth0") is None


def test_an_existing_pod_interface_is_refused_and_nothing_is_left(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    in_pod(netns, "ip", "link", "add", "eth0", "address", "02:00:00:00:00:99", "type", "veth", "peer", "name", "other")
    pod = pod_interface(scratch, netns)
    with pytest.raises(InterfaceExists, match="eth0"):
        netlink.create(pod)
    assert host_link(pod.host_name) is None
    assert pod_links(netns) == ["eth0", "lo", "other"]
    assert json.loads(in_pod(netns, "ip", "-j", "link", "show", "eth0"))[0]["address"] == "02:00:00:00:00:99"


def test_an_existing_host_link_is_refused_and_nothing_is_left(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    pod = pod_interface(scratch, netns)
    sh("ip", "link", "add", pod.host_name, "mtu", "1400", "type", "veth", "peer", "name", scratch.link())
    with pytest.raises(HostLinkExists, match=pod.host_name):
        netlink.create(pod)
    assert pod_links(netns) == ["lo"]
    link = host_link(pod.host_name)
    assert link is not None and link["mtu"] == 1400  # the one that was there, untouched


@pytest.mark.parametrize("where", ["absent", "a file", "another namespace type"])
def test_a_missing_namespace_is_refused_before_anything_is_made(
    scratch: Scratch, netlink: Netlink, tmp_path: Path, where: str
) -> None:
    path = {
        "absent": f"/var/run/netns/tna{scratch.tag}-none",
        "a file": str(tmp_path / "not-a-namespace"),
        "another namespace type": "/proc/self/ns/mnt",
    }[where]
    Path(tmp_path / "not-a-namespace").write_text("")
    pod = replace(pod_interface(scratch, "unused"), netns=path)
    with pytest.raises(NetnsMissing, match=re.escape(path)):
        netlink.create(pod)
    assert host_link(pod.host_name) is None


def test_a_failure_midway_removes_what_was_made(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    pod = pod_interface(scratch, netns, gateway="10.9.9.1")  # not on the pod's subnet: the route is refused
    # The kernel's own words (its extended ack) come with the errno.
    why = r"default route via 10\.9\.9\.1 .*: Network is unreachable \(Nexthop has invalid gateway\)"
    with pytest.raises(NetlinkError, match=why) as raised:
        netlink.create(pod)
    assert not isinstance(raised.value, (InterfaceExists, NetnsMissing))
    assert host_link(pod.host_name) is None
    assert pod_links(netns) == ["lo"]


def test_bad_input_is_refused_before_the_kernel_is_asked(scratch: Scratch, netlink: Netlink) -> None:
    netns = scratch.netns()
    good = pod_interface(scratch, netns)
    for bad in (
        {"host_name": "a-name-longer-than-15"},
        {"ifname": "eth/0"},
        {"mac": "01:00:5e:00:00:01"},  # multicast
        {"mac": "02:00:0a:01:00"},
        {"address": "10.1.0.5"},
        {"address": "10.1.0.500/24"},
        {"gateway": "fd00::1"},
        {"address": "fd00::5/64", "gateway": "fd00::1"},  # pods are IPv4 only: the pod end's IPv6 is off
        {"mtu": 20},
    ):
        with pytest.raises(NetlinkError):
            netlink.create(replace(good, **bad))
    assert pod_links(netns) == ["lo"]
    assert host_link(good.host_name) is None


def test_sixteen_concurrent_creates_all_succeed(scratch: Scratch, netlink: Netlink) -> None:
    pods = [pod_interface(scratch, scratch.netns(), ip=f"10.1.0.{10 + i}") for i in range(16)]
    start = threading.Barrier(len(pods))
    home = os.stat("/proc/thread-self/ns/net").st_ino

    def create(pod: PodInterface) -> int:
        start.wait()
        netlink.create(pod)
        return os.stat("/proc/thread-self/ns/net").st_ino  # where the thread is afterwards

    with ThreadPoolExecutor(max_workers=len(pods)) as pool:
        assert set(pool.map(create, pods)) == {home}  # re-raises the first failure
    for pod in pods:
        view = netlink.inspect(pod.netns, "eth0")
        assert view is not None and view.mac == pod.mac and view.addresses == (pod.address,) and view.up
    assert netlink.host_links(f"tx{scratch.tag}") == sorted(pod.host_name for pod in pods)


def test_close_refuses_later_calls(netlink: Netlink) -> None:
    netlink.close()
    netlink.close()
    with pytest.raises(NetlinkError, match="closed"):
        netlink.host_links("tx")


# --- Ovsdb --------------------------------------------------------------------------------------------


@pytest.fixture
def ovsdb(ovs_node: OvsNode) -> Iterator[Ovsdb]:
    adapter = Ovsdb(ovs_node.db)
    try:
        yield adapter
    finally:
        adapter.close()


TABLES = {  # configuration columns only: statistics and status change by themselves
    "Open_vSwitch": "_uuid,bridges,next_cfg,cur_cfg",
    "Bridge": "_uuid,name,datapath_type,fail_mode,protocols,other_config,controller,ports",
    "Controller": "_uuid,target,connection_mode",
    "Port": "_uuid,name,interfaces",
    "Interface": "_uuid,name,type,options,ofport_request,ofport,external_ids",
}


def snapshot(node: OvsNode) -> dict[str, list[dict[str, Any]]]:
    """Table -> its rows as column -> value."""
    tables = {}
    for table, columns in TABLES.items():
        listing = json.loads(node.vsctl("--format=json", f"--columns={columns}", "list", table))
        tables[table] = [dict(zip(listing["headings"], row, strict=True)) for row in listing["data"]]
    return tables


def interface(node: OvsNode, name: str) -> dict[str, str]:
    columns = "type,options,ofport,ofport_request,external_ids,error"
    lines = node.vsctl(f"--columns={columns}", "list", "interface", name).splitlines()
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}


def ensure(ovsdb: Ovsdb, **changes: Any) -> None:
    spec: dict[str, Any] = {"datapath_type": "netdev", "datapath_id": DPID, "controller": CONTROLLER}
    ovsdb.ensure_bridge("br-int", **{**spec, **changes})


def test_ensure_bridge_sets_up_br_int_and_a_second_call_changes_nothing(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    ensure(ovsdb)
    assert ovs_node.vsctl("get", "bridge", "br-int", "fail_mode").strip() == "secure"
    assert ovs_node.vsctl("get", "bridge", "br-int", "datapath_type").strip() == "netdev"
    assert ovs_node.vsctl("get", "bridge", "br-int", "protocols").strip() == "[OpenFlow13]"
    assert ovs_node.vsctl("get", "bridge", "br-int", "other_config:datapath-id").strip() == '"00000000000007e1"'
    assert ovs_node.vsctl("get-controller", "br-int").strip() == CONTROLLER
    assert ovs_node.vsctl("get", "controller", "br-int", "connection_mode").strip() == "out-of-band"
    tunnel = interface(ovs_node, "tenet-tun")
    assert tunnel["type"] == "vxlan"
    assert tunnel["options"] == "{key=flow, remote_ip=flow}"
    assert tunnel["ofport_request"] == tunnel["ofport"] == "1"
    assert ovsdb.ofport("tenet-tun") == 1
    assert "dpid:00000000000007e1" in ovs_node.ofctl("show")  # vswitchd applied it all

    before = snapshot(ovs_node)
    ensure(ovsdb)
    assert snapshot(ovs_node) == before  # not even next_cfg moved

    # A changed setting is written, and only it: the tunnel port stays the same row.
    ensure(ovsdb, controller="tcp:127.0.0.1:6654", datapath_id=0x7E2)
    assert ovs_node.vsctl("get-controller", "br-int").strip() == "tcp:127.0.0.1:6654"
    assert ovs_node.vsctl("get", "bridge", "br-int", "other_config:datapath-id").strip() == '"00000000000007e2"'
    after = snapshot(ovs_node)
    assert [p["_uuid"] for p in after["Port"]] == [p["_uuid"] for p in before["Port"]]


def test_ensure_bridge_adds_the_uplink_and_reports_one_ovs_cannot_open(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    ovs_node.exec("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
    ensure(ovsdb, uplink="uplink0")
    assert ovsdb.ofport("uplink0") == 2
    assert set(ovsdb.ports("br-int")) == {"br-int", "tenet-tun", "uplink0"}
    with pytest.raises(OvsdbError, match=r"no-such-uplink.*No such device"):
        ensure(ovsdb, uplink="no-such-uplink", uplink_ofport=3)


def test_add_port_and_del_port(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    ensure(ovsdb)
    ovs_node.exec("ip", "link", "add", "tnpod0", "type", "veth", "peer", "name", "tnpod0p")
    ids = {"tenet-endpoint": "cni-0123", "tenet-netns": "/var/run/netns/x"}
    ovsdb.add_port("br-int", "tnpod0", ofport=10, external_ids=ids)
    assert ovsdb.ofport("tnpod0") == 10
    assert interface(ovs_node, "tnpod0")["ofport_request"] == "10"
    assert ovsdb.ports("br-int") == {"br-int": {}, "tenet-tun": {}, "tnpod0": ids}
    assert "tnpod0" in ovs_node.ofctl("show")

    before = snapshot(ovs_node)
    ovsdb.add_port("br-int", "tnpod0", ofport=10, external_ids=ids)  # the same again: nothing to do
    assert snapshot(ovs_node) == before
    ovsdb.add_port("br-int", "tnpod0", ofport=10, external_ids={"tenet-endpoint": "cni-4567"})
    assert ovsdb.ports("br-int")["tnpod0"] == {"tenet-endpoint": "cni-4567"}

    # Only the owner's: a port whose external_ids do not hold every item stays.
    assert ovsdb.del_port("br-int", "tnpod0", owned_by={"tenet-endpoint": "cni-0123"}) is False
    assert ovsdb.del_port("br-int", "tnpod0", owned_by={"tenet-endpoint": "cni-4567", "tenet-owner": "x"}) is False
    assert "tnpod0" in ovsdb.ports("br-int")
    assert ovsdb.del_port("br-int", "tnpod0", owned_by={"tenet-endpoint": "cni-4567"}) is True
    assert set(ovsdb.ports("br-int")) == {"br-int", "tenet-tun"}
    assert ovsdb.ofport("tnpod0") is None
    assert "tnpod0" not in ovs_node.vsctl("list-ports", "br-int")
    assert ovsdb.del_port("br-int", "tnpod0") is False
    ovsdb.del_port("no-such-bridge", "tnpod0")
    assert ovsdb.ports("no-such-bridge") == {}

    with pytest.raises(OvsdbError, match="no-such-dev"):
        ovsdb.add_port("br-int", "no-such-dev", ofport=11, external_ids={})
    assert "no-such-dev" not in ovs_node.vsctl("list-ports", "br-int")  # what it made is gone again
    with pytest.raises(OvsdbError, match="no bridge br-nope"):
        ovsdb.add_port("br-nope", "tnpod0", ofport=11, external_ids={})


def test_concurrent_add_ports_all_land(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    ensure(ovsdb)
    names = [f"tnc{i:02d}" for i in range(16)]
    for name in names:
        ovs_node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")

    def add(item: tuple[int, str]) -> None:
        number, name = item
        ovsdb.add_port("br-int", name, ofport=20 + number, external_ids={"tenet-endpoint": name})

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(add, enumerate(names)))
    assert {name: ovsdb.ofport(name) for name in names} == {name: 20 + i for i, name in enumerate(names)}
    assert {name: ids for name, ids in ovsdb.ports("br-int").items() if ids} == {
        name: {"tenet-endpoint": name} for name in names
    }


def test_add_port_without_waiting_then_wait_applied(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    ensure(ovsdb)
    ovs_node.exec("ip", "link", "add", "tnw0", "type", "veth", "peer", "name", "tnw0p")
    applied = ovsdb.add_port("br-int", "tnw0", ofport=30, external_ids={}, wait=False)
    assert isinstance(applied, int)
    ovsdb.wait_applied(applied)
    assert ovsdb.ofport("tnw0") == 30
    assert ovsdb.add_port("br-int", "tnw0", ofport=30, external_ids={}, wait=False) is None  # nothing to change
    missing = ovsdb.add_port("br-int", "tnw-missing", ofport=31, external_ids={}, wait=False)
    ovsdb.wait_applied(missing)
    assert "tnw-missing" in (ovsdb.failure("tnw-missing") or "")  # OVS says why it could not open it
    assert ovsdb.failure("tnw0") is None
    assert ovsdb.del_port("br-int", "tnw-missing") is True


def test_concurrent_port_changes_are_batched_and_a_bad_one_fails_alone(ovs_node: OvsNode, ovsdb: Ovsdb) -> None:
    """Concurrent add_port/del_port calls share transactions; one that fails (no such bridge, no such device)
    fails alone, with its own error, and the others land."""
    ensure(ovsdb)
    names = [f"tnb{i:02d}" for i in range(12)]
    for name in names:
        ovs_node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    ovsdb.add_port("br-int", names[0], ofport=40, external_ids={"tenet-endpoint": names[0]})
    commits = []
    original = ovsdb._commit_steps

    def counted(steps: list, doing: str) -> None:
        original(steps, doing)
        commits.append(len(steps))  # committed: steps that shared the transaction

    ovsdb._commit_steps = counted  # type: ignore[method-assign]

    def change(number: int) -> str:
        name = names[number]
        try:
            if number == 0:
                ovsdb.del_port("br-int", name)
            elif number == 5:
                ovsdb.add_port("br-nope", name, ofport=40 + number, external_ids={})
            elif number == 7:
                ovsdb.add_port("br-int", "tnb-missing", ofport=40 + number, external_ids={})
            else:
                ovsdb.add_port("br-int", name, ofport=40 + number, external_ids={"tenet-endpoint": name})
        except OvsdbError as error:
            return str(error)
        return "ok"

    good = [f"tng{i}" for i in range(8)]
    for name in good:
        ovs_node.exec("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    with ThreadPoolExecutor(max_workers=len(good)) as pool:  # while the first commits, the others gather
        list(pool.map(lambda name: ovsdb.add_port("br-int", name, ofport=60 + good.index(name), external_ids={}), good))
    assert max(commits, default=0) > 1, f"no two changes shared a committed transaction: {commits}"
    assert {name: ovsdb.ofport(name) for name in good} == {name: 60 + i for i, name in enumerate(good)}

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        answers = list(pool.map(change, range(len(names))))
    assert "no bridge br-nope" in answers[5]
    assert "tnb-missing" in answers[7]
    assert [a for i, a in enumerate(answers) if i not in (5, 7)] == ["ok"] * (len(names) - 2)
    landed = {n: 40 + i for i, n in enumerate(names) if i not in (0, 5, 7)}
    assert {n for n in ovsdb.ports("br-int") if n.startswith("tnb")} == set(landed)  # tnb-missing went again
    assert {n: ovsdb.ofport(n) for n in landed} == landed


def test_two_adapters_each_talk_to_their_own_server(ovs_node: OvsNode, ovsdb: Ovsdb, tmp_path: Path) -> None:
    """ovsdbapp keeps its connection on the API class: a second adapter must not reuse the first's."""
    other_node = OvsNode("n2", tmp_path / "ovs", index=2)
    try:
        other_node.start()
        other = Ovsdb(other_node.db)
        try:
            ensure(other, datapath_id=0x7E9)
            ensure(ovsdb)
            assert (
                other_node.vsctl("get", "bridge", "br-int", "other_config:datapath-id").strip() == '"00000000000007e9"'
            )
            assert ovs_node.vsctl("get", "bridge", "br-int", "other_config:datapath-id").strip() == '"00000000000007e1"'
        finally:
            other.close()
        assert set(ovsdb.ports("br-int")) == {"br-int", "tenet-tun"}  # closing one leaves the other working
        with pytest.raises(OvsdbError, match="closed"):
            other.ports("br-int")
    finally:
        other_node.close()


def test_no_server_is_an_ovsdb_error(tmp_path: Path) -> None:
    with pytest.raises(OvsdbError, match="cannot connect"):
        Ovsdb(f"unix:{tmp_path}/no-such.sock", timeout=2)


def test_kernel_datapath_probe_answers() -> None:
    loaded = Path("/sys/module/openvswitch").is_dir()
    assert kernel_datapath_available() in ((True,) if loaded else (True, False))


# --- both, as the agent uses them ----------------------------------------------------------------------


class OnThread(Protocol):
    """Runs a call on the thread and returns its result."""

    def __call__(self, call: Callable[[], T]) -> T: ...


@contextmanager
def thread_in(netns: str) -> Iterator[OnThread]:
    """Run calls on one thread that lives in `netns`, as the agent lives in its node's namespace."""
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)

    def enter() -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")

    try:
        with ThreadPoolExecutor(max_workers=1, initializer=enter) as pool:

            def on_thread(call: Callable[[], T]) -> T:
                return pool.submit(call).result()

            yield on_thread
    finally:
        os.close(fd)


def test_pods_plumbed_by_the_adapters_talk_tcp_through_the_userspace_datapath(
    ovs_node: OvsNode, ovsdb: Ovsdb, scratch: Scratch
) -> None:
    ensure(ovsdb)
    ovs_node.ofctl("add-flow", "priority=0,actions=NORMAL")  # no controller here: a plain learning switch
    pods = [pod_interface(scratch, scratch.netns(), ip=f"10.1.0.{5 + i}") for i in range(2)]
    with thread_in(ovs_node.netns) as agent_thread:
        netlink = agent_thread(Netlink)
        try:
            for number, pod in enumerate(pods):
                agent_thread(partial(netlink.create, pod))
                ovsdb.add_port("br-int", pod.host_name, ofport=10 + number, external_ids={"tenet-endpoint": "e"})
            assert host_link(pods[0].host_name) is None  # the host ends are in the node's namespace
            assert pods[0].host_name in ovs_node.exec("ip", "link", "show", pods[0].host_name)
            a, b = (Pod(f"p{i}", scratch.namespaces[i], pod.address.split("/")[0]) for i, pod in enumerate(pods))
            assert a.ping(b.ip, count=2)
            assert iperf_works(a, b)  # needs TX checksum offload off in the pods
            for pod in pods:
                ovsdb.del_port("br-int", pod.host_name)
                assert agent_thread(partial(netlink.delete, pod.host_name))
            assert agent_thread(lambda: netlink.host_links("tx")) == []
        finally:
            agent_thread(netlink.close)
