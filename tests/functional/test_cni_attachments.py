"""Containers with several interfaces, CHECK after other plugins changed things, STATUS on an exhausted pool,
interface names in bytes, DEL with a broken prevResult, and the host end in the result: through the real
plugin, agent, controller and br-int (root, userspace OVS)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service import endpoint_id
from cni import protocol
from cni.protocol import AgentError
from lab.ovs import Pod, sh, wait_for
from tests.functional.cni_support import Cluster, in_pod, start_cluster

EMPTY: dict[str, list[str]] = {"ports": [], "links": [], "endpoints": [], "flows": []}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_cluster(tmp_path_factory.mktemp("attachments")) as running:
        yield running


@pytest.fixture
def cluster(shared: Cluster) -> Iterator[Cluster]:
    """One cluster for the module (starting one takes longer than most tests here); each test leaves it as it
    found it: GC with no valid attachment releases every pod, then the pods' namespaces go."""
    runtime = shared.runtime
    try:
        yield shared
    finally:
        gc = runtime.call("GC", {**runtime.config("blue", "web"), "cni.dev/valid-attachments": []})
        runtime.close()
        runtime.namespaces.clear()
    assert gc.code == 0, gc
    assert shared.leftovers() == EMPTY


def pings(pod: str, ifname: str, ip: str) -> bool:
    """One ping from `pod` out of its interface `ifname` (so a second interface is tried, not the route's)."""
    done = in_pod(pod, "ping", "-c", "1", "-W", "2", "-I", ifname, ip, check=False)
    return done.returncode == 0


def default_routes(pod: str) -> list[dict]:
    return json.loads(in_pod(pod, "ip", "-j", "route", "show", "default").stdout)


def test_a_container_with_three_interfaces_on_two_networks(cluster: Cluster) -> None:
    """eth0 owns the default route; net1 (another network) and net2 (eth0's network) get their subnets only."""
    runtime = cluster.runtime
    web, db = runtime.config("blue", "web"), runtime.config("blue", "db")
    peer_web = cluster.pod("mw", runtime.add("mw", "blue", "web"))
    peer_db = cluster.pod("md", runtime.add("md", "blue", "db"))
    netns = runtime.pod_netns("m1")
    results = {}
    for ifname, config in (("eth0", web), ("net1", db), ("net2", web)):
        results[ifname] = runtime.call("ADD", config, container="c-m1", netns=netns, ifname=ifname)
        assert results[ifname].code == 0, (ifname, results[ifname])
    assert results["eth0"].out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    assert "routes" not in results["net1"].out and "routes" not in results["net2"].out
    assert [(r["gateway"], r["dev"]) for r in default_routes("m1")] == [("10.1.0.1", "eth0")]
    assert pings("m1", "eth0", peer_web.ip) and pings("m1", "net1", peer_db.ip) and pings("m1", "net2", peer_web.ip)
    # Peers reach every interface, from their own network and through the gateway from the other: the replies
    # of net1 and net2 leave through them (source routing), not through eth0's default route or net1's subnet.
    ip = {ifname: result.out["ips"][0]["address"].split("/")[0] for ifname, result in results.items()}
    for peer in (peer_web, peer_db):
        for ifname in ("eth0", "net1", "net2"):
            assert peer.ping(ip[ifname]), (peer.name, ifname, ip[ifname])
    rules = in_pod("m1", "ip", "rule", "show").stdout
    assert f"from {ip['net1']} lookup" in rules and f"from {ip['net2']} lookup" in rules, rules
    assert f"from {ip['eth0']} lookup" in rules, rules
    for ifname, config in (("eth0", web), ("net1", db), ("net2", web)):
        prev = {**config, "prevResult": results[ifname].out}
        checked = runtime.call("CHECK", prev, container="c-m1", netns=netns, ifname=ifname)
        assert checked.code == 0, (ifname, checked)
    # CHECK expects the source route of a second interface.
    in_pod("m1", "ip", "rule", "del", "from", ip["net1"])
    prev = {**db, "prevResult": results["net1"].out}
    checked = runtime.call("CHECK", prev, container="c-m1", netns=netns, ifname="net1")
    assert checked.code != 0 and "net1 lacks its source route" in checked.out["msg"], checked
    in_pod(
        "m1", "ip", "rule", "add", "from", ip["net1"], "lookup", rules.split(f"from {ip['net1']} lookup ")[1].split()[0]
    )
    # DEL of eth0 takes its default route with it; net1 and net2 keep working and pass CHECK.
    assert runtime.call("DEL", web, container="c-m1", netns=netns, ifname="eth0").code == 0
    assert in_pod("m1", "ip", "link", "show", "eth0", check=False).returncode != 0
    assert pings("m1", "net1", peer_db.ip) and pings("m1", "net2", peer_web.ip)
    assert peer_web.ping(ip["net1"]) and peer_db.ping(ip["net2"])
    for ifname, config in (("net1", db), ("net2", web)):
        prev = {**config, "prevResult": results[ifname].out}
        assert runtime.call("CHECK", prev, container="c-m1", netns=netns, ifname=ifname).code == 0, ifname
    for ifname, config in (("net1", db), ("net2", web)):
        assert runtime.call("DEL", config, container="c-m1", netns=netns, ifname=ifname).code == 0
        assert f"from {ip[ifname]} " not in in_pod("m1", "ip", "rule", "show").stdout, ifname  # DEL took its rule
    for name, config in (("mw", web), ("md", db)):
        assert runtime.call("DEL", config, container=f"c-{name}", netns=f"/var/run/netns/{name}").code == 0
    assert cluster.leftovers() == EMPTY


def test_check_takes_the_same_namespace_by_any_path(cluster: Cluster) -> None:
    """A bind mount of the namespace (under /var/run/netns, whose mounts reach the agent's mount namespace)
    and /proc/PID/ns/net of a process inside are the sandbox the ADD was given."""
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    out = runtime.add("pod2", "blue", "web")
    prev = {**config, "prevResult": out}
    bound = Path(f"/var/run/netns/pod2-bind-{os.getpid()}")
    bound.touch()
    sleeper = subprocess.Popen(["ip", "netns", "exec", "pod2", "sleep", "60"])
    try:
        sh("mount", "--bind", "/var/run/netns/pod2", str(bound))
        proc_path = f"/proc/{sleeper.pid}/ns/net"
        wait_for(lambda: os.stat(proc_path).st_ino == bound.stat().st_ino, "the sleeper to enter pod2")
        for path in (str(bound), proc_path):
            checked = runtime.call("CHECK", prev, container="c-pod2", netns=path)
            assert checked.code == 0, (path, checked)
        elsewhere = runtime.call("CHECK", prev, container="c-pod2", netns=runtime.pod_netns("pod3"))
        assert elsewhere.code != 0 and "prevResult lists no interface eth0" in elsewhere.out["msg"], elsewhere
    finally:
        sleeper.kill()
        sleeper.wait()
        sh("umount", str(bound), check=False)
        bound.unlink()


def test_check_allows_what_later_plugins_may_change_and_flags_what_breaks(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    peer = cluster.pod("h0", runtime.add("h0", "blue", "web"))
    out = runtime.add("h1", "blue", "web")
    prev = {**config, "prevResult": out}

    def check() -> dict:
        done = runtime.call("CHECK", prev, container="c-h1", netns="/var/run/netns/h1")
        return {} if done.code == 0 else done.out

    # Allowed: a lower MTU, an extra address, an extra route; the pod still talks.
    in_pod("h1", "ip", "link", "set", "eth0", "mtu", "1400")
    in_pod("h1", "ip", "addr", "add", "192.0.2.7/32", "dev", "eth0")
    in_pod("h1", "ip", "route", "add", "198.51.100.0/24", "via", "10.1.0.1")
    assert check() == {}
    assert Pod("h1", "h1", "").ping(peer.ip)
    # Flagged: an MTU above the network's, the interface down, the address gone.
    in_pod("h1", "ip", "link", "set", "eth0", "mtu", "1500")
    assert "MTU 1500, above the network's 1450" in check().get("msg", ""), check()
    in_pod("h1", "ip", "link", "set", "eth0", "mtu", "1450")
    assert check() == {}
    in_pod("h1", "ip", "link", "set", "eth0", "down")
    assert "is down" in check().get("msg", "")
    in_pod("h1", "ip", "link", "set", "eth0", "up")
    in_pod("h1", "ip", "route", "replace", "default", "via", "10.1.0.1")  # link down took it
    assert check() == {}
    in_pod("h1", "ip", "addr", "del", out["ips"][0]["address"], "dev", "eth0")
    assert f"lacks address {out['ips'][0]['address']}" in check().get("msg", "")


def test_status_fails_while_the_pool_is_exhausted(cluster: Cluster) -> None:
    """A /29 has five addresses for pods (six hosts, less the gateway): STATUS says so at the sixth."""
    runtime = cluster.runtime
    body = {"name": "tiny", "encap": "vxlan", "vni": 5009, "subnet": "10.9.0.0/29"}
    assert cluster.api.post("/v1/tenants/blue/networks", body)["free_addresses"] == 5
    config = runtime.config("blue", "tiny")
    for index in range(5):
        assert runtime.call("STATUS", config).code == 0, index
        runtime.add(f"t{index}", "blue", "tiny")
    assert cluster.api.get("/v1/tenants/blue/networks/tiny")["free_addresses"] == 0
    status = runtime.call("STATUS", config)
    assert status.error_code == 50 and "no IP addresses available in network blue/tiny" in status.out["msg"], status
    assert runtime.call("STATUS", runtime.config("blue", "web")).code == 0  # another network has room
    assert runtime.call("DEL", config, container="c-t0", netns="/var/run/netns/t0").code == 0
    assert runtime.call("STATUS", config).code == 0
    for index in range(1, 5):
        assert runtime.call("DEL", config, container=f"c-t{index}", netns=f"/var/run/netns/t{index}").code == 0
    cluster.api.delete("/v1/tenants/blue/networks/tiny")


def test_interface_names_are_limited_in_bytes_by_the_plugin_and_the_agent(cluster: Cluster) -> None:
    runtime = cluster.runtime
    logged = len(cluster.agent.log_text())  # the agent is the module's: only what it logs from here on counts
    netns = runtime.pod_netns("u1")
    config = runtime.config("blue", "web")
    for ifname in ("é" * 9, "àb", "a:b", ".."):
        refused = runtime.call("ADD", config, container="c-u1", netns=netns, ifname=ifname)
        assert refused.error_code == 4 and "CNI_IFNAME" in refused.out["msg"], (ifname, refused)
        assert "Traceback" not in refused.stderr
    # The agent checks too, for any client of its socket.
    request = {"verb": "ADD", "container_id": "c-u1", "ifname": "é" * 9, "netns": netns, "cni_network": "tenet"}
    request |= {"tenant": "blue", "network": "web"}
    try:
        protocol.call(runtime.socket, request, timeout=10)
        raise AssertionError("the agent took an 18-byte interface name")
    except AgentError as error:
        assert error.code == 4 and "CNI_IFNAME" in error.msg and "18 bytes" in error.msg, error.answer()
    accepted = runtime.call("ADD", config, container="c-u1", netns=netns, ifname="é" * 7)  # 14 bytes
    assert accepted.code == 0, accepted
    assert in_pod("u1", "ip", "link", "show", "é" * 7).returncode == 0
    assert runtime.call("DEL", config, container="c-u1", netns=netns, ifname="é" * 7).code == 0
    assert "Traceback" not in cluster.agent.log_text()[logged:]
    assert cluster.leftovers() == EMPTY


def test_del_cleans_up_whatever_the_prev_result(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    for index, previous in enumerate(["x", {"ips": {"a": 1}}]):
        runtime.add(f"v{index}", "blue", "web")
        done = runtime.call("DEL", {**config, "prevResult": previous}, container=f"c-v{index}", netns="")
        assert done.code == 0 and done.out == {}, (previous, done)
    assert cluster.leftovers() == EMPTY


def test_the_result_lists_the_host_end_of_the_veth(cluster: Cluster) -> None:
    out = cluster.runtime.add("e1", "blue", "web")
    port = cluster.api.get(f"/v1/endpoints/{endpoint_id('c-e1', 'eth0')}")["port_name"]
    host, pod = out["interfaces"]
    shown = json.loads(cluster.node.exec("ip", "-j", "link", "show", port))[0]
    assert host == {"name": port, "mac": shown["address"], "mtu": 1450}  # in the node: no sandbox
    assert pod["name"] == "eth0" and pod["sandbox"] == "/var/run/netns/e1"
    assert [ip["interface"] for ip in out["ips"]] == [1]
