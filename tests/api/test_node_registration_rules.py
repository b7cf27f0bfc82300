"""Registering a node again checks what the first registration does, a node token cannot take another
node's datapath id, and what the API stores is always what a restart restores."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from controller.api import Tokens, make_app
from controller.pipeline.compile import Compiler
from controller.service import Service
from controller.store.base import StoreError
from tests.api.support import ADMIN, TOKENS, Wsgi, network
from topology.model import default_port_name, derived_datapath_id

N1, N2 = "node1-token", "node2-token"


@pytest.fixture
def api(service: Service) -> Wsgi:
    tokens = {**TOKENS, "nodes": {"node1": [N1], "node2": [N2]}}
    return Wsgi(make_app(service, Tokens.from_dict(tokens)))


def test_a_node_token_cannot_take_the_datapath_id_of_another_tunnel_ip(cluster: Wsgi) -> None:
    victim = derived_datapath_id(IPv4Address("192.168.50.3"))
    answer = cluster.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.1", "datapath_id": victim}, token=N1)
    assert answer.status == 403 and answer.error["field"] == "node.datapath_id"
    assert "192.168.50.3" in answer.error["message"]
    # node3 still registers with its own id
    assert cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "datapath_id": victim})


def test_a_node_token_may_only_move_to_the_id_of_its_own_tunnel_ip(cluster: Wsgi) -> None:
    own = derived_datapath_id(IPv4Address("192.168.50.11"))
    doc = cluster.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.11", "datapath_id": own}, token=N1)
    assert doc["datapath_id"] == own
    answer = cluster.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.11", "datapath_id": 0x1234}, token=N1)
    assert answer.status == 403 and "cluster-admin" in answer.error["message"]
    assert cluster.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.11", "datapath_id": 0x1234})  # admin


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tunnel_ip": "127.0.0.1"}, "node.tunnel_ip"),
        ({"tunnel_ip": "224.0.0.1"}, "node.tunnel_ip"),
        ({"tunnel_ip": "192.168.50.2", "uplink": "a" * 40}, "node.uplink"),
        ({"tunnel_ip": "192.168.50.2", "underlay_mtu": 0}, "node.underlay_mtu"),
        ({"tunnel_ip": "192.168.50.2", "uplink_mtu": 0}, "node.uplink_mtu"),
        ({"tunnel_ip": "192.168.50.2", "datapath_id": 0}, "node.datapath_id"),
    ],
)
def test_registering_again_validates_like_the_first_time(cluster: Wsgi, body: dict[str, Any], field: str) -> None:
    before = cluster.ok("GET", "/v1/nodes/node2")
    answer = cluster.put("/v1/nodes/node2", body, token=N2)
    assert answer.status == 400 and answer.error["field"] == field
    assert cluster.ok("GET", "/v1/nodes/node2") == before


def test_a_dotted_uplink_is_as_valid_on_a_second_registration(cluster: Wsgi) -> None:
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "uplink": "eth1.101"})
    assert cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.33", "uplink": "eth1.101"})


def test_what_any_change_stores_is_what_a_restart_restores(cluster: Wsgi, service: Service) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    changes = [
        ("PUT", "/v1/nodes/node1", {"tunnel_ip": "127.0.0.1"}, N1),
        ("PUT", "/v1/nodes/node2", {"tunnel_ip": "192.168.50.22", "uplink": "eth1.7"}, N2),
        ("PUT", "/v1/nodes/node2", {"tunnel_ip": "192.168.50.22", "uplink": "a" * 16}, N2),
        ("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.1", "underlay_mtu": 9000}, N1),
        ("POST", "/v1/links", {"a": "node1", "a_port": "tenet-tun", "b": "node2", "b_port": "l2"}, None),
        ("POST", "/v1/links", {"a": "node1", "a_port": "l1", "b": "node2", "b_port": "l2"}, None),
        ("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"}, N1),
        ("POST", "/v1/qos/gold/attachments", {"target": "b1"}, None),
    ]
    for method, path, body, token in changes:
        cluster.call(method, path, body, token=token or ADMIN)
    fresh = Service(service.store)
    fresh.restore()
    model, live = fresh.model, service.model
    assert (model.nodes, model.links, model.endpoints) == (live.nodes, live.links, live.endpoints)
    assert (model.networks, model.qos_attachments) == (live.networks, live.qos_attachments)


def test_a_failed_re_registration_leaves_model_store_and_compiler_as_they_were(
    cluster: Wsgi, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "uplink": "eth1.101"})
    before = service.model.nodes["node3"]

    def broken(operations: Any, **kwargs: Any) -> Any:
        raise StoreError("sqlite: disk I/O error (injected)")

    monkeypatch.setattr(service.store, "commit", broken)
    assert cluster.put("/v1/nodes/node3", {"tunnel_ip": "192.168.50.33", "uplink": "eth2"}).status == 503
    monkeypatch.undo()
    assert service.model.nodes["node3"] == before
    assert service.model.node("node3") is before
    fresh = Compiler(service.model).compile_all()
    assert all(service.compiler.states[n].same_as(s) for n, s in fresh.items())
    # the old tunnel IP is the node's again, the new one is free
    assert cluster.put("/v1/nodes/node4", {"tunnel_ip": "192.168.50.33"}).status == 201
    assert cluster.put("/v1/nodes/node5", {"tunnel_ip": "192.168.50.3"}).status == 409


def test_every_undo_step_runs_even_when_one_fails(service: Service) -> None:
    from controller.service import _Change

    done: list[str] = []
    change = _Change()
    change.undo(lambda: done.append("first"))
    change.undo(lambda: 1 / 0)
    change.undo(lambda: done.append("last"))
    assert change.undo_all() is False
    assert done == ["last", "first"]


@pytest.mark.parametrize("port", ["tenet-tun", "tenet-gw0", "br-int", "br-phy", "eth1", "ENDPOINT"])
def test_a_fabric_link_port_is_no_infrastructure_or_endpoint_port(cluster: Wsgi, port: str) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    endpoint = cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node2"})
    port = endpoint["port_name"] if port == "ENDPOINT" else port
    answer = cluster.post("/v1/links", {"a": "node1", "a_port": "l1", "b": "node2", "b_port": port})
    assert answer.status in (400, 409) and answer.error["field"] == "link.b_port"
    assert cluster.ok("GET", "/v1/links") == []


def test_an_endpoint_cannot_get_a_default_port_name_a_fabric_link_took(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    link = {"a": "node1", "a_port": default_port_name("b1"), "b": "node2", "b_port": "l2"}
    cluster.ok("POST", "/v1/links", link)
    answer = cluster.post("/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    assert answer.status == 409 and answer.error["field"] == "endpoint.port_name"
