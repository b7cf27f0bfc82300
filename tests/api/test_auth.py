"""Bearer tokens: 401 without a known one, 403 for admin-only operations, and tenants blind to each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.api import TokenFileError, Tokens, load_tokens
from tests.api.support import ADMIN, BLUE, RED, Wsgi, network

SECRET = "secret"  # in every name of red's objects: no answer to blue may contain it


@pytest.fixture
def tenants(cluster: Wsgi) -> Wsgi:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100), token=BLUE)
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"}, token=BLUE)
    red_net = network(f"{SECRET}net", "10.0.0.0/24", vni=200)
    cluster.ok("POST", "/v1/tenants/red/networks", red_net, token=RED)
    cluster.ok(
        "POST", "/v1/endpoints", {"id": f"{SECRET}-ep", "network": f"red/{SECRET}net", "node": "node1"}, token=RED
    )
    cluster.ok("POST", "/v1/qos/gold/attachments", {"target": f"red/{SECRET}net"}, token=RED)
    return cluster


def elsewhere(text: str) -> str:
    """The same request about objects that do not exist at all."""
    return text.replace("red", "green").replace(SECRET, "gone")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic YWRtaW46eA==", "Bearer", f"Bearer {ADMIN}x"])
def test_unknown_or_missing_token_is_401(tenants: Wsgi, header: str | None) -> None:
    environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
    for method, path in [("GET", "/v1/tenants"), ("GET", "/v1/endpoints/b1"), ("DELETE", "/v1/tenants/blue")]:
        answer = tenants.call(method, path, token=None, environ=environ)
        assert answer.status == 401, (path, answer)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert tenants.get("/v1/tenants/blue").status == 200  # still there


def test_openapi_needs_no_token(api: Wsgi) -> None:
    assert api.get("/openapi.json", token=None).body["openapi"].startswith("3.")


def test_lists_show_only_own_tenant(tenants: Wsgi) -> None:
    assert [t["name"] for t in tenants.ok("GET", "/v1/tenants", token=BLUE)] == ["blue"]
    assert [t["name"] for t in tenants.ok("GET", "/v1/tenants")] == ["blue", "red"]
    assert [n["key"] for n in tenants.ok("GET", "/v1/networks", token=BLUE)] == ["blue/web"]
    assert tenants.ok("GET", "/v1/networks", token=BLUE, query="tenant=red") == []
    assert [e["id"] for e in tenants.ok("GET", "/v1/endpoints", token=BLUE)] == ["b1"]
    assert tenants.ok("GET", "/v1/endpoints", token=BLUE, query=f"network=red/{SECRET}net") == []
    assert tenants.ok("GET", "/v1/qos/gold", token=BLUE)["attachments"] == []
    assert tenants.ok("GET", "/v1/qos/gold", token=RED)["attachments"] == [f"red/{SECRET}net"]
    assert tenants.ok("GET", "/v1/qos-attachments", token=BLUE) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("GET", "/v1/tenants/red", None, ""),
        ("GET", "/v1/tenants/red/networks", None, ""),
        ("GET", f"/v1/tenants/red/networks/{SECRET}net", None, ""),
        ("POST", "/v1/tenants/red/networks", network("x", "10.5.0.0/24", vni=9), ""),
        ("DELETE", f"/v1/tenants/red/networks/{SECRET}net", None, ""),
        ("DELETE", "/v1/tenants/red", None, ""),
        ("PUT", "/v1/tenants/red", {"quota": {"networks": 1}}, ""),
        ("GET", f"/v1/endpoints/{SECRET}-ep", None, ""),
        ("DELETE", f"/v1/endpoints/{SECRET}-ep", None, ""),
        ("DELETE", "/v1/qos-attachments", None, f"target=red/{SECRET}net"),
    ],
)
def test_other_tenants_objects_are_404_like_missing_ones(
    tenants: Wsgi, method: str, path: str, body: dict | None, query: str
) -> None:
    before = tenants.ok("GET", "/v1/endpoints"), tenants.ok("GET", "/v1/networks"), tenants.ok("GET", "/v1/qos")
    answer = tenants.call(method, path, body, token=BLUE, query=query)
    assert answer.status == 404, answer
    missing = tenants.call(method, elsewhere(path), body, token=BLUE, query=elsewhere(query))
    assert missing.status == 404
    assert answer.error["message"] == missing.error["message"].replace("green", "red").replace("gone", SECRET)
    assert (
        tenants.ok("GET", "/v1/endpoints"),
        tenants.ok("GET", "/v1/networks"),
        tenants.ok("GET", "/v1/qos"),
    ) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/endpoints", {"id": "x1", "network": f"red/{SECRET}net", "node": "node1"}),
        ("/v1/qos/gold/attachments", {"target": f"red/{SECRET}net"}),
        ("/v1/qos/gold/attachments", {"target": f"{SECRET}-ep"}),
    ],
)
def test_referring_to_another_tenants_object_is_like_an_unknown_one(tenants: Wsgi, path: str, body: dict) -> None:
    answer = tenants.post(path, body, token=BLUE)
    unknown = tenants.post(
        path, {k: v.replace("red", "zzz").replace(SECRET, "zzz") for k, v in body.items()}, token=BLUE
    )
    assert answer.status == unknown.status == 400
    assert answer.error["field"] == unknown.error["field"]
    assert tenants.ok("GET", f"/v1/endpoints/{SECRET}-ep")["qos"] == "gold"  # unchanged


def test_conflict_messages_do_not_name_other_tenants_networks(tenants: Wsgi) -> None:
    answer = tenants.post("/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vni=200), token=BLUE)
    assert answer.status == 409 and answer.error["field"] == "network.vni"
    assert SECRET not in answer.error["message"] and "another tenant" in answer.error["message"]
    own = tenants.post("/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vni=100), token=BLUE)
    assert "blue/web" in own.error["message"]  # one's own network may be named
    admin = tenants.post("/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vni=200))
    assert f"red/{SECRET}net" in admin.error["message"]


def test_no_answer_to_blue_contains_reds_data(tenants: Wsgi) -> None:
    paths = ["/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos", "/v1/qos/gold", "/v1/qos-attachments"]
    paths += ["/v1/nodes", "/v1/nodes/node1", "/v1/tenants/blue", "/v1/tenants/blue/networks", "/v1/endpoints/b1"]
    for path in paths:
        answer = tenants.get(path, token=BLUE)
        assert answer.status == 200 and SECRET not in json.dumps(answer.body), path
    admin_view = json.dumps(tenants.ok("GET", "/v1/endpoints"))
    assert SECRET in admin_view  # the marker is real


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/tenants", {"name": "green"}),
        ("DELETE", "/v1/tenants/blue", None),
        ("POST", "/v1/qos", {"name": "silver", "rate_kbps": 1, "burst_kb": 1}),
        ("DELETE", "/v1/qos/gold", None),
        ("PUT", "/v1/nodes/node9", {"tunnel_ip": "192.168.50.9"}),
        ("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.1"}),
        ("GET", "/v1/nodes/node1/flows", None),
        ("PUT", "/v1/tenants/blue", {"quota": {"networks": 99}}),
    ],
)
def test_admin_only_operations_are_403_for_tenants(tenants: Wsgi, method: str, path: str, body: dict | None) -> None:
    answer = tenants.call(method, path, body, token=BLUE)
    assert answer.status == 403 and "admin" in answer.error["message"], answer
    assert tenants.get("/v1/nodes/node9").status == 404
    assert tenants.get("/v1/qos/silver").status == 404 and tenants.get("/v1/tenants/green").status == 404


def test_tenant_changes_its_own(tenants: Wsgi) -> None:
    assert tenants.post("/v1/qos/gold/attachments", {"target": "b1"}, token=BLUE).status == 201
    assert tenants.ok("GET", "/v1/endpoints/b1", token=BLUE)["qos"] == "gold"
    assert tenants.delete("/v1/qos-attachments", query="target=b1", token=BLUE).status == 204
    assert tenants.delete("/v1/endpoints/b1", token=BLUE).status == 204
    assert tenants.delete("/v1/tenants/blue/networks/web", token=BLUE).status == 204
    node = tenants.ok("GET", "/v1/nodes/node1", token=BLUE)
    assert set(node) == {"name", "tunnel_ip", "uplink", "datapath_id"}  # no switch state, no counts


def test_token_of_a_tenant_not_yet_created_sees_nothing(api: Wsgi) -> None:
    assert api.ok("GET", "/v1/tenants", token=BLUE) == []
    assert api.post("/v1/tenants/blue/networks", network("w", "10.0.0.0/24", vni=1), token=BLUE).status == 404
    api.ok("POST", "/v1/tenants", {"name": "blue"})
    assert api.post("/v1/tenants/blue/networks", network("w", "10.0.0.0/24", vni=1), token=BLUE).status == 201


def test_load_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"admin": ["a1", "a2"], "tenants": {"blue": ["b"], "red": ["r", "b"]}}))
    tokens = load_tokens(path)
    admin, both, red = tokens.lookup(b"a2"), tokens.lookup(b"b"), tokens.lookup(b"r")
    assert admin is not None and admin.admin
    assert both is not None and both.tenants == {"blue", "red"}
    assert red is not None and red.tenants == {"red"} and not red.admin
    assert tokens.lookup(b"") is None and tokens.lookup(b"a") is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "is not JSON"),
        ("[]", "want an object"),
        ('{"admin": "tok"}', "admin: want a list"),
        ('{"admin": [""]}', "non-empty"),
        ('{"admin": [" x"]}', "whitespace"),
        ('{"tenants": {"blue": [1]}}', "blue: want a list"),
        ('{"tenants": []}', "tenants: want an object"),
        ('{"admins": []}', '"admin", "tenants" and "nodes" only'),
        ('{"admin": ["x"], "tenants": {"blue": ["x"]}}', "both as admin and"),
    ],
)
def test_bad_token_files(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=words) as raised:
        load_tokens(path)
    assert str(path) in str(raised.value)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read token file"):
        load_tokens(tmp_path / "absent.json")
    assert Tokens().lookup(b"anything") is None
