"""A node registering again with a new tunnel IP, uplink or datapath id while it has pods is updated in place."""

from __future__ import annotations

from pathlib import Path

from controller.pipeline.compile import Compiler
from controller.pipeline.state import ChangeSet
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import Wsgi, network


def full_compile_text(service: Service, node: str) -> list[str]:
    return sorted(map(str, Compiler(service.model).compile_all()[node].flows()))


def test_new_tunnel_ip_reaches_the_other_nodes_flows(cluster: Wsgi, service: Service, db_path: Path) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vlan=30))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    cluster.ok("POST", "/v1/endpoints", {"id": "b2", "network": "blue/web", "node": "node2"})
    cluster.ok("POST", "/v1/endpoints", {"id": "d1", "network": "blue/db", "node": "node1"})
    before = cluster.ok("GET", "/v1/nodes/node2/flows")["flows"]
    assert "192.168.50.1" in before and "192.168.50.9" not in before
    published: list[dict[str, ChangeSet]] = []
    service.subscribe(published.append)

    node = cluster.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.9", "uplink": "eth2", "datapath_id": 77})
    assert (node["tunnel_ip"], node["uplink"], node["datapath_id"]) == ("192.168.50.9", "eth2", 77)
    after = cluster.ok("GET", "/v1/nodes/node2/flows")["flows"]
    assert "192.168.50.9" in after and "192.168.50.1" not in after  # tun_dst toward node1 is the new one
    assert [e["id"] for e in cluster.ok("GET", "/v1/endpoints", query="node=node1")] == ["b1", "d1"]
    for name in ("node1", "node2"):
        assert sorted(map(str, service.compiler.states[name].flows())) == full_compile_text(service, name)
    assert len(published) == 1 and {"node1", "node2"} <= set(published[0])

    # A restart from the store holds the new values.
    reopened = SqliteStore(db_path)
    try:
        restored = Service(reopened)
        restored.restore()
        assert str(restored.model.nodes["node1"].tunnel_ip) == "192.168.50.9"
        assert restored.model.nodes["node1"].datapath_id == 77
        assert sorted(map(str, restored.compiler.states["node2"].flows())) == full_compile_text(service, "node2")
    finally:
        reopened.close()


def test_conflicting_reregistration_is_refused_and_changes_nothing(cluster: Wsgi, service: Service) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    cluster.ok("POST", "/v1/endpoints", {"id": "b2", "network": "blue/web", "node": "node2", "port_name": "tnb2"})
    nodes, revision = cluster.ok("GET", "/v1/nodes"), service.store.revision()
    dpid2 = nodes[1]["datapath_id"]
    for body, field, words in [
        ({"tunnel_ip": "192.168.50.2"}, "node.tunnel_ip", "already the tunnel IP of node 'node2'"),
        ({"tunnel_ip": "192.168.50.1", "datapath_id": dpid2}, "node.datapath_id", "is already used"),
        ({"tunnel_ip": "192.168.50.1", "uplink": "tenet-up"}, "node.uplink", "reserved infrastructure name"),
    ]:
        answer = cluster.put("/v1/nodes/node1", body)
        assert answer.status in (400, 409) and answer.error["field"] == field, answer
        assert words in answer.error["message"]
    answer = cluster.put("/v1/nodes/node2", {"tunnel_ip": "192.168.50.2", "uplink": "tnb2"})
    assert answer.status == 409 and "an endpoint's port on node 'node2'" in answer.error["message"]
    assert cluster.ok("GET", "/v1/nodes") == nodes and service.store.revision() == revision
