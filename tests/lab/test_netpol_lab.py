"""NetworkPolicy with real packets: the upstream e2e cluster (namespaces x, y, z; pods a, b, c serving 80 and
81 on TCP and UDP) on a 3-node lab, scenarios of tests/netpol_scenarios.py applied through the API, new TCP
connections and UDP exchanges between every pair of pods compared with each scenario's truth table."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.client import ClientError, path
from lab import ports
from lab.cluster import Lab, LabError, load_config
from lab.ovs import pid_alive, sh
from lab.servers import parse_serve, probe_from
from tests.netpol_scenarios import SCENARIOS, Scenario

CONFIG: dict[str, Any] = {
    "cluster_network": "default/pods",  # the model the matrix compiles has the cluster network too
    "cluster_subnet": "10.244.0.0/16",
    "tenants": [
        {
            "name": "shop",
            "networks": [
                {"name": "pods", "encap": "vxlan", "vni": 5001, "subnet": "10.0.0.0/16", "gateway": "10.0.0.1"}
            ],
        },
        {"name": "bank", "networks": [{"name": "pods", "encap": "vxlan", "vni": 6001, "subnet": "10.0.0.0/16"}]},
    ],
    "namespaces": [{"name": ns, "tenant": "shop", "labels": {"ns": ns}} for ns in "xyz"],
}
SERVE = parse_serve("80/tcp,80/udp,81/tcp,81/udp")
PORTS, PROTOCOLS = [80, 81], ["tcp", "udp"]
NODES = ["node1", "node2", "node3"]
ENFORCED_WITHIN_S = 20.0

# Default deny; namespaceSelector AND podSelector; ipBlock with except (egress and ingress); a named port;
# endPort ranges (TCP and UDP); egress isolation allowing only a namespace or only one UDP port (no DNS
# exception anywhere); UDP from a namespace.
CHOSEN = [
    "default-deny-ingress",
    "allow-ingress-from-pod-in-namespace-and",
    "egress-ip-block-except",
    "ingress-ip-block-except-own-namespace",
    "ingress-named-port",
    "ingress-end-port",
    "ingress-end-port-udp-81-90",
    "egress-to-namespace",
    "egress-named-port",
    "ingress-port-80-udp-from-namespace",
]


def lab_pod(pod_id: str) -> str:
    """The lab's name of scenario pod "x/a"."""
    return pod_id.replace("/", "-")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(Path(tmp_path_factory.mktemp("netpol-lab")))
    servers: list[int] = []
    try:
        lab.up(len(NODES), CONFIG)
        for i, ns in enumerate("xyz"):
            for j, pod in enumerate("abc"):
                added = lab.pod_add(
                    f"{ns}-{pod}",
                    NODES[(3 * i + j) % len(NODES)],
                    "shop/pods",
                    namespace=ns,
                    labels={"pod": pod},
                    serve=SERVE,
                    ip=f"10.0.{i + 1}.{j + 10}",  # the reference model's addresses (tests/netpol_reference.py)
                )
                assert added.server_pid is not None
                servers.append(added.server_pid)
        yield lab
    finally:
        lab.down()
    assert not any(pid_alive(pid) for pid in servers)
    assert not [n for n in sh("ip", "netns", "list").splitlines() if n.startswith(f"tl-{lab.id}-")]


def truth(scenario: Scenario, lab: Lab) -> dict[ports.Key, bool]:
    keys = ports.wanted(lab.state.pods, PORTS, PROTOCOLS)
    by_name = {lab_pod(f"{ns}/{pod}"): f"{ns}/{pod}" for ns in "xyz" for pod in "abc"}
    return {
        (s, d, proto, port): scenario.expect(by_name[s], by_name[d], proto.upper(), port) for s, d, proto, port in keys
    }


def enforced(lab: Lab, verdicts: dict[ports.Key, bool]) -> list[ports.PortProbe]:
    """Probe until every probe is as `verdicts` says (the policy reached every node), within a deadline."""
    deadline = time.monotonic() + ENFORCED_WITHIN_S
    while True:
        probes = ports.measure(lab, lab.state.pods, PORTS, PROTOCOLS, verdicts=verdicts, retry=False)
        if all(p.matches for p in probes) or time.monotonic() > deadline:
            break
    if not all(p.matches for p in probes):  # a lost first packet is not a policy: one more pass, longer waits
        probes = ports.measure(lab, lab.state.pods, PORTS, PROTOCOLS, verdicts=verdicts)
    return probes


def apply(lab: Lab, policies: list[dict[str, Any]]) -> None:
    for doc in policies:
        meta = doc["metadata"]
        lab.client.put(path("v1", "namespaces", meta["namespace"], "networkpolicies", meta["name"]), doc)


def remove(lab: Lab, policies: list[dict[str, Any]]) -> None:
    for doc in policies:
        meta = doc["metadata"]
        try:
            lab.client.delete(path("v1", "namespaces", meta["namespace"], "networkpolicies", meta["name"]))
        except ClientError as error:
            if error.status != 404:
                raise


def test_the_pods_carry_their_namespace_labels_and_named_ports(lab: Lab) -> None:
    doc = lab.client.get(path("v1", "endpoints", lab.state.pods["y-b"].endpoint or ""))
    assert (doc["ip"], doc["namespace"], doc["labels"]) == ("10.0.2.11", "y", {"pod": "b"})
    assert {(p["name"], p["port"], p["protocol"]) for p in doc["ports"]} == {
        ("serve-80-tcp", 80, "TCP"),
        ("serve-80-udp", 80, "UDP"),
        ("serve-81-tcp", 81, "TCP"),
        ("serve-81-udp", 81, "UDP"),
    }
    assert lab.client.get(path("v1", "namespaces", "z"))["endpoints"] == 3
    shown = sh("ip", "netns", "exec", lab.state.pods["y-b"].netns, "ip", "-4", "-o", "addr", "show", "eth0")
    assert shown.split()[3].split("/")[0] == "10.0.2.11"  # the asked address, given at the ADD


def test_without_policies_every_pod_reaches_every_other(lab: Lab) -> None:
    probes = ports.measure(lab, lab.state.pods, PORTS, PROTOCOLS)
    assert len(probes) == 9 * 8 * 4
    assert all(p.expected and p.allowed for p in probes), ports.render(list(lab.state.pods), probes, PORTS, PROTOCOLS)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name in CHOSEN], ids=lambda s: s.name)
def test_scenario_with_real_packets(lab: Lab, scenario: Scenario) -> None:
    verdicts = truth(scenario, lab)
    assert not all(verdicts.values())  # the scenario denies something, so the probes can tell
    apply(lab, scenario.policies)
    try:
        # The controller's compiled view agrees with the reference table, and so do the packets.
        assert ports.expected(lab, lab.state.pods, list(verdicts)) == verdicts
        probes = enforced(lab, verdicts)
        assert all(p.matches for p in probes), ports.render(list(lab.state.pods), probes, PORTS, PROTOCOLS)
    finally:
        remove(lab, scenario.policies)
    assert all(p.allowed for p in enforced(lab, dict.fromkeys(verdicts, True)))


def test_replies_pass_and_an_ingress_isolated_pod_still_connects_out(lab: Lab) -> None:
    deny = next(s for s in SCENARIOS if s.name == "default-deny-ingress")
    apply(lab, deny.policies)
    try:
        verdicts = truth(deny, lab)
        assert all(p.matches for p in enforced(lab, verdicts))
        x_a, y_b = lab.state.pods["x-a"], lab.state.pods["y-b"]
        # x/a is isolated for ingress: new connections to it are dropped, yet the answers to its own
        # connections (TCP and UDP) come back to it.
        out = probe_from(x_a.netns, [(y_b.ip or "", "tcp", 80), (y_b.ip or "", "udp", 81)], 2.0)
        back = probe_from(y_b.netns, [(x_a.ip or "", "tcp", 80), (x_a.ip or "", "udp", 81)], 0.5)
        assert (out, back) == (["y-b", "y-b"], [None, None])
    finally:
        remove(lab, deny.policies)


def test_matrix_command_prints_the_probes_and_fails_on_a_mismatch(lab: Lab) -> None:
    command = [str(Path(sys.executable).with_name("tenet-lab")), "--state-dir", str(lab.dir), "matrix"]
    command += ["--ports", "80,81", "--protocols", "tcp,udp", "--json"]
    apply(lab, next(s for s in SCENARIOS if s.name == "ingress-named-port").policies)
    try:
        checked = enforced(lab, truth(next(s for s in SCENARIOS if s.name == "ingress-named-port"), lab))
        assert all(p.matches for p in checked), ports.render(list(lab.state.pods), checked, PORTS, PROTOCOLS)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        probes = json.loads(done.stdout)["probes"]
        assert len(probes) == 9 * 8 * 4
        assert set(probes[0]) == {"from", "to", "protocol", "port", "allowed", "expected"}
        into_x = {(p["protocol"], p["port"], p["allowed"]) for p in probes if p["to"].startswith("x-")}
        assert into_x == {("tcp", 81, True), ("tcp", 80, False), ("udp", 80, False), ("udp", 81, False)}
        # A server gone: its pod no longer answers what the policy allows, and the command says so.
        pod = lab.state.pods["z-c"]
        assert pod.server_pid is not None
        lab.stop_servers(pod)
        failed = subprocess.run(command[:-1], capture_output=True, text=True, timeout=60, check=False)
        assert failed.returncode == 1
        assert "MISMATCH x-a should reach z-c on tcp/80" in failed.stdout
        lab.start_servers(pod, SERVE)
    finally:
        remove(lab, next(s for s in SCENARIOS if s.name == "ingress-named-port").policies)


def test_pod_options_are_checked_before_anything_is_made(lab: Lab) -> None:
    endpoints = len(lab.client.get("/v1/endpoints"))
    with pytest.raises(ValueError, match="--serve '80/sctp': the protocol is tcp or udp"):
        parse_serve("80/sctp")
    with pytest.raises(LabError, match="--namespace x: it belongs to tenant shop"):
        lab.pod_add("w-a", "node1", "bank/pods", namespace="x")
    assert "w-a" not in lab.state.pods
    with pytest.raises(LabError, match=r"--ip '10\.0\.2': want an IPv4 address"):
        lab.pod_add("w-b", "node1", "shop/pods", ip="10.0.2")
    with pytest.raises(LabError, match=r"--ip 10\.0\.2\.11.*10\.0\.2\.11 is already used"):
        lab.pod_add("w-b", "node1", "shop/pods", namespace="y", ip="10.0.2.11")  # y-b's
    assert "w-b" not in lab.state.pods
    assert not [n for n in sh("ip", "netns", "list").splitlines() if n.startswith(lab.pod_netns("w-b"))]
    assert len(lab.client.get("/v1/endpoints")) == endpoints


def test_served_ports_and_config_namespaces_are_checked(tmp_path: Path) -> None:
    assert [s.container_port() for s in parse_serve("81/udp, 80")] == [
        {"name": "serve-80-tcp", "port": 80, "protocol": "TCP"},
        {"name": "serve-81-udp", "port": 81, "protocol": "UDP"},
    ]
    with pytest.raises(ValueError, match=r"--serve '0/tcp': the port is 1\.\.65535"):
        parse_serve("80/tcp,0/tcp")
    config = tmp_path / "lab.yaml"
    config.write_text("tenants: [{name: shop, networks: [{name: pods, encap: vxlan}]}]\nnamespaces: [{name: x}]\n")
    with pytest.raises(LabError, match=r"namespaces\[0\] needs a name and a tenant"):
        load_config(config)
