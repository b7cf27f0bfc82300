"""The gateway port with real packets (root): two lab nodes with the cluster network `default/pods`, two
isolated tenants with the very same subnet and `nat_outgoing`, and an "outside" host joined to node1.

    outside (198.51.100.10) ── out0 198.51.100.1 (node1's stack) ── tenet-gw0 ── br-int ── pods
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from controller.client import Client, ClientError
from lab.cluster import Lab
from lab.ovs import launch, sh, wait_for
from tests.functional.gateway_support import CLOSED, CLOSER, Servers, client, client_popen

OUTSIDE_IP, NODE1_OUT = "198.51.100.10", "198.51.100.1"  # not the lab's own outside host (203.0.113.0/24)
NODE_IPS = {"node1": "192.168.100.1", "node2": "192.168.100.2"}  # the lab's underlay (tunnel) addresses
CLUSTER_IP = "10.96.0.10"
SETTINGS = {
    "TENET_CLUSTER_NETWORK": "default/pods",
    "TENET_CLUSTER_SUBNET": "10.244.0.0/16",
    "TENET_TRANSIT_SUBNET": "100.64.0.0/16",
}
TENANTS = [
    {
        "name": t,
        "networks": [{"name": "net", "encap": "vxlan", "vni": vni, "subnet": "10.1.0.0/24", "nat_outgoing": True}],
    }
    for t, vni in (("red", 5101), ("blue", 5102))
]
CONFIG = {"tenants": TENANTS, "qos": [], "cni_default": "default/pods"}
RESTARTED: list[subprocess.Popen] = []  # controllers this module started again: waited for after the lab is down


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    saved = {k: os.environ.get(k) for k in SETTINGS}
    os.environ.update(SETTINGS)  # the controller's settings, read from TENET_* (controller/main.py)
    lab = Lab(Path(tmp_path_factory.mktemp("gateway")))
    outside = f"tgo-{os.getpid()}"
    servers = Servers()
    try:
        try:
            lab.up(2, CONFIG)
            for name, node in (("c1", "node1"), ("c2", "node2"), ("c3", "node1")):
                lab.pod_add(name, node, "default/pods")
            lab.pod_add("red-a", "node1", "red/net")
            lab.pod_add("blue-a", "node1", "blue/net")
            node1 = lab.node("node1")
            sh("ip", "netns", "add", outside)
            veth = f"tgo{os.getpid() % 100000}"
            pair = (veth, "netns", node1.netns, "type", "veth", "peer", "name", "eth0", "netns", outside)
            sh("ip", "link", "add", *pair)
            node1.exec("ip", "addr", "add", f"{NODE1_OUT}/24", "dev", veth)
            node1.exec("ip", "link", "set", veth, "up")
            for args in (("addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0"), ("link", "set", "eth0", "up")):
                sh("ip", "netns", "exec", outside, "ip", *args)
            sh("ip", "netns", "exec", outside, "ip", "link", "set", "lo", "up")
            servers.start(outside, "tcp", 8080, "outside")
            servers.start(outside, "udp", 8081, "outside")
            servers.start(outside, "tcp", 8082, "closer", script=CLOSER)
            for pod in ("c1", "c2"):
                servers.start(lab.state.pods[pod].netns, "tcp", 8080, pod)
            for node in ("node1", "node2"):
                servers.start(lab.node(node).netns, "tcp", 9090, node)
            servers.start(lab.node("node1").netns, "tcp", 9091, "node1")
            servers.start(lab.node("node1").netns, "udp", 9092, "node1")
            lab.gateway_outside = outside  # type: ignore[attr-defined]
        except BaseException:
            for log in sorted(lab.dir.glob("nodes/*/agent.log")):  # gone once the lab is down
                print(f"--- {log}\n{log.read_text()[-2000:]}")
            raise
        yield lab
    finally:
        servers.close()
        sh("ip", "netns", "del", outside, check=False)
        lab.down()
        for process in RESTARTED:
            process.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pod_ip(lab: Lab, name: str) -> str:
    ip = lab.state.pods[name].ip
    assert ip is not None
    return ip


def netns(lab: Lab, pod: str) -> str:
    return lab.state.pods[pod].netns


def test_the_gateway_port_is_planned_with_its_mtu_and_routes(lab: Lab) -> None:
    node1 = lab.node("node1")
    assert node1.vsctl("get", "interface", "tenet-gw0", "ofport").strip() == "999"
    assert node1.vsctl("get", "interface", "tenet-gw0", "mtu").strip() == "1450"
    routes = node1.exec("ip", "route", "show", "dev", "tenet-gw0")
    assert "10.244.0.0/16 via 10.244.0.1" in routes and "100.64.0.0/16 via 10.244.0.1" in routes
    assert "disabled" in node1.appctl("dpctl/ct-get-tcp-seq-chk")  # the agent's liberal_tcp


def test_the_largest_packet_leaves_and_a_larger_one_fails_at_once_in_the_pod(lab: Lab) -> None:
    payload = 1450 - 20 - 8  # the cluster network's MTU less the IPv4 and ICMP headers
    argv = ["ip", "netns", "exec", netns(lab, "c1"), "ping", "-c", "1", "-W", "3", "-M", "do", "-s"]
    fits = subprocess.run([*argv, str(payload), OUTSIDE_IP], capture_output=True, text=True, timeout=20)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    too_big = subprocess.run([*argv, str(payload + 1), OUTSIDE_IP], capture_output=True, text=True, timeout=20)
    assert "message too long" in too_big.stderr


def test_the_host_reaches_a_local_pod_and_a_pod_on_another_node(lab: Lab) -> None:
    node1 = lab.node("node1").netns
    assert client(node1, "tcp", pod_ip(lab, "c1"), 8080) == f"c1 {NODE_IPS['node1']}"  # a kubelet probe
    assert client(node1, "tcp", pod_ip(lab, "c2"), 8080) == f"c2 {NODE_IPS['node1']}"


def test_a_pod_reaches_its_node_and_the_other_node(lab: Lab) -> None:
    for node, ip in NODE_IPS.items():
        assert client(netns(lab, "c2"), "tcp", ip, 9090) == f"{node} {pod_ip(lab, 'c2')}"


def test_a_pod_reaches_the_outside_as_its_node(lab: Lab) -> None:
    assert client(netns(lab, "c1"), "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}"
    assert client(netns(lab, "c1"), "udp", OUTSIDE_IP, 8081) == f"outside {NODE1_OUT}"


def test_two_tenants_same_address_and_port_reach_one_server_at_once(lab: Lab) -> None:
    assert pod_ip(lab, "red-a") == pod_ip(lab, "blue-a")
    running = [client_popen(netns(lab, pod), "tcp", OUTSIDE_IP, 8080, 40000, 1.0) for pod in ("red-a", "blue-a")]
    answers = [process.communicate(timeout=20)[0].strip() for process in running]
    assert answers == [f"outside {NODE1_OUT}"] * 2
    assert client(netns(lab, "red-a"), "udp", OUTSIDE_IP, 8081, 40001) == f"outside {NODE1_OUT}"


@contextmanager
def cluster_ip_service(lab: Lab) -> Iterator[None]:
    """A Service as kube-proxy's iptables mode writes it on node1: CLUSTER_IP:80 DNATed to c1 or c2 :8080,
    and KUBE-FORWARD's accept of what it DNATs inserted ahead of everything in filter's FORWARD."""
    node1 = lab.node("node1")
    backends = [pod_ip(lab, "c1"), pod_ip(lab, "c2")]
    rules = [
        ("-N", "KUBE-SERVICES"),
        ("-N", "KUBE-SVC-TEST"),
        ("-N", "KUBE-SEP-ONE"),
        ("-N", "KUBE-SEP-TWO"),
        ("-I", "PREROUTING", "1", "-j", "KUBE-SERVICES"),
        ("-A", "KUBE-SERVICES", "-d", f"{CLUSTER_IP}/32", "-p", "tcp", "--dport", "80", "-j", "KUBE-SVC-TEST"),
        (
            "-A",
            "KUBE-SVC-TEST",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "2",
            "--packet",
            "0",
            "-j",
            "KUBE-SEP-ONE",
        ),
        ("-A", "KUBE-SVC-TEST", "-j", "KUBE-SEP-TWO"),
        ("-A", "KUBE-SEP-ONE", "-p", "tcp", "-j", "DNAT", "--to-destination", f"{backends[0]}:8080"),
        ("-A", "KUBE-SEP-TWO", "-p", "tcp", "-j", "DNAT", "--to-destination", f"{backends[1]}:8080"),
    ]
    forward = ("FORWARD", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
    for rule in rules:
        node1.exec("iptables", "-w", "-t", "nat", *rule)
    node1.exec("iptables", "-w", "-I", forward[0], "1", *forward[1:])
    try:
        yield
    finally:
        node1.exec("iptables", "-w", "-D", *forward)
        node1.exec("iptables", "-w", "-t", "nat", "-D", "PREROUTING", "-j", "KUBE-SERVICES")
        for chain in ("KUBE-SERVICES", "KUBE-SVC-TEST", "KUBE-SEP-ONE", "KUBE-SEP-TWO"):
            node1.exec("iptables", "-w", "-t", "nat", "-F", chain)
            node1.exec("iptables", "-w", "-t", "nat", "-X", chain)


def test_a_cluster_ip_reaches_backends_on_two_nodes(lab: Lab) -> None:
    with cluster_ip_service(lab):
        seen = {client(netns(lab, "c3"), "tcp", CLUSTER_IP, 80).split(" ")[0] for _ in range(4)}
        assert seen == {"c1", "c2"}


def test_an_isolated_tenant_reaches_no_cluster_ip_the_host_would_dnat(lab: Lab) -> None:
    """red/net's egress leaves OVS SNATed to its transit address; the host's Service rules would DNAT it to a
    backend pod (or another node's host-network backend): dropped, even with an accept of DNATed traffic
    first in filter's FORWARD, while the cluster network's pod still reaches the Service."""
    with cluster_ip_service(lab):
        assert client(netns(lab, "red-a"), "tcp", CLUSTER_IP, 80).startswith("failed")
        assert client(netns(lab, "c3"), "tcp", CLUSTER_IP, 80).split(" ")[0] in ("c1", "c2")
        assert client(netns(lab, "red-a"), "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}"


def test_an_isolated_tenant_reaches_no_cluster_pod_node_or_other_tenant(lab: Lab) -> None:
    networks = {n["key"]: n for n in lab.client.get("/v1/networks")}
    blue_transit = f"100.64.0.{networks['blue/net']['id']}"
    probes = {}
    for target, port in (
        (pod_ip(lab, "c1"), 8080),
        (pod_ip(lab, "c2"), 8080),
        (NODE_IPS["node1"], 9090),
        (NODE_IPS["node2"], 9090),
        (NODE1_OUT, 9090),
        (blue_transit, 8080),
    ):
        probes[target] = client_popen(netns(lab, "red-a"), "tcp", target, port)  # all at once: each waits 3 s
    answers = {target: probe.communicate(timeout=20)[0].strip() for target, probe in probes.items()}
    assert all(answer.startswith("failed") for answer in answers.values()), answers


def test_an_opened_node_port_reaches_the_own_node_on_that_port_only(lab: Lab) -> None:
    url = "/v1/tenants/red/networks/net"
    red = netns(lab, "red-a")
    transit = f"100.64.0.{lab.client.get(url)['id']}"
    assert lab.client.patch(url, {"node_ports": ["tcp/9090", "udp/9092"]})["node_ports"] == ["tcp/9090", "udp/9092"]
    try:
        # the node sees the network's transit address; the agent opens INPUT within a few seconds
        wait_for(lambda: client(red, "tcp", NODE_IPS["node1"], 9090) == f"node1 {transit}", "node port 9090 open")
        assert client(red, "udp", NODE_IPS["node1"], 9092) == f"node1 {transit}"
        probes = {
            (pod, target, port): client_popen(netns(lab, pod), "tcp", target, port)
            for pod, target, port in (
                ("red-a", NODE_IPS["node1"], 9091),  # another port
                ("red-a", NODE_IPS["node2"], 9090),  # another node
                ("red-a", NODE1_OUT, 9090),  # another address of the node
                ("blue-a", NODE_IPS["node1"], 9090),  # another tenant
            )
        }
        answers = {probe: process.communicate(timeout=20)[0].strip() for probe, process in probes.items()}
        assert all(answer.startswith("failed") for answer in answers.values()), answers
        assert client(red, "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}"  # nat_outgoing as before
    finally:
        lab.client.patch(url, {"node_ports": "none"})
    wait_for(lambda: client(red, "tcp", NODE_IPS["node1"], 9090).startswith("failed"), "node port 9090 closed")


def test_the_labs_tenant_token_sees_its_own_tenant_and_may_not_change_node_ports(lab: Lab) -> None:
    red = Client(lab.state.server, lab.state.tenant_tokens["red"])
    assert [n["key"] for n in red.get("/v1/networks")] == ["red/net"]
    with pytest.raises(ClientError) as refused:
        red.patch("/v1/tenants/red/networks/net", {"node_ports": "none"})
    assert refused.value.status == 403 and "changing node ports" in str(refused.value)


def test_a_reused_source_port_snated_onto_a_servers_time_wait_still_connects(lab: Lab) -> None:
    """A pod reuses port P while OVS still holds P's last connection (TIME_WAIT): OVS SNATs the new one to
    the next free transit port, here P + 1, which the server still holds in TIME_WAIT from the pod's own
    earlier connection from P + 1 (OVS forgets a closed connection after 30 s, the server after 60 s; the
    test flushes OVS's entry instead of waiting). The server answers the SYN with an ACK of that old
    connection (its TCP timestamps are another connection's) about half the time; the pod's RST must pass OVS
    to end that TIME_WAIT (the sequence check off, agent.gateway.liberal_tcp), and the SYN sent again
    connects."""
    red, node1 = netns(lab, "red-a"), lab.node("node1")
    zone = 0x8000 | lab.client.get("/v1/tenants/red/networks/net")["id"]
    ports = [41000 + 10 * i for i in range(10)]  # each fails half the time with the check on
    argv = ["ip", "netns", "exec", red, sys.executable, "-c", CLOSED, OUTSIDE_IP, "8082"]
    for port in ports:  # the server's TIME_WAIT of P + 1, then OVS's and the server's of P
        done = subprocess.run([*argv, str(port + 1), str(port)], capture_output=True, text=True, timeout=30)
        assert done.stdout.split("\n")[0].split()[:2] == [str(port + 1), "ok"], done.stdout + done.stderr
        tuple_ = (
            f"ct_nw_src={pod_ip(lab, 'red-a')},ct_nw_dst={OUTSIDE_IP},ct_nw_proto=6,ct_tp_src={port + 1},ct_tp_dst=8082"
        )
        node1.appctl("dpctl/flush-conntrack", f"zone={zone}", tuple_)
    dump = node1.appctl("dpctl/dump-conntrack")  # this test's connections only: others' may share a port
    assert all(f"sport={p},dport=8082" in dump and f"sport={p + 1},dport=8082" not in dump for p in ports), dump
    done = subprocess.run([*argv, *map(str, ports)], capture_output=True, text=True, timeout=60)
    answers = done.stdout.strip().split("\n")
    assert [a.split()[:2] for a in answers] == [[str(p), "ok"] for p in ports], done.stdout + done.stderr
    assert any(a.split()[-1] != str(p) for a, p in zip(answers, ports, strict=True)), answers  # moved by OVS


def test_nat_outgoing_off_means_no_egress(lab: Lab) -> None:
    url = "/v1/tenants/red/networks/net"
    red = netns(lab, "red-a")
    lab.client.patch(url, {"nat_outgoing": False})
    try:
        wait_for(lambda: client(red, "tcp", OUTSIDE_IP, 8080).startswith("failed"), "no egress for red")
        assert client(netns(lab, "blue-a"), "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}"
    finally:
        lab.client.patch(url, {"nat_outgoing": True})
    wait_for(lambda: client(red, "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}", "egress for red again")


def test_the_cluster_networks_nat_outgoing_off_lets_pods_leave_with_their_own_address(lab: Lab) -> None:
    """Like the bridge plugin's `ipMasq: false`: node1 no longer masquerades the cluster network to the outside.
    The outside has no route back to the cluster subnet (no answer) until it routes it via node1 (a routed
    fabric); pods still reach nodes, pods and a Service; on again, they leave as the node."""
    url, c1, outside = "/v1/tenants/default/networks/pods", netns(lab, "c1"), lab.gateway_outside  # type: ignore[attr-defined]
    route, node1 = ("ip", "netns", "exec", outside, "ip", "route"), lab.node("node1")
    assert lab.client.patch(url, {"nat_outgoing": False})["nat_outgoing"] is False
    try:
        wait_for(lambda: client(c1, "tcp", OUTSIDE_IP, 8080).startswith("failed"), "node1 not masquerading c1")
        rules = node1.exec("iptables-save", "-t", "nat")
        assert "-A TENET-POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE" not in rules
        assert "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -m conntrack --ctstate DNAT -j MASQUERADE" in rules
        sh(*route, "add", "10.244.0.0/16", "via", NODE1_OUT)
        assert client(c1, "tcp", OUTSIDE_IP, 8080) == f"outside {pod_ip(lab, 'c1')}"
        assert client(c1, "udp", OUTSIDE_IP, 8081, 40200) == f"outside {pod_ip(lab, 'c1')}"
        assert client(c1, "tcp", NODE_IPS["node2"], 9090) == f"node2 {pod_ip(lab, 'c1')}"
        assert client(c1, "tcp", pod_ip(lab, "c2"), 8080) == f"c2 {pod_ip(lab, 'c1')}"
        # a Service whose backend is outside the cluster subnet (the API server on node2): still masqueraded,
        # or node2 would answer the pod straight through the overlay, past node1's DNAT
        service = ("PREROUTING", "-d", "10.96.0.11/32", "-p", "tcp", "--dport", "80", "-j", "DNAT")
        node1.exec("iptables", "-w", "-t", "nat", "-I", *service, "--to-destination", f"{NODE_IPS['node2']}:9090")
        try:
            assert client(c1, "tcp", "10.96.0.11", 80) == f"node2 {NODE_IPS['node1']}"
        finally:
            node1.exec("iptables", "-w", "-t", "nat", "-D", *service, "--to-destination", f"{NODE_IPS['node2']}:9090")
        # the transit masquerade stays: isolated tenants still leave as the node
        assert client(netns(lab, "red-a"), "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}"
    finally:
        sh(*route, "del", "10.244.0.0/16", check=False)
        lab.client.patch(url, {"nat_outgoing": True})
    wait_for(lambda: client(c1, "tcp", OUTSIDE_IP, 8080) == f"outside {NODE1_OUT}", "node1 masquerading c1 again")


def test_a_connection_through_snat_survives_a_controller_kill_and_restart(lab: Lab) -> None:
    running = client_popen(netns(lab, "red-a"), "tcp", OUTSIDE_IP, 8080, 40100, "stdin")
    assert running.stdout is not None and running.stdin is not None
    assert running.stdout.readline().strip() == "connected"
    assert "sport=40100" in lab.node("node1").appctl("dpctl/dump-conntrack")
    pid = lab.state.controller_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _answers(lab), "the controller to be gone")
    args = [
        sys.executable, "-m", "controller.main",
        "--ofp-host", "0.0.0.0", "--ofp-port", str(lab.state.ofp_port),
        "--api-host", "0.0.0.0", "--api-port", str(lab.state.api_port),
        "--store", f"sqlite:///{lab.dir}/tenet.db", "--token-file", str(lab.dir / "tokens.json"),
    ]  # fmt: skip
    restarted = launch(args, lab.dir / "controller.log", detach=True)
    RESTARTED.append(restarted)
    lab.state.controller_pid = restarted.pid
    lab.save()
    wait_for(lambda: _answers(lab), "the restarted controller", timeout=60)
    wait_for(lambda: lab.switch("node1").get("in_sync"), "node1 in sync again", timeout=60)
    assert running.communicate("go\n", timeout=30)[0].strip() == f"outside {NODE1_OUT}"


def test_deleting_a_network_flushes_its_conntrack_zones_on_the_node(lab: Lab) -> None:
    """A network id may be given again (when the ids are exhausted, or claimed): the deleted network's
    connections must not be there for the next one, so the controller flushes its zones on every switch."""
    url, node1 = "/v1/tenants/red/networks", lab.node("node1")
    body = {"name": "gone", "encap": "vxlan", "vni": 5103, "subnet": "10.9.0.0/24", "nat_outgoing": True}
    made = lab.client.post(url, body)
    zones = (made["id"], 0x8000 | made["id"])
    running: subprocess.Popen | None = None
    try:
        lab.pod_add("red-gone", "node1", "red/gone")
        running = client_popen(netns(lab, "red-gone"), "tcp", OUTSIDE_IP, 8080, 40200, "stdin")
        assert running.stdout is not None
        assert running.stdout.readline().strip() == "connected"
        assert "sport=40200" in node1.appctl("dpctl/dump-conntrack", f"zone={zones[1]}")  # held open
        lab.pod_rm("red-gone")
        lab.client.delete(f"{url}/gone")

        def flushed() -> bool:
            return all(not node1.appctl("dpctl/dump-conntrack", f"zone={zone}").strip() for zone in zones)

        wait_for(flushed, f"conntrack zones {zones} of the deleted network empty on node1", timeout=10)
    finally:
        if running is not None:
            running.kill()
            running.wait()
        if "red-gone" in lab.state.pods:
            lab.pod_rm("red-gone", check=False)
        if any(n["key"] == "red/gone" for n in lab.client.get("/v1/networks")):
            lab.client.delete(f"{url}/gone")


def _answers(lab: Lab) -> bool:
    try:
        lab.client.get("/v1/health")
    except ClientError:
        return False
    return True


HOST_PORT, CONTAINER_PORT = 30080, 8080


def _chain(lab: Lab, command: str, netns_name: str, container: str, previous: dict | None = None) -> dict:
    """node1's conflist, tenet then Debian's portmap, called as a runtime calls it (DEL in reverse), with the
    pod's port mapping in `runtimeConfig`; each ADD step gets the result so far."""
    node_dir = lab.dir / "nodes" / "node1" / "cni"
    conflist = json.loads((node_dir / "net.d" / "10-tenet.conflist").read_text())
    tenet = next(p for p in conflist["plugins"] if p["type"] == "tenet") | {"tenant": "default", "network": "pods"}
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    mapping = {"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
    plugins = [(str(node_dir / "bin" / "tenet"), tenet), ("/usr/lib/cni/portmap", portmap)]
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{netns_name}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"{node_dir / 'bin'}:/usr/lib/cni",
    }
    result = previous
    for program, plugin in plugins if command == "ADD" else reversed(plugins):
        config = {**plugin, "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
        if plugin is portmap:  # what a runtime puts there for a capability the plugin declares
            config["runtimeConfig"] = {"portMappings": [mapping]}
        if result is not None:
            config["prevResult"] = result
        argv = ["ip", "netns", "exec", lab.node("node1").netns, program]
        stdin = json.dumps(config)
        done = subprocess.run(argv, input=stdin, env=environment, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (program, command, done.stdout, done.stderr)
        if command == "ADD":
            result = json.loads(done.stdout)
    assert result is not None
    return result


def test_a_host_port_through_portmap_reaches_the_pod_until_del(lab: Lab) -> None:
    pod_netns, container = f"tgh-{os.getpid()}", f"hostport-{os.getpid()}"
    sh("ip", "netns", "add", pod_netns)
    servers = Servers()
    result: dict | None = None
    try:
        result = _chain(lab, "ADD", pod_netns, container)
        ip = result["ips"][-1]["address"].split("/")[0]
        servers.start(pod_netns, "tcp", CONTAINER_PORT, "hostport")
        assert "--dport 30080" in lab.node("node1").exec("iptables-save", "-t", "nat")
        node1 = NODE_IPS["node1"]  # the pod sees its node's address: the node masquerades what it DNATs into a pod
        assert client(lab.gateway_outside, "tcp", NODE1_OUT, HOST_PORT) == f"hostport {node1}"  # type: ignore[attr-defined]
        assert client(lab.node("node2").netns, "tcp", node1, HOST_PORT) == f"hostport {node1}"
        assert client(netns(lab, "c2"), "tcp", node1, HOST_PORT) == f"hostport {node1}"
        assert client(netns(lab, "c2"), "tcp", ip, CONTAINER_PORT) == f"hostport {pod_ip(lab, 'c2')}"
        _chain(lab, "DEL", pod_netns, container, result)
        result = None
        assert "--dport 30080" not in lab.node("node1").exec("iptables-save", "-t", "nat")
        assert client(lab.gateway_outside, "tcp", NODE1_OUT, HOST_PORT).startswith("failed")  # type: ignore[attr-defined]
    finally:
        servers.close()
        if result is not None:
            _chain(lab, "DEL", pod_netns, container, result)
        sh("ip", "netns", "del", pod_netns, check=False)


DENY_INGRESS = "/v1/namespaces/probed/networkpolicies/deny-ingress"


def test_the_own_host_reaches_a_pod_under_default_deny_ingress_and_other_pods_do_not(lab: Lab) -> None:
    """NetworkPolicy never cuts a pod off from its own node (kubelet's probes): the host's TCP connects."""
    api, servers = lab.client, Servers()
    lab.pod_add("d1", "node1", "default/pods", namespace="probed")
    try:
        servers.start(netns(lab, "d1"), "tcp", 8080, "d1")
        d1 = pod_ip(lab, "d1")
        assert client(netns(lab, "c1"), "tcp", d1, 8080) == f"d1 {pod_ip(lab, 'c1')}"
        doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-ingress"}}
        api.put(DENY_INGRESS, doc | {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
        wait_for(lambda: client(netns(lab, "c1"), "tcp", d1, 8080).startswith("failed"), "c1 denied by the policy")
        host = lab.node("node1").netns
        assert client(host, "tcp", d1, 8080) == f"d1 {NODE_IPS['node1']}"  # its own node, after SYN and reply
        assert client(lab.node("node2").netns, "tcp", d1, 8080).startswith("failed")  # another node is a peer
    finally:
        try:
            api.delete(DENY_INGRESS)
        except ClientError as e:
            assert e.status == 404, e  # never applied
        servers.close()
        lab.pod_rm("d1")
