"""Debian's mininet with Open vSwitch in userspace, programmed by a real `tenet-controller`.

Four switches in a ring, s1-s2-s3-s4-s1, and on every switch one host of tenant blue (VLAN 101) and one of
tenant red (VLAN 201), both tenants on 10.1.0.0/24. The switches, links and hosts are registered with the
controller first (hosts as endpoints with the switch port and ofport the model planned); then mininet
builds the same network inside a namespace of its own (`network.py`), with its switches connecting to the
controller over a veth from the root namespace. Needs root, like the functional tests.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cni import ControllerProcess
from lab.ovs import pid_alive, sh, stop_pid, wait_for

SWITCHES = ("s1", "s2", "s3", "s4")
RING = (("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s4", "s1"))
TENANTS = {"blue": (101, 10), "red": (201, 20)}  # VLAN, and the last octet's tens: blue .11-.14, red .21-.24
SUBNET = "10.1.0.0/24"
CONTROL = "10.252.1"  # the /30 between the root namespace (.1, the controller) and mininet's (.2)
DPID_BASE = 0x7E4E0000
RUNNER = Path(__file__).with_name("network.py")
BROADCASTS = 20


class Ring:
    """The controller's model of the ring, and mininet's network of it in a namespace of its own."""

    def __init__(self, state: Path, controller: ControllerProcess) -> None:
        self.state = state
        self.controller = controller
        self.api = controller.client
        tag = os.getpid() % 100000
        self.netns, self.veth = f"tn-mn-{tag}", f"tnmn{tag}"
        self.hosts: dict[str, dict[str, Any]] = {}  # name -> its endpoint document
        self.links: list[dict[str, Any]] = []
        self.runner: subprocess.Popen | None = None
        self.host_pids: dict[str, int] = {}

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Ring:
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "ctl0", "netns", self.netns)
        sh("ip", "addr", "add", f"{CONTROL}.1/30", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        for args in (("addr", "add", f"{CONTROL}.2/30", "dev", "ctl0"), ("link", "set", "ctl0", "up")):
            sh("ip", "netns", "exec", self.netns, "ip", *args)
        sh("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
        self._register()
        self._start_mininet()
        wait_for(self._in_sync, "all four switches connected and in sync", timeout=30, interval=0.2)
        return self

    def _register(self) -> None:
        """Nodes, ring links, tenants and endpoints in the controller's model, through its API."""
        for i, name in enumerate(SWITCHES, start=1):
            self.api.put(f"/v1/nodes/{name}", {"tunnel_ip": f"192.168.252.{i}", "datapath_id": DPID_BASE + i})
        for a, b in RING:
            self.links.append(self.api.post("/v1/links", {"a": a, "a_port": f"{a}-{b}", "b": b, "b_port": f"{b}-{a}"}))
        for tenant, (vlan, _) in TENANTS.items():
            self.api.post("/v1/tenants", {"name": tenant})
            self.api.post(
                f"/v1/tenants/{tenant}/networks", {"name": "web", "encap": "vlan", "vlan": vlan, "subnet": SUBNET}
            )
        for i, switch in enumerate(SWITCHES, start=1):
            for tenant, (_, tens) in TENANTS.items():
                name = f"{tenant[0]}{i}"
                body = {
                    "id": name,
                    "network": f"{tenant}/web",
                    "node": switch,
                    "ip": f"10.1.0.{tens + i}",
                    "port_name": f"{switch}-{name}",
                }
                self.hosts[name] = self.api.post("/v1/endpoints", body)

    def _start_mininet(self) -> None:
        spec = {
            "state": str(self.state),
            "controller": {"ip": f"{CONTROL}.1", "port": self.controller.ofp_port},
            "switches": [{"name": name, "dpid": DPID_BASE + i} for i, name in enumerate(SWITCHES, start=1)],
            "links": self.links,  # as the API answered: port names and planned ofports
            "hosts": [{"name": name, **endpoint} for name, endpoint in self.hosts.items()],
        }
        (self.state / "spec.json").write_text(json.dumps(spec, indent=1))
        namespaces = f"ip netns exec {self.netns} unshare --mount --propagation private --".split()
        with (self.state / "mininet.log").open("a") as log:
            self.runner = subprocess.Popen(
                [*namespaces, sys.executable, str(RUNNER), str(self.state / "spec.json")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        ready = self._answer(timeout=60)
        self.host_pids = ready["pids"]

    def _in_sync(self) -> bool:
        for name in SWITCHES:
            switch = self.api.get(f"/v1/nodes/{name}").get("switch") or {}
            assert not switch.get("errors"), f"{name}: {switch}"
            if not (switch.get("connected") and switch.get("in_sync")):
                return False
        return True

    def close(self) -> None:
        if self.runner is not None and self.runner.poll() is None:
            try:
                assert self.runner.stdin is not None
                self.runner.stdin.write(json.dumps({"op": "stop"}) + "\n")  # it stops mininet and OVS, then exits
                self.runner.stdin.close()
                self.runner.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.runner.kill()
                self.runner.wait(timeout=10)
        # Whatever the runner left: the daemons by their control sockets and pidfiles, the hosts' shells.
        ctl = self.state / "ovs-vswitchd.ctl"
        if ctl.exists():
            sh("ovs-appctl", "-t", str(ctl), "exit", "--cleanup", check=False, timeout=15)
        for program in ("ovs-vswitchd", "ovsdb-server"):
            pidfile = self.state / f"{program}.pid"
            if pidfile.exists():
                stop_pid(int(pidfile.read_text().strip()))
        for name, pid in self.host_pids.items():
            if pid_alive(pid) and f"mininet:{name}" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                stop_pid(pid)
        sh("ip", "link", "del", self.veth, check=False)
        sh("ip", "netns", "del", self.netns, check=False)

    # --- talking to the runner -----------------------------------------------------------------

    def call(self, request: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
        assert self.runner is not None and self.runner.stdin is not None
        self.runner.stdin.write(json.dumps(request) + "\n")
        self.runner.stdin.flush()
        answer = self._answer(timeout=timeout)
        assert "error" not in answer, f"{request}: {answer['error']}"
        return answer

    def _answer(self, *, timeout: float) -> dict[str, Any]:
        assert self.runner is not None and self.runner.stdout is not None
        readable, _, _ = select.select([self.runner.stdout], [], [], timeout)
        line = self.runner.stdout.readline() if readable else ""
        if not line:
            log = (self.state / "mininet.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the mininet runner did not answer (exit {self.runner.poll()}):\n{log}")
        return json.loads(line)

    # --- what the tests ask --------------------------------------------------------------------

    def matrix(self) -> dict[tuple[str, str], bool]:
        """Every ordered pair of hosts, pinged at once: (source, destination) -> replied."""
        pairs = self.matrix_pairs()
        answer = self.call({"op": "ping", "probes": [[src, self.hosts[dst]["ip"]] for src, dst in pairs]})
        return dict(zip(pairs, answer["ok"], strict=True))

    def expected_matrix(self) -> dict[tuple[str, str], bool]:
        """The model: same tenant, reached; other tenant, never (its IPs are ones the sender's tenant lacks)."""
        return {(s, d): self.hosts[s]["tenant"] == self.hosts[d]["tenant"] for s, d in self.matrix_pairs()}

    def matrix_pairs(self) -> list[tuple[str, str]]:
        return list(itertools.permutations(sorted(self.hosts), 2))

    def counters(self, intfs: list[str]) -> dict[str, Any]:
        return self.call({"op": "counters", "hosts": sorted(self.hosts), "intfs": intfs})

    def quiet(self) -> bool:
        """No host is resolving an address (ARP requests going out)."""
        for host in self.hosts:
            if "INCOMPLETE" in self.call({"op": "cmd", "host": host, "command": "ip neigh"})["output"]:
                return False
        return True

    def link_state(self, a: str, b: str) -> bool:
        (link,) = [x for x in self.api.get("/v1/links") if {x["a"], x["b"]} == {a, b}]
        return link["up"]

    def ring_ports(self) -> list[str]:
        return [port for x in self.links for port in (x["a_port"], x["b_port"])]


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ring]:
    state = tmp_path_factory.mktemp("mininet")
    controller = ControllerProcess(state)
    network = Ring(state, controller)
    try:
        controller.start()
        yield network.start()
    finally:
        try:
            network.close()
        finally:
            controller.stop()


def mismatches(actual: dict, expected: dict) -> list[str]:
    wrong = [pair for pair in expected if actual.get(pair) != expected[pair]]
    return [f"{s} -> {d}: {'reached' if actual.get((s, d)) else 'not reached'}" for s, d in wrong]


def wait_matrix(ring: Ring, what: str, *, timeout: float = 30) -> None:
    expected = ring.expected_matrix()
    last: list[dict] = [{}]

    def matches() -> bool:
        last[0] = ring.matrix()
        return last[0] == expected

    try:
        wait_for(matches, what, timeout=timeout, interval=0.2)
    except TimeoutError as error:
        raise AssertionError(f"{error}: {mismatches(last[0], expected)}") from None


def broadcast_deltas(ring: Ring, source: str) -> tuple[dict[str, int], dict[str, int]]:
    """Send BROADCASTS broadcast pings from `source`; packets each host received and each ring port sent
    meanwhile (read until the counters stand still, so every copy has landed)."""
    ports = ring.ring_ports()
    # Address resolutions still in progress (the other tenant's addresses never resolve) send ARP requests
    # to the whole network for a few seconds: let them end first.
    wait_for(ring.quiet, "no host resolving an address", timeout=20, interval=0.2)
    before = ring.counters(ports)
    ring.call({"op": "broadcast", "host": source, "ip": "10.1.0.255", "count": BROADCASTS})
    previous: list[dict] = [before]

    def settled() -> dict | None:
        now = ring.counters(ports)
        still = now == previous[0]
        previous[0] = now
        return now if still else None

    after = wait_for(settled, "the packet counters to settle", timeout=20, interval=0.3)
    received = {h: after["hosts"][h]["rx"] - before["hosts"][h]["rx"] for h in ring.hosts}
    sent = {p: after["intfs"][p]["tx"] - before["intfs"][p]["tx"] for p in ports}
    return received, sent


def assert_flood_reaches_its_tenant_once(ring: Ring, source: str, received: dict[str, int]) -> None:
    tenant = ring.hosts[source]["tenant"]
    for host, count in received.items():
        if host == source:
            continue
        if ring.hosts[host]["tenant"] == tenant:
            # Each broadcast exactly once (a stray ARP answer at most on top): no loop, no duplicate.
            assert BROADCASTS <= count <= BROADCASTS + 2, f"{host} received {count} of {BROADCASTS} broadcasts"
        else:
            assert count <= 2, f"{host} of another tenant received {count} packets during {source}'s broadcasts"


# --- the tests ---------------------------------------------------------------------------------


def test_reachability_matrix_matches_the_model(ring: Ring) -> None:
    expected = ring.expected_matrix()
    assert sum(expected.values()) == 24 and len(expected) == 56
    wait_matrix(ring, "the ping matrix to match the model", timeout=15)


def test_a_broadcast_follows_the_loop_free_flood_tree(ring: Ring) -> None:
    received, sent = broadcast_deltas(ring, "b1")
    assert_flood_reaches_its_tenant_once(ring, "b1", received)
    # The ring has a loop; the flood tree (BFS from s1: s1-s2, s1-s4, s2-s3) does not: s3-s4 carries no flood,
    # and every tree link carries each broadcast once.
    assert sent["s3-s4"] + sent["s4-s3"] <= 2, sent
    assert sum(sent.values()) <= 3 * BROADCASTS + 6, sent


def test_a_ring_link_down_is_routed_around_and_back(ring: Ring) -> None:
    try:
        ring.call({"op": "link", "a": "s1", "b": "s2", "status": "down"})
        wait_for(lambda: not ring.link_state("s1", "s2"), "the controller to see link s1-s2 down", timeout=15)
        wait_matrix(ring, "the ping matrix to match the model with s1-s2 down")
        received, sent = broadcast_deltas(ring, "b1")
        assert_flood_reaches_its_tenant_once(ring, "b1", received)
        assert sent["s1-s2"] == sent["s2-s1"] == 0, sent
        assert sent["s4-s3"] >= BROADCASTS, f"the new flood tree s1-s4-s3-s2 crosses s4-s3: {sent}"
    finally:
        ring.call({"op": "link", "a": "s1", "b": "s2", "status": "up"})
    wait_for(lambda: ring.link_state("s1", "s2"), "the controller to see link s1-s2 up again", timeout=15)
    wait_matrix(ring, "the ping matrix to match the model with s1-s2 up again")


def test_tcp_between_hosts_of_one_tenant(ring: Ring) -> None:
    answer = ring.call({"op": "iperf", "client": "b1", "server": "b3", "seconds": 2}, timeout=40)
    assert answer["bits_per_second"] > 1_000_000, answer
