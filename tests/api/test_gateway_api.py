"""The cluster network made at start, nat_outgoing and node_ports through the API: shown, set at create, changed,
kept."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from controller.api import Tokens, make_app
from controller.app import reconcile
from controller.openflow import messages
from controller.pipeline.state import ChangeSet
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import BLUE, RED, TOKENS, Wsgi
from topology.gateway import GatewayConfig

CONFIG = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/16"))
NETWORKS = "/v1/tenants/blue/networks"


@pytest.fixture
def gateway_service(tmp_path: Path) -> Iterator[Service]:
    store = SqliteStore(tmp_path / "tenet.db")
    service = Service(store, gateway=CONFIG)
    service.ensure_cluster_network()
    yield service
    store.close()


@pytest.fixture
def api(gateway_service: Service) -> Wsgi:
    api = Wsgi(make_app(gateway_service, Tokens.from_dict(TOKENS)))
    api.ok("POST", "/v1/tenants", {"name": "blue"})
    return api


def test_the_cluster_network_is_made_at_start_with_nat_outgoing_on(api: Wsgi) -> None:
    pods = api.ok("GET", "/v1/tenants/default/networks/pods")
    assert (pods["subnet"], pods["nat_outgoing"]) == ("10.244.0.0/16", True)
    gateway = api.ok("GET", "/v1/gateway")
    assert gateway == {
        "cluster_network": "default/pods",
        "cluster_subnet": "10.244.0.0/16",
        "transit_subnet": "100.64.0.0/16",
        "gateway": "10.244.0.1",
        "mtu": pods["mtu"],
        "nat_outgoing": True,
        "node_ports": [],
    }
    assert api.ok("PATCH", "/v1/tenants/default/networks/pods", {"nat_outgoing": False})["nat_outgoing"] is False
    assert api.ok("GET", "/v1/gateway")["nat_outgoing"] is False  # the nodes stop masquerading it


def test_nat_outgoing_at_create_and_by_patch_and_after_a_restart(api: Wsgi, gateway_service: Service) -> None:
    made = api.ok("POST", NETWORKS, {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24"}, token=BLUE)
    assert made["nat_outgoing"] is False
    on = {"name": "b", "encap": "vxlan", "subnet": "10.2.0.0/24", "nat_outgoing": True}
    assert api.ok("POST", NETWORKS, on, token=BLUE)["nat_outgoing"] is True
    assert api.ok("PATCH", f"{NETWORKS}/a", {"nat_outgoing": True}, token=BLUE)["nat_outgoing"] is True
    assert api.ok("PATCH", f"{NETWORKS}/b", {"nat_outgoing": False})["nat_outgoing"] is False
    gateway_service.restore()
    assert gateway_service.model.networks["blue/a"].nat_outgoing is True
    assert gateway_service.model.networks["blue/b"].nat_outgoing is False


def test_bad_nat_outgoing_and_a_subnet_overlapping_the_cluster_are_refused(api: Wsgi) -> None:
    answer = api.call("PATCH", "/v1/tenants/blue/networks/nowhere", {"nat_outgoing": True})
    assert answer.status == 404
    api.ok("POST", NETWORKS, {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24"})
    answer = api.call("PATCH", f"{NETWORKS}/a", {"nat_outgoing": "yes"})
    assert answer.status == 400 and answer.error["field"] == "network.nat_outgoing"
    answer = api.call("POST", NETWORKS, {"name": "c", "encap": "vxlan", "subnet": "10.244.3.0/24"})
    assert answer.status == 409 and "cluster subnet" in answer.error["message"]
    assert api.ok("GET", f"{NETWORKS}/a")["nat_outgoing"] is False


def test_node_ports_by_the_admin_at_create_and_by_patch_shown_and_kept(api: Wsgi, gateway_service: Service) -> None:
    body = {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24", "node_ports": ["udp/53", "tcp/53", "tcp/53"]}
    made = api.ok("POST", NETWORKS, body)
    assert made["node_ports"] == ["tcp/53", "udp/53"]
    transit = f"100.64.0.{made['id']}"
    assert api.ok("GET", "/v1/gateway")["node_ports"] == [
        {"network": "blue/a", "transit_ip": transit, "ports": ["tcp/53", "udp/53"]}
    ]
    changed = api.ok("PATCH", f"{NETWORKS}/a", {"node_ports": ["tcp/10250"], "nat_outgoing": True})
    assert (changed["node_ports"], changed["nat_outgoing"]) == (["tcp/10250"], True)
    gateway_service.restore()
    assert gateway_service.model.networks["blue/a"].node_ports == ("tcp/10250",)
    assert api.ok("PATCH", f"{NETWORKS}/a", {"node_ports": "none"})["node_ports"] == []
    assert api.ok("GET", "/v1/gateway")["node_ports"] == []
    assert api.ok("GET", f"{NETWORKS}/a")["node_ports"] == []


def test_node_ports_need_the_admin_and_bad_ones_change_nothing(api: Wsgi) -> None:
    api.ok("POST", NETWORKS, {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24", "node_ports": ["tcp/53"]})
    answer = api.call("PATCH", f"{NETWORKS}/a", {"node_ports": ["tcp/22"]}, token=BLUE)
    assert answer.status == 403 and "node_ports" in answer.error["message"]
    body = {"name": "b", "encap": "vxlan", "subnet": "10.2.0.0/24", "node_ports": ["tcp/22"]}
    assert api.call("POST", NETWORKS, body, token=BLUE).status == 403
    for bad, field in (
        (["tcp/70000"], "network.node_ports[0]"),
        (["sctp/9"], "network.node_ports[0]"),
        ("tcp/53", "network.node_ports"),
    ):
        answer = api.call("PATCH", f"{NETWORKS}/a", {"node_ports": bad, "nat_outgoing": True})
        assert answer.status == 400 and answer.error["field"] == field, answer.error
    answer = api.call("PATCH", "/v1/tenants/default/networks/pods", {"node_ports": ["tcp/53"]})
    assert answer.status == 400 and answer.error["field"] == "network.node_ports"
    assert api.call("PATCH", f"{NETWORKS}/a", {}).status == 400
    assert api.call("POST", NETWORKS, {**body, "node_ports": ["tcp/0"]}).status == 400
    assert api.call("GET", f"{NETWORKS}/b").status == 404
    after = api.ok("GET", f"{NETWORKS}/a")
    assert (after["node_ports"], after["nat_outgoing"]) == (["tcp/53"], False)  # all or nothing


def test_create_checks_the_network_id_the_network_will_get(tmp_path: Path) -> None:
    """A /29 transit subnet has addresses for network ids 1..6: the network that would get id 7 cannot SNAT,
    and the refusal leaves nothing behind (the node PUT that follows still works)."""
    store = SqliteStore(tmp_path / "tenet.db")
    try:
        small = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/29"))
        service = Service(store, gateway=small)
        service.ensure_cluster_network()  # id 1
        api = Wsgi(make_app(service, Tokens.from_dict(TOKENS)))
        api.ok("POST", "/v1/tenants", {"name": "blue"})
        for i in range(2, 7):
            body = {"name": f"n{i}", "encap": "vxlan", "subnet": f"10.{i}.0.0/24", "nat_outgoing": True}
            assert api.ok("POST", NETWORKS, body, token=BLUE)["id"] == i
        body = {"name": "n7", "encap": "vxlan", "subnet": "10.7.0.0/24", "nat_outgoing": True}
        answer = api.call("POST", NETWORKS, body, token=BLUE)
        assert answer.status == 400 and answer.error["field"] == "network.nat_outgoing", answer.error
        ports = {"name": "n7", "encap": "vxlan", "subnet": "10.7.0.0/24", "node_ports": ["tcp/53"]}
        answer = api.call("POST", NETWORKS, ports)
        assert answer.status == 400 and answer.error["field"] == "network.node_ports", answer.error
        assert api.call("GET", f"{NETWORKS}/n7").status == 404
        api.ok("POST", NETWORKS, {"name": "n7", "encap": "vxlan", "subnet": "10.7.0.0/24"}, token=BLUE)
        api.ok("PUT", "/v1/nodes/node9", {"tunnel_ip": "192.168.50.9"})
        service.restore()
        assert "blue/n7" in service.model.networks
    finally:
        store.close()


@pytest.mark.parametrize(
    ("value", "status", "field"),
    [
        ("none", 201, None),  # as PATCH takes it
        ({"tcp/53": True}, 400, "network.node_ports"),
        (5, 400, "network.node_ports"),
        (True, 400, "network.node_ports"),
        (["tcp/" + "5" * 5000], 400, "network.node_ports[0]"),
        (["tcp/065535"], 400, "network.node_ports[0]"),
    ],
)
def test_node_ports_at_create_are_validated_as_by_patch(api: Wsgi, value: object, status: int, field: str) -> None:
    body = {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24", "node_ports": value}
    answer = api.call("POST", NETWORKS, body)
    assert answer.status == status, answer
    if field is not None:
        assert answer.error["field"] == field, answer.error
        patched = api.call("PATCH", "/v1/tenants/default/networks/pods", {"node_ports": value})
        assert patched.status == 400
    else:
        assert answer.body["node_ports"] == []


def test_deleting_a_network_flushes_its_conntrack_zones_on_every_node(api: Wsgi, gateway_service: Service) -> None:
    for i in (1, 2):
        api.ok("PUT", f"/v1/nodes/node{i}", {"tunnel_ip": f"192.168.50.{i}"})
    made = api.ok("POST", NETWORKS, {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24", "nat_outgoing": True})
    published: list[dict[str, ChangeSet]] = []
    gateway_service.subscribe(published.append)
    api.ok("DELETE", f"{NETWORKS}/a")
    assert {node: changes.ct_flush_zones for node, changes in published[-1].items()} == {
        node: [made["id"], 0x8000 | made["id"]] for node in ("node1", "node2")
    }
    plan = reconcile.from_changes(published[-1]["node1"])
    assert plan.ct_flush_zones == [made["id"], 0x8000 | made["id"]]


def test_the_zone_flush_is_the_nicira_message_ovs_decodes() -> None:
    dp = messages.OfflineDatapath()
    message = messages.ct_flush_zone(dp, 0x8004)
    dp.set_xid(message)
    message.serialize()
    printed = subprocess.run(["ovs-ofctl", "ofp-print", bytes(message.buf).hex()], capture_output=True, text=True)
    assert "NXT_CT_FLUSH_ZONE (OF1.3)" in printed.stdout and "zone_id=32772" in printed.stdout, printed


def test_a_tenants_token_sees_only_its_own_networks_node_ports(gateway_service: Service) -> None:
    tokens = {**TOKENS, "nodes": {"node1": ["node1-token"]}}
    api = Wsgi(make_app(gateway_service, Tokens.from_dict(tokens)))
    for tenant in ("blue", "red"):
        api.ok("POST", "/v1/tenants", {"name": tenant})
        body = {"name": "a", "encap": "vxlan", "subnet": "10.1.0.0/24", "node_ports": ["tcp/53"]}
        api.ok("POST", f"/v1/tenants/{tenant}/networks", body)
    both = ["blue/a", "red/a"]
    assert [e["network"] for e in api.ok("GET", "/v1/gateway")["node_ports"]] == both
    assert [e["network"] for e in api.ok("GET", "/v1/gateway", token="node1-token")["node_ports"]] == both
    assert [e["network"] for e in api.ok("GET", "/v1/gateway", token=BLUE)["node_ports"]] == ["blue/a"]
    assert [e["network"] for e in api.ok("GET", "/v1/gateway", token=RED)["node_ports"]] == ["red/a"]
