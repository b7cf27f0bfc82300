"""Pods through the real plugin, the real agent, the real controller and a real br-int (root, userspace OVS)."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

from agent.service import endpoint_id, host_name
from lab.ovs import Pod, sh, tcp_connects, wait_for
from tests.functional.cni_support import Cluster, Runtime, in_pod


def test_pods_get_what_the_result_says_and_tenants_stay_apart(cluster: Cluster) -> None:
    placements = {
        "b1": ("blue", "web"),
        "b2": ("blue", "web"),
        "d1": ("blue", "db"),
        "r1": ("red", "web"),
        "r2": ("red", "web"),
        "r3": ("red", "web"),
    }
    pods, results = {}, {}
    for name, (tenant, network) in placements.items():
        results[name] = cluster.runtime.add(name, tenant, network)
        pods[name] = cluster.pod(name, results[name])
    # The pod holds exactly what the result says: address, MAC, default route, MTU.
    for name, out in results.items():
        interface = out["interfaces"][-1]
        shown = json.loads(in_pod(name, "ip", "-j", "addr", "show", "eth0").stdout)[0]
        assert shown["address"] == interface["mac"]
        ipv4 = [f"{a['local']}/{a['prefixlen']}" for a in shown["addr_info"] if a["family"] == "inet"]
        assert ipv4 == [out["ips"][0]["address"]]
        assert shown["mtu"] == 1450 == interface["mtu"]
        route = json.loads(in_pod(name, "ip", "-j", "route", "show", "default").stdout)[0]
        assert route["gateway"] == out["ips"][0]["gateway"] == out["routes"][0]["gw"]
    assert pods["b1"].ip == pods["r1"].ip == "10.1.0.2"  # the same address in two tenants
    # Same network and same tenant reach each other (ping and TCP); the other tenant never does.
    for client, server in (("b1", "b2"), ("b2", "b1"), ("b1", "d1"), ("d1", "b2")):
        assert pods[client].ping(pods[server].ip), (client, server)
        assert tcp_connects(pods[client], pods[server]), (client, server)
    # Only addresses the sender's tenant lacks say anything: 10.1.0.2 is b1 for blue and r1 for red.
    assert (pods["r3"].ip, pods["d1"].ip) == ("10.1.0.4", "10.2.0.2")
    assert pods["r1"].ping(pods["r2"].ip)
    for client, server in (("b1", "r3"), ("d1", "r3"), ("r1", "d1"), ("r3", "d1")):
        assert not pods[client].ping(pods[server].ip, wait=1), (client, server)
        assert not tcp_connects(pods[client], pods[server], timeout=1), (client, server)


def test_check_passes_then_fails_when_the_route_or_the_port_goes(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    outs = {}
    for name in ("k1", "k2"):
        outs[name] = runtime.add(name, "blue", "web")
        netns = f"/var/run/netns/{name}"
        checked = runtime.call("CHECK", {**config, "prevResult": outs[name]}, container=f"c-{name}", netns=netns)
        assert checked.code == 0, checked
    in_pod("k1", "ip", "route", "del", "default")
    broken = runtime.call("CHECK", {**config, "prevResult": outs["k1"]}, container="c-k1", netns="/var/run/netns/k1")
    assert broken.code != 0 and "default route" in broken.out["msg"], broken
    port = cluster.api.get(f"/v1/endpoints/{endpoint_id('c-k2', 'eth0')}")["port_name"]
    cluster.node.vsctl("del-port", "br-int", port)
    broken = runtime.call("CHECK", {**config, "prevResult": outs["k2"]}, container="c-k2", netns="/var/run/netns/k2")
    assert broken.code != 0 and f"OVS port {port} is missing" in broken.out["msg"], broken


def test_del_twice_after_the_namespace_and_without_prev_result_leaves_nothing(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    outs = {name: runtime.add(name, "blue", "web") for name in ("x1", "x2", "x3")}
    assert all(cluster.leftovers().values())  # there is something to remove
    # x1: DEL with its prevResult, twice
    for _ in range(2):
        done = runtime.call("DEL", {**config, "prevResult": outs["x1"]}, container="c-x1", netns="/var/run/netns/x1")
        assert done.code == 0 and done.out == {}, done
    # x2: the namespace is gone first, as when a pod's sandbox died; the runtime passes no netns
    runtime.namespaces.remove("x2")
    sh("ip", "netns", "del", "x2")
    assert runtime.call("DEL", config, container="c-x2", netns="").code == 0
    # x3: DEL without prevResult
    assert runtime.call("DEL", config, container="c-x3", netns="/var/run/netns/x3").code == 0
    assert cluster.leftovers() == {"ports": [], "links": [], "endpoints": [], "flows": []}
    # The addresses are free again: the next pod gets the first one back.
    assert runtime.add("x4", "blue", "web")["ips"][0]["address"] == outs["x1"]["ips"][0]["address"]


def test_sixteen_concurrent_adds_then_dels(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    names = [f"p{i}" for i in range(16)]
    netns = {name: runtime.pod_netns(name) for name in names}

    def add(name: str):
        return runtime.call("ADD", config, container=f"c-{name}", netns=netns[name])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(add, names))
    assert all(r.code == 0 for r in results), [r for r in results if r.code]
    addresses = [r.out["ips"][0]["address"] for r in results]
    assert len(set(addresses)) == 16
    first, last = cluster.pod(names[0], results[0].out), cluster.pod(names[-1], results[-1].out)
    assert first.ping(last.ip)

    def delete(name: str):
        return runtime.call("DEL", config, container=f"c-{name}", netns=netns[name])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert all(r.code == 0 for r in pool.map(delete, names))
    assert cluster.leftovers() == {"ports": [], "links": [], "endpoints": [], "flows": []}


def test_killed_agent_leaves_every_pod_working_or_cleaned(cluster: Cluster) -> None:
    runtime = cluster.runtime
    config = runtime.config("blue", "web")
    steady = cluster.pod("s1", runtime.add("s1", "blue", "web"))
    names = [f"k{i}" for i in range(8)]
    netns = {name: runtime.pod_netns(name) for name in names}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {n: pool.submit(runtime.call, "ADD", config, container=f"c-{n}", netns=netns[n]) for n in names}
        wait_for(lambda: "ADD" in cluster.agent.new_log(), "the first ADD to finish", interval=0.005)
        cluster.agent.kill9()
        results = {name: future.result() for name, future in futures.items()}
    cluster.agent.start()
    # The runtime calls DEL for every ADD that failed, as CNI requires; the pods whose ADD succeeded work.
    for name, result in results.items():
        if result.code == 0:
            assert cluster.pod(name, result.out).ping(steady.ip), name
        else:
            assert result.error_code == 11, result
            assert runtime.call("DEL", config, container=f"c-{name}", netns=netns[name]).code == 0
    valid = [{"containerID": f"c-{n}", "ifname": "eth0"} for n in ["s1", *names] if n == "s1" or results[n].code == 0]
    gc = runtime.call("GC", {**config, "cni.dev/valid-attachments": valid})
    assert gc.code == 0, gc
    left = cluster.leftovers()
    assert len(left["endpoints"]) == len(left["ports"]) == len(left["links"]) == len(valid), left


def test_killed_controller_keeps_pods_talking_and_refuses_adds_until_back(cluster: Cluster) -> None:
    runtime = cluster.runtime
    a = cluster.pod("a1", runtime.add("a1", "blue", "web"))
    b = cluster.pod("a2", runtime.add("a2", "blue", "web"))
    cluster.controller.kill9()
    assert a.ping(b.ip) and tcp_connects(a, b)
    refused = runtime.call("ADD", runtime.config("blue", "web"), container="c-a3", netns=runtime.pod_netns("a3"))
    assert refused.error_code == 11, refused
    status = runtime.call("STATUS", runtime.config("blue", "web"))
    assert status.error_code == 50, status
    cluster.controller.start()
    wait_for(lambda: cluster.controller.node("n1").get("switch", {}).get("in_sync"), "br-int to reconnect")
    assert runtime.call("STATUS", runtime.config("blue", "web")).code == 0
    again = runtime.call("ADD", runtime.config("blue", "web"), container="c-a3", netns="/var/run/netns/a3")
    assert again.code == 0, again
    assert cluster.pod("a3", again.out).ping(a.ip)


def test_bad_input_gives_the_right_code_and_leaves_nothing(cluster: Cluster) -> None:
    runtime = cluster.runtime
    netns = runtime.pod_netns("bad")
    good = runtime.config("blue", "web")
    cases: list[tuple[dict[str, Any] | bytes, dict[str, str], int, str | None]] = [
        (b"{not json", {}, 6, None),
        ({**good, "cniVersion": "9.9.9"}, {}, 1, "9.9.9"),
        (good, {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID"),
        (good, {"CNI_NETNS": ""}, 4, "CNI_NETNS"),
        (runtime.config("green", "web"), {}, 7, "green"),
        (runtime.config("blue", "nope"), {}, 7, "nope"),
    ]
    for config, env, code, named in cases:
        result = runtime.call("ADD", config, container="c-bad", netns=netns, env=env)
        assert result.error_code == code, (config, env, result)
        assert named is None or named in result.out["msg"] + result.out.get("details", ""), result
        assert "Traceback" not in result.stderr + json.dumps(result.out)
    # the veth pair is made while the controller is asked: a refused ADD leaves no end of it in the pod either
    assert len(in_pod("bad", "ip", "-o", "link").stdout.splitlines()) == 1, "only lo"
    in_pod("bad", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
    taken = runtime.call("ADD", good, container="c-bad", netns=netns)
    assert taken.error_code == 4 and "eth0" in taken.out["msg"], taken
    assert cluster.leftovers() == {"ports": [], "links": [], "endpoints": [], "flows": []}


def test_a_repeated_add_replaces_the_first(cluster: Cluster) -> None:
    """A runtime that retries ADD (its first call timed out) gets one working attachment, not two."""
    runtime = cluster.runtime
    peer = cluster.pod("q0", runtime.add("q0", "blue", "web"))
    netns = runtime.pod_netns("q1")
    first = runtime.call("ADD", runtime.config("blue", "web"), container="c-q1", netns=netns)
    again = runtime.call("ADD", runtime.config("blue", "web"), container="c-q1", netns=netns)
    assert first.code == 0 and again.code == 0, (first, again)
    assert len(cluster.leftovers()["endpoints"]) == 2  # q0 and q1
    assert cluster.pod("q1", again.out).ping(peer.ip)


def test_chained_between_the_reference_loopback_and_portmap(cluster: Cluster) -> None:
    """A conflist as runtimes use it: loopback, tenet, portmap; each gets the result so far."""
    runtime = cluster.runtime
    netns = runtime.pod_netns("ch1")
    base = {"cniVersion": "1.0.0", "name": "tenet"}
    chain = [
        ("/usr/lib/cni/loopback", {**base, "type": "loopback"}),
        (str(runtime.plugin), runtime.config("blue", "web") | base),
        ("/usr/lib/cni/portmap", {**base, "type": "portmap", "capabilities": {"portMappings": True}}),
    ]
    result: dict[str, Any] = {}  # the result so far: none before the first plugin
    for program, config in chain:
        step = Runtime(Path(program), runtime.socket)
        done = step.call("ADD", config | ({"prevResult": result} if result else {}), container="c-ch1", netns=netns)
        assert done.code == 0, (program, done)
        result = done.out
    port = cluster.api.get(f"/v1/endpoints/{endpoint_id('c-ch1', 'eth0')}")["port_name"]
    assert [i["name"] for i in result["interfaces"]] == ["lo", port, "eth0"]  # the host end of the veth too
    ours = result["ips"][-1]
    assert result["interfaces"][ours["interface"]]["name"] == "eth0"
    assert in_pod("ch1", "ip", "-o", "addr", "show", "lo").stdout.count("127.0.0.1") == 1
    peer = cluster.pod("ch0", runtime.add("ch0", "blue", "web"))
    assert Pod("ch1", "ch1", ours["address"].split("/")[0]).ping(peer.ip)
    for program, config in reversed(chain):
        step = Runtime(Path(program), runtime.socket)
        done = step.call("DEL", config | {"prevResult": result}, container="c-ch1", netns=netns)
        assert done.code == 0, (program, done)
    assert runtime.call("DEL", runtime.config("blue", "web"), container="c-ch0", netns="/var/run/netns/ch0").code == 0
    assert cluster.leftovers() == {"ports": [], "links": [], "endpoints": [], "flows": []}


def test_ports_tenet_did_not_make_survive_recovery_and_del(cluster: Cluster) -> None:
    """The agent removes only ports it marked as its own, never one by a name the API gave."""
    runtime, admin = cluster.runtime, cluster.api
    config = runtime.config("blue", "web")
    mine = cluster.pod("m1", runtime.add("m1", "blue", "web"))
    ghosts = {name: endpoint_id(f"c-{name}", "eth0") for name in ("g1", "g2")}
    foreign = {
        "fx1": {},  # named as an endpoint's port below
        "fx2": {"tenet-endpoint": "cni-00000000000000000000"},  # looks like a pod port of no endpoint
        host_name(ghosts["g1"]): {},  # has the very name the agent would give g1's port
        host_name(ghosts["g2"]): {},
    }
    for port, ids in foreign.items():
        cluster.node.exec("ip", "link", "add", port, "type", "veth", "peer", "name", f"{port[:10]}p")
        settings = [f"external_ids:{key}={value}" for key, value in ids.items()]
        cluster.node.vsctl("add-port", "br-int", port, *(["--", "set", "interface", port, *settings] if ids else []))
    # Endpoints of this node whose port names (from the API) are the foreign ports' names.
    admin.post("/v1/endpoints", {"id": ghosts["g1"], "network": "blue/web", "node": "n1", "port_name": "fx1"})
    admin.post("/v1/endpoints", {"id": ghosts["g2"], "network": "blue/web", "node": "n1", "port_name": "fx2"})

    def still_there() -> None:
        ports = set(cluster.node.vsctl("list-ports", "br-int").split())
        assert set(foreign) <= ports, ports
        links = cluster.node.exec("ip", "-o", "link")
        assert all(f": {port}@" in links for port in foreign), links

    cluster.agent.stop()
    cluster.agent.start()  # recovery: g1 and g2 never got a port of the agent's, so they are released
    log = cluster.agent.new_log()
    assert "never got its port" in log and "cleaned {'ports': 0, 'endpoints': 2, 'links': 0}" in log, log
    assert {e["id"] for e in admin.get("/v1/endpoints")} == {endpoint_id("c-m1", "eth0")}
    still_there()
    # DEL of an endpoint whose API port name is a foreign port's
    admin.post("/v1/endpoints", {"id": ghosts["g1"], "network": "blue/web", "node": "n1", "port_name": "fx1"})
    assert runtime.call("DEL", config, container="c-g1", netns="").code == 0
    assert runtime.call("DEL", config, container="c-g2", netns="").code == 0
    assert {e["id"] for e in admin.get("/v1/endpoints")} == {endpoint_id("c-m1", "eth0")}
    still_there()
    # The agent's own port stays through all this and goes with its DEL, as ever.
    assert host_name(endpoint_id("c-m1", "eth0")) in cluster.node.vsctl("list-ports", "br-int").split()
    assert mine.ip.startswith("10.1.0.")
    assert runtime.call("DEL", config, container="c-m1", netns="/var/run/netns/m1").code == 0
    assert host_name(endpoint_id("c-m1", "eth0")) not in cluster.node.vsctl("list-ports", "br-int").split()
    still_there()


def test_a_pod_gets_the_address_it_asks_for_and_a_taken_one_is_refused_naming_it(cluster: Cluster) -> None:
    """The `ips` capability (runtimeConfig.ips) and CNI_ARGS IP=, through the real plugin, agent and controller."""
    runtime = cluster.runtime
    asked = runtime.add("ip1", "blue", "web", capabilities={"ips": True}, runtimeConfig={"ips": ["10.1.0.50/24"]})
    assert asked["ips"][0]["address"] == "10.1.0.50/24"
    shown = json.loads(in_pod("ip1", "ip", "-j", "addr", "show", "eth0").stdout)[0]
    assert [a["local"] for a in shown["addr_info"] if a["family"] == "inet"] == ["10.1.0.50"]
    netns = runtime.pod_netns("ip2")
    for address, words in (("10.1.0.50", "already used"), ("10.9.0.5", "outside subnet")):
        env = {"CNI_ARGS": f"IgnoreUnknown=1;IP={address}"}
        refused = runtime.call("ADD", runtime.config("blue", "web"), container="c-ip2", netns=netns, env=env)
        assert refused.code == 1 and address in refused.out["msg"] and words in refused.out["msg"], refused
    env = {"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=ip2;IP=10.1.0.51"}
    second = runtime.call("ADD", runtime.config("blue", "web"), container="c-ip2", netns=netns, env=env)
    assert second.code == 0 and second.out["ips"][0]["address"] == "10.1.0.51/24", second
    assert cluster.pod("ip2", second.out).ping("10.1.0.50")
    assert sorted(e["ip"] for e in cluster.api.get("/v1/endpoints")) == ["10.1.0.50", "10.1.0.51"]
