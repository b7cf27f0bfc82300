"""What the API acknowledged is in the store: a controller restored from it answers the same."""

from __future__ import annotations

from pathlib import Path

from controller import records
from controller.api import Tokens, make_app
from controller.openflow.ofctl import render_state
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import BLUE, TOKENS, Wsgi, network

VIEWS = ["/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos", "/v1/qos-attachments", "/v1/nodes"]


def busy_day(api: Wsgi) -> None:
    """Creates, refusals and deletes of every kind."""
    api.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    api.ok("POST", "/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vlan=20, mtu=1450), token=BLUE)
    api.ok("POST", "/v1/tenants/red/networks", network("web", "10.0.0.0/24", vni=200))
    api.ok("POST", "/v1/tenants/red/networks", network("tmp", "10.7.0.0/24", vni=300))
    for i, net in enumerate(["blue/web", "blue/web", "blue/db", "red/web", "red/tmp"]):
        api.ok("POST", "/v1/endpoints", {"id": f"ep{i}", "network": net, "node": f"node{1 + i % 2}"})
    api.ok("POST", "/v1/endpoints", {"id": "static", "network": "red/web", "node": "node1", "ip": "10.0.0.99"})
    assert (
        api.post("/v1/endpoints", {"id": "x", "network": "red/web", "node": "node1", "ip": "10.0.0.99"}).status == 409
    )
    assert api.post("/v1/tenants/red/networks", network("dup", "10.0.0.0/25", vni=400)).status == 409
    api.ok("POST", "/v1/qos", {"name": "silver", "rate_kbps": 500, "burst_kb": 50})
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/web"})
    api.ok("POST", "/v1/qos/silver/attachments", {"target": "ep3"})
    api.ok("POST", "/v1/qos/silver/attachments", {"target": "red/tmp"})
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "ep0"})
    api.ok("DELETE", "/v1/qos-attachments", query="target=ep0")
    api.ok("DELETE", "/v1/endpoints/ep1")
    api.ok("DELETE", "/v1/endpoints/ep4")
    api.ok("DELETE", "/v1/tenants/red/networks/tmp")  # with its QoS attachment
    api.ok("POST", "/v1/tenants", {"name": "gone"})
    api.ok("DELETE", "/v1/tenants/gone")
    api.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3", "datapath_id": 42})


def test_restored_controller_answers_the_same(cluster: Wsgi, service: Service, db_path: Path) -> None:
    busy_day(cluster)
    before = {path: cluster.ok("GET", path) for path in VIEWS}
    flows = {node: cluster.ok("GET", f"/v1/nodes/{node}/flows")["flows"] for node in ("node1", "node2", "node3")}

    reopened = SqliteStore(db_path)
    try:
        restored = Service(reopened)
        restored.restore()
        again = Wsgi(make_app(restored, Tokens.from_dict(TOKENS)))
        assert {path: again.ok("GET", path) for path in VIEWS} == before
        for node, text in flows.items():
            assert again.ok("GET", f"/v1/nodes/{node}/flows")["flows"] == text
        # And the next allocation continues where the first controller stopped.
        nxt = {"id": "next", "network": "blue/web", "node": "node1"}
        assert again.ok("POST", "/v1/endpoints", nxt) == cluster.ok("POST", "/v1/endpoints", nxt)
        # A deleted network's id (red/tmp's, the highest) is not handed out again after the restart either.
        later = network("later", "10.8.0.0/24", vni=500)
        again.ok("POST", "/v1/tenants/red/networks", later)
        cluster.ok("POST", "/v1/tenants/red/networks", later)
        assert restored.model.networks["red/later"].id == service.model.networks["red/later"].id
        assert restored.model.networks["red/later"].id > max(
            n.id for n in restored.model.networks.values() if n.name != "later"
        )
    finally:
        reopened.close()


def test_store_records_equal_the_model(cluster: Wsgi, service: Service, db_path: Path) -> None:
    busy_day(cluster)
    reopened = SqliteStore(db_path)
    try:
        stored = reopened.list(records.PREFIX)
        assert sorted((r.key, r.value) for r in stored) == sorted(records.all_records(service.model))
        model = records.restore(stored)
        assert sorted(records.all_records(model)) == sorted(records.all_records(service.model))
        assert "/tenet/qos-attachments/red/tmp" not in {r.key for r in stored}
        assert model.endpoints["ep3"] == service.model.endpoints["ep3"]
    finally:
        reopened.close()


def test_refused_change_leaves_the_store_alone(cluster: Wsgi, service: Service) -> None:
    revision = service.store.revision()
    assert cluster.post("/v1/tenants/blue/networks", network("a", "10.0.0.0/24", vni=0)).status == 400
    assert cluster.post("/v1/tenants", {"name": "blue"}).status == 409
    assert cluster.delete("/v1/tenants/green").status == 404
    assert service.store.revision() == revision


def test_flows_are_the_compiled_state(cluster: Wsgi, service: Service) -> None:
    busy_day(cluster)
    answer = cluster.ok("GET", "/v1/nodes/node1/flows")
    state = service.compiler.compile_node("node1")
    assert answer["flows"] == render_state(state.flows(), state.groups().values(), state.meters().values())
    assert answer["counts"] == {"flows": state.flow_count(), "groups": len(state.groups()), "meters": 2}
    assert "table=classify" in answer["flows"] and answer["flows"].startswith("meter=")
    assert cluster.get("/v1/nodes/node9/flows").status == 404
