"""Node tokens (the node agent's): register their own node, manage endpoints on it, nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api import Tokens, make_app
from controller.service import Service
from tests.api.support import ADMIN, BLUE, TOKENS, Wsgi, network

N1, N2 = "node1-token", "node2-token"
VIEWS = ["/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos", "/v1/qos-attachments", "/v1/nodes"]


@pytest.fixture
def api(service: Service) -> Wsgi:
    tokens = {**TOKENS, "nodes": {"node1": [N1], "node2": [N2]}}
    return Wsgi(make_app(service, Tokens.from_dict(tokens)))


@pytest.fixture
def nodes(cluster: Wsgi) -> Wsgi:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/tenants/red/networks", network("web", "10.0.0.0/24", vni=200))
    cluster.ok("POST", "/v1/endpoints", {"id": "on2", "network": "red/web", "node": "node2"}, token=N2)
    return cluster


def state(api: Wsgi) -> dict[str, Any]:
    return {path: api.ok("GET", path) for path in VIEWS}


def test_node_token_manages_endpoints_on_its_node(nodes: Wsgi) -> None:
    doc = nodes.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"}, token=N1)
    assert doc["port_name"].startswith("tn")
    named = {"id": "b2", "network": "red/web", "node": "node1", "port_name": "tnown0"}
    assert nodes.ok("POST", "/v1/endpoints", named, token=N1)["port_name"] == "tnown0"
    assert [e["id"] for e in nodes.ok("GET", "/v1/endpoints", token=N1)] == ["b1", "b2"]
    assert [e["id"] for e in nodes.ok("GET", "/v1/endpoints", token=N1, query="node=node1")] == ["b1", "b2"]
    assert nodes.ok("GET", "/v1/endpoints/b1/ready", token=N1)["ready"] is False
    node = nodes.ok("GET", "/v1/nodes/node1", token=N1)
    assert node["switch"] == {"connected": False} and node["endpoints"] == 2
    assert [n["name"] for n in nodes.ok("GET", "/v1/nodes", token=N1)] == ["node1"]
    assert nodes.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.1"}, token=N1)["name"] == "node1"
    assert nodes.delete("/v1/endpoints/b1", token=N1).status == 204
    assert nodes.get("/v1/endpoints/b1", token=N1).status == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("GET", "/v1/endpoints/on2", None, "is on node 'node2'"),
        ("DELETE", "/v1/endpoints/on2", None, "is on node 'node2'"),
        ("GET", "/v1/endpoints/on2/ready", None, "is on node 'node2'"),
        ("POST", "/v1/endpoints", {"id": "x", "network": "blue/web", "node": "node2"}, "on node 'node2'"),
        ("PUT", "/v1/nodes/node2", {"tunnel_ip": "192.168.50.2"}, "registering node 'node2'"),
        ("PUT", "/v1/nodes/node9", {"tunnel_ip": "192.168.50.9"}, "registering node 'node9'"),
        ("GET", "/v1/tenants", None, "a node token manages only its own node"),
        ("GET", "/v1/tenants/blue", None, "a node token manages only its own node"),
        ("POST", "/v1/tenants", {"name": "green"}, "a node token manages only its own node"),
        ("PUT", "/v1/tenants/blue", {"quota": {"networks": 1}}, "a node token manages only its own node"),
        ("GET", "/v1/networks", None, "a node token manages only its own node"),
        ("POST", "/v1/tenants/blue/networks", network("x", "10.9.0.0/24", vni=9), "a node token manages only"),
        ("DELETE", "/v1/tenants/blue/networks/web", None, "a node token manages only its own node"),
        ("POST", "/v1/qos/gold/attachments", {"target": "blue/web"}, "a node token manages only its own node"),
        ("GET", "/v1/nodes/node1/flows", None, "a node token manages only its own node"),
        ("POST", "/v1/links", {"a": "node1", "a_port": "p", "b": "node2", "b_port": "q"}, "a node token manages"),
    ],
)
def test_node_token_is_403_elsewhere(nodes: Wsgi, method: str, path: str, body: Any, words: str) -> None:
    before = state(nodes)
    answer = nodes.call(method, path, body, token=N1)
    assert answer.status == 403 and words in answer.error["message"], answer
    assert state(nodes) == before


def test_other_nodes_are_hidden_from_a_node_token(nodes: Wsgi) -> None:
    assert nodes.ok("GET", "/v1/endpoints", token=N1) == []
    assert nodes.ok("GET", "/v1/endpoints", token=N1, query="node=node2") == []
    assert nodes.get("/v1/nodes/node2", token=N1).status == 404


def test_tenant_token_cannot_act_as_a_node(nodes: Wsgi) -> None:
    answer = nodes.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.7"}, token=BLUE)
    assert answer.status == 403 and "node's own token or the cluster-admin token" in answer.error["message"]
    assert nodes.ok("GET", "/v1/nodes/node1")["tunnel_ip"] == "192.168.50.1"
    assert nodes.get("/v1/endpoints/on2", token=BLUE).status == 404  # red's, like a missing one
    assert nodes.ok("GET", "/v1/endpoints/on2", token=ADMIN)["node"] == "node2"


def test_node_tokens_in_the_token_file() -> None:
    tokens = Tokens.from_dict({"admin": ["a"], "nodes": {"n1": ["t1"], "n2": ["t2", "t1"]}})
    principal = tokens.lookup(b"t1")
    assert principal is not None and principal.nodes == {"n1", "n2"} and principal.node_only
    assert not principal.admin and not principal.sees("n1")
    from controller.api import TokenFileError

    with pytest.raises(TokenFileError, match="also listed as admin or as a tenant's"):
        Tokens.from_dict({"admin": ["a"], "nodes": {"n1": ["a"]}})
    with pytest.raises(TokenFileError, match="nodes: want an object"):
        Tokens.from_dict({"nodes": ["a"]})


def test_node_token_reads_any_network_it_may_host_but_changes_none(nodes: Wsgi) -> None:
    """The agent answers CNI STATUS from a network's free addresses, whichever tenant owns it."""
    for key in ("blue/web", "red/web"):
        tenant, name = key.split("/")
        doc = nodes.ok("GET", f"/v1/tenants/{tenant}/networks/{name}", token=N1)
        assert doc["free_addresses"] > 0 and doc["tenant"] == tenant
    assert nodes.get("/v1/tenants/blue/networks/nope", token=N1).status == 404
    assert nodes.delete("/v1/tenants/blue/networks/web", token=N1).status == 403
