"""Fabric links through the API (admin only, validated by the model, stored), and their operational state
as switches report it through the service: published to the switches, never stored."""

from __future__ import annotations

from pathlib import Path

from controller.api import Tokens, make_app
from controller.pipeline.state import ChangeSet
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import BLUE, TOKENS, Wsgi, network

LINK = {"a": "node1", "a_port": "eth2", "b": "node3", "b_port": "eth2"}


def ring(api: Wsgi) -> Wsgi:
    """node1 - node3 - node4 - node1 with a VLAN network hosted on node1 and node3."""
    api.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3"})
    api.ok("PUT", "/v1/nodes/node4", {"tunnel_ip": "192.168.50.4"})
    api.ok("POST", "/v1/links", LINK)
    api.ok("POST", "/v1/links", {"a": "node3", "a_port": "eth3", "b": "node4", "b_port": "eth3"})
    api.ok("POST", "/v1/links", {"a": "node4", "a_port": "eth2", "b": "node1", "b_port": "eth3"})
    api.ok("POST", "/v1/tenants/blue/networks", network("db", "10.1.1.0/24", vlan=101))
    api.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/db", "node": "node1"})
    api.ok("POST", "/v1/endpoints", {"id": "b3", "network": "blue/db", "node": "node3"})
    return api


def test_create_and_list_links(cluster: Wsgi) -> None:
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3"})
    answer = cluster.post("/v1/links", LINK)
    assert answer.status == 201 and answer.headers["Location"] == "/v1/links"
    assert answer.body == {**LINK, "a_ofport": 3, "b_ofport": 3, "up": True}
    second = cluster.ok("POST", "/v1/links", {"a": "node3", "a_port": "eth3", "b": "node1", "b_port": "eth3"})
    assert (second["a_ofport"], second["b_ofport"]) == (4, 4)  # link ports in declaration order, from 3
    assert [link["b_port"] for link in cluster.ok("GET", "/v1/links")] == ["eth2", "eth3"]


def test_links_are_validated_and_admin_only(cluster: Wsgi) -> None:
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3"})
    cluster.ok("POST", "/v1/links", LINK)
    again = cluster.post("/v1/links", {**LINK, "b_port": "eth9"})
    assert again.status == 409 and again.error["field"] == "link.a_port"
    assert cluster.post("/v1/links", {**LINK, "b": "nowhere"}).error["field"] == "link.b"
    assert cluster.post("/v1/links", {**LINK, "b": "node1", "b_port": "eth7"}).status == 400
    assert cluster.post("/v1/links", {**LINK, "a_port": "has space"}).error["field"] == "link.a_port"
    assert cluster.post("/v1/links", {**LINK, "colour": "red"}).status == 400
    assert cluster.post("/v1/links", {"a": "node1"}).status == 400
    assert cluster.post("/v1/links", LINK, token=BLUE).status == 403
    assert cluster.get("/v1/links", token=BLUE).status == 403
    assert len(cluster.ok("GET", "/v1/links")) == 1


def test_a_port_down_recompiles_publishes_and_is_not_stored(cluster: Wsgi, service: Service) -> None:
    ring(cluster)
    published: list[dict[str, ChangeSet]] = []
    service.subscribe(published.append)
    before = {n: cluster.ok("GET", f"/v1/nodes/{n}/flows")["flows"] for n in ("node1", "node3", "node4")}
    revision = service.store.revision()

    assert service.set_link_ports("node3", {"eth2": False})
    assert [link["up"] for link in cluster.ok("GET", "/v1/links")] == [False, True, True]
    # b1 reaches b3 the long way now: node4 becomes a carrier, and both ends change their paths.
    assert {"node1", "node3", "node4"} <= set(published[-1])
    after = {n: cluster.ok("GET", f"/v1/nodes/{n}/flows")["flows"] for n in before}
    assert all(after[n] != before[n] for n in before)
    assert service.store.revision() == revision, "link state is operational: nothing is stored"
    assert not service.set_link_ports("node3", {"eth2": False}), "the same report again changes nothing"

    assert service.set_link_ports("node3", {"eth2": True})
    assert all(link["up"] for link in cluster.ok("GET", "/v1/links"))
    assert {n: cluster.ok("GET", f"/v1/nodes/{n}/flows")["flows"] for n in before} == before


def test_links_survive_a_restart_and_come_back_up(cluster: Wsgi, service: Service, db_path: Path) -> None:
    ring(cluster)
    service.set_link_ports("node1", {"eth2": False})
    reopened = SqliteStore(db_path)
    try:
        restored = Service(reopened)
        restored.restore()
        again = Wsgi(make_app(restored, Tokens.from_dict(TOKENS)))
        links = again.ok("GET", "/v1/links")
        assert [(link["a"], link["b"], link["up"]) for link in links] == [
            ("node1", "node3", True),  # until a switch says otherwise
            ("node3", "node4", True),
            ("node4", "node1", True),
        ]
    finally:
        reopened.close()
