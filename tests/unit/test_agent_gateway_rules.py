"""The gateway port's iptables rules from the controller's GET /v1/gateway answer (agent/gateway.py)."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from agent.gateway import GatewayError, NodePortWatch, liberal_tcp, plan_from

DOC = {
    "cluster_network": "default/pods",
    "cluster_subnet": "10.244.0.0/16",
    "transit_subnet": "100.64.0.0/16",
    "gateway": "10.244.0.1",
    "mtu": 1450,
    "node_ports": [{"network": "red/net", "transit_ip": "100.64.0.3", "ports": ["tcp/53", "udp/53"]}],
}


def test_input_accepts_a_networks_transit_address_to_its_node_ports_only_then_drops() -> None:
    plan = plan_from(DOC, IPv4Address("192.168.100.1"))
    assert plan is not None
    accept = "-i tenet-gw0 -s 100.64.0.3/32 -d 192.168.100.1/32 -p {} --dport 53 -j ACCEPT"
    assert [" ".join(rule) for _table, _chain, rule in plan.input_rules()] == [
        accept.format("tcp"),
        accept.format("udp"),
        "-i tenet-gw0 -s 100.64.0.0/16 -j DROP",
    ]
    assert plan.rules()[-3:] == plan.input_rules()


def test_transit_traffic_the_host_dnats_or_sends_to_the_cluster_is_dropped_in_mangle() -> None:
    plan = plan_from(DOC, IPv4Address("192.168.100.1"))
    assert plan is not None
    mangle = [" ".join(rule) for table, chain, rule in plan.rules() if (table, chain) == ("mangle", "TENET-FORWARD")]
    assert mangle == [
        "-s 100.64.0.0/16 -m conntrack --ctstate DNAT -j DROP",
        "-s 100.64.0.0/16 -d 10.244.0.0/16 -j DROP",
    ]


def test_no_node_ports_means_input_drops_the_transit_subnet() -> None:
    plan = plan_from({**DOC, "node_ports": []}, IPv4Address("192.168.100.1"))
    older = plan_from({k: v for k, v in DOC.items() if k != "node_ports"}, IPv4Address("192.168.100.1"))
    assert plan is not None and older is not None
    assert (
        plan.input_rules()
        == older.input_rules()
        == [("filter", "TENET-INPUT", ("-i", "tenet-gw0", "-s", "100.64.0.0/16", "-j", "DROP"))]
    )


def test_the_watch_replaces_input_only_when_the_node_ports_changed() -> None:
    class Client:
        def __init__(self) -> None:
            self.doc: dict = {**DOC, "node_ports": []}

        def get(self, url: str) -> dict:
            assert url == "/v1/gateway"
            return self.doc

    class Gateway:
        def __init__(self) -> None:
            self.replaced: list = []

        def replace_input(self, plan: object) -> None:
            self.replaced.append(plan)

        def repair(self, plan: object) -> list[str]:
            return []

    client, gateway = Client(), Gateway()
    plan = plan_from(client.doc, IPv4Address("192.168.100.1"))
    assert plan is not None
    watch = NodePortWatch(gateway, client, plan)  # type: ignore[arg-type]
    assert watch.check() is False and gateway.replaced == []
    client.doc = DOC
    assert watch.check() is True and watch.check() is False
    assert [p.node_ports for p in gateway.replaced] == [((IPv4Address("100.64.0.3"), ("tcp/53", "udp/53")),)]


def test_liberal_tcp_asks_the_nodes_vswitchd_and_reports_a_refusal(tmp_path: Path) -> None:
    calls: list[tuple[str, ...]] = []

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        calls.append(args)
        return subprocess.CompletedProcess(args, code, "", "no such command" if code else "")

    (tmp_path / "ovs-vswitchd.ctl").touch()
    assert liberal_tcp(str(tmp_path), run=run) is True
    assert calls[-1][-3:] == ("-t", str(tmp_path / "ovs-vswitchd.ctl"), "dpctl/ct-disable-tcp-seq-chk")
    assert liberal_tcp("/nowhere", run=lambda *a: run(*a, code=1)) is False
    assert calls[-1][1:] == ("OVS_RUNDIR=/nowhere", "ovs-appctl", "-t", "ovs-vswitchd", "dpctl/ct-disable-tcp-seq-chk")


def test_the_cluster_networks_masquerade_follows_its_nat_outgoing() -> None:
    masquerade = ("nat", "TENET-POSTROUTING", ("-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"))
    on = plan_from({**DOC, "nat_outgoing": True}, IPv4Address("192.168.100.1"))
    older = plan_from(DOC, IPv4Address("192.168.100.1"))
    off = plan_from({**DOC, "nat_outgoing": False}, IPv4Address("192.168.100.1"))
    assert on is not None and older is not None and off is not None
    assert masquerade in on.rules() and masquerade in older.rules()  # a controller without the field: on
    dnat_only = ("-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-m", "conntrack", "--ctstate", "DNAT")
    assert off.rules() == [("nat", "TENET-POSTROUTING", (*dnat_only, "-j", "MASQUERADE")), *on.rules()[1:]]
    assert on.rules()[0] == masquerade  # the rest, the transit and DNAT masquerades, stays


def test_the_watch_replaces_the_nat_chain_only_when_nat_outgoing_changed() -> None:
    class Client:
        def __init__(self) -> None:
            self.doc: dict = {**DOC, "nat_outgoing": True}

        def get(self, url: str) -> dict:
            return self.doc

    class Gateway:
        def __init__(self) -> None:
            self.replaced: list = []

        def replace_nat(self, plan: object) -> None:
            self.replaced.append(plan)

        def repair(self, plan: object) -> list:
            return []

    client, gateway = Client(), Gateway()
    plan = plan_from(client.doc, IPv4Address("192.168.100.1"))
    assert plan is not None
    watch = NodePortWatch(gateway, client, plan)  # type: ignore[arg-type]
    watch.check()
    assert gateway.replaced == []
    client.doc = {**DOC, "nat_outgoing": False}
    watch.check()
    watch.check()
    assert [p.nat_outgoing for p in gateway.replaced] == [False] and watch.plan.nat_outgoing is False
    client.doc = {**DOC, "nat_outgoing": True}
    watch.check()
    assert [p.nat_outgoing for p in gateway.replaced] == [False, True]


def test_liberal_tcp_survives_a_hanging_vswitchd_and_names_a_missing_ovs_appctl() -> None:
    def hangs(*args: str) -> subprocess.CompletedProcess:
        raise subprocess.TimeoutExpired(args, 30)

    def missing(*args: str) -> subprocess.CompletedProcess:
        raise FileNotFoundError(2, "No such file or directory", "env")

    assert liberal_tcp("/nowhere", run=hangs) is False
    with pytest.raises(GatewayError, match="ovs-appctl"):
        liberal_tcp("/nowhere", run=missing)
    not_found = subprocess.CompletedProcess((), 127, "", "env: 'ovs-appctl': No such file or directory")
    with pytest.raises(GatewayError, match="no ovs-appctl"):
        liberal_tcp("/nowhere", run=lambda *a: not_found)


def test_the_watch_keeps_running_when_liberal_tcp_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[int] = []

    def raises(rundir: str) -> bool:
        raise subprocess.TimeoutExpired(("ovs-appctl",), 30)

    monkeypatch.setattr("agent.gateway.liberal_tcp", raises)
    plan = plan_from(DOC, IPv4Address("192.168.100.1"))
    assert plan is not None
    watch = NodePortWatch(None, None, plan, vswitchd="/nowhere")  # type: ignore[arg-type]

    def check() -> bool:
        checked.append(1)
        return False

    monkeypatch.setattr(watch, "check", check)
    watch.round(NodePortWatch.LIBERAL_EVERY)  # raised out of the thread before
    assert checked == [1]
