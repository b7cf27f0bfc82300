"""What the HTTP layer answers to bad requests, and to a failing store: 4xx or 503, never 500."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from controller.api import Tokens, make_app
from controller.service import Service
from controller.store.base import Conflict, Operation, Record, Store, StoreError
from tests.api.support import TOKENS, Wsgi, network


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{", "not valid JSON"),
        (b"", "the request body is empty; want a JSON object"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"blue"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(api: Wsgi, raw: bytes, words: str) -> None:
    answer = api.call("POST", "/v1/tenants", raw=raw)
    assert answer.status == 400 and words in answer.error["message"], answer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "tenant.name"),
        ({"name": None}, "tenant.name"),
        ({"name": ["blue"]}, "tenant.name"),
        ({"name": "blue", "colour": "x"}, "tenant.colour"),
        ({"name": "\ud800"}, "tenant.name"),
        ({"name": ""}, "tenant.name"),
        ({"name": "two words"}, "tenant.name"),
    ],
)
def test_wrong_types_are_400_naming_the_field(api: Wsgi, body: dict, field: str) -> None:
    answer = api.post("/v1/tenants", body)
    assert (answer.status, answer.error["field"]) == (400, field), answer
    assert api.ok("GET", "/v1/tenants") == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"vni": "100"}, "network.vni"),
        ({"vni": True}, "network.vni"),
        ({"vni": 1.5}, "network.vni"),
        ({"vni": 10**40}, "network.vni"),
        ({"vni": 5, "mtu": "1400"}, "network.mtu"),
        ({"vni": 5, "gateway": 10}, "network.gateway"),
        ({"vni": 5, "subnet": ["10.0.0.0/24"]}, "network.subnet"),
        ({"vni": 5, "encap": 1}, "network.encap"),
    ],
)
def test_wrong_network_types(cluster: Wsgi, extra: dict, field: str) -> None:
    body = {"name": "w", "encap": "vxlan", "subnet": "10.0.0.0/24", **extra}
    answer = cluster.post("/v1/tenants/blue/networks", body)
    assert (answer.status, answer.error["field"]) == (400, field), answer


def test_node_and_qos_types(cluster: Wsgi) -> None:
    assert cluster.put("/v1/nodes/n", {"tunnel_ip": 1}).error["field"] == "node.tunnel_ip"
    assert cluster.put("/v1/nodes/n", {"tunnel_ip": "1.2.3.4", "datapath_id": "0x1"}).status == 400
    assert cluster.put("/v1/nodes/n", {"tunnel_ip": "1.2.3.4", "datapath_id": 2**64}).status == 400
    assert cluster.post("/v1/qos", {"name": "q", "rate_kbps": 1.0, "burst_kb": 1}).error["field"] == "qos.rate_kbps"
    assert cluster.post("/v1/qos/gold/attachments", {"target": None}).error["field"] == "qos.target"


def test_body_size_limit(service: Service) -> None:
    small = Wsgi(make_app(service, Tokens.from_dict(TOKENS), max_body=100))
    answer = small.post("/v1/tenants", {"name": "x" * 200})
    assert answer.status == 413
    assert small.post("/v1/tenants", {"name": "x" * 50}).status == 201


@pytest.mark.parametrize("length", ["abc", "-5", "1e3"])
def test_bad_content_length(api: Wsgi, length: str) -> None:
    answer = api.call("POST", "/v1/tenants", {"name": "b"}, environ={"CONTENT_LENGTH": length})
    assert answer.status == 400 and "Content-Length" in answer.error["message"]


def test_short_body(api: Wsgi) -> None:
    answer = api.call("POST", "/v1/tenants", raw=b'{"name": "b"}', environ={"CONTENT_LENGTH": "50"})
    assert answer.status == 400 and "ended after" in answer.error["message"]


def test_unknown_paths_and_methods(api: Wsgi) -> None:
    assert api.get("/v2/tenants").status == 404
    assert api.get("/v1/tenants/").status == 404
    assert api.get("/v1/tenants/blue/networks/web/extra").status == 404
    wrong = api.call("PATCH", "/v1/tenants")
    assert wrong.status == 405 and wrong.headers["Allow"] == "GET, POST"
    assert api.call("PUT", "/v1/endpoints/x", {}).status == 405


def test_created_has_location_and_non_ascii_names_are_refused(api: Wsgi) -> None:
    answer = api.post("/v1/tenants", {"name": "bleu"})
    assert answer.status == 201 and answer.headers["Location"] == "/v1/tenants/bleu"
    refused = api.post("/v1/tenants", {"name": "bleu-é"})  # names are DNS-1123 labels: ASCII
    assert (refused.status, refused.error["field"]) == (400, "tenant.name")
    # PATH_INFO arrives as latin-1 decoded bytes (PEP 3333).
    raw_path = "/v1/tenants/bleu-é".encode().decode("latin-1")
    assert api.get(raw_path).status == 404
    assert api.get("/v1/tenants/\xff").status == 400  # not UTF-8


class FailingStore:
    """A real store whose commits fail, as an unreachable etcd's would."""

    def __init__(self, store: Store, error: Exception) -> None:
        self.store, self.error = store, error

    def get(self, key: str) -> Record | None:
        return self.store.get(key)

    def list(self, prefix: str) -> list[Record]:
        return self.store.list(prefix)

    def commit(self, operations: Sequence[Operation], *, expect: Mapping[str, int] | None = None) -> int:
        raise self.error

    def revision(self) -> int:
        return self.store.revision()

    def close(self) -> None:
        self.store.close()


@pytest.mark.parametrize(("error", "status"), [(StoreError("etcd: connection refused"), 503), (Conflict("x"), 409)])
def test_store_failure_changes_nothing(cluster: Wsgi, service: Service, error: Exception, status: int) -> None:
    real = service.store
    service.store = FailingStore(real, error)
    answer = cluster.post("/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    assert answer.status == status, answer
    assert "store" in answer.error["message"]
    assert cluster.get("/v1/tenants/blue/networks/web").status == 404  # the model was rolled back too
    service.store = real
    assert cluster.post("/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100)).status == 201


def test_a_bug_is_500_without_details(cluster: Wsgi, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_node: str) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.compiler, "compile_node", broken)
    answer = cluster.get("/v1/nodes/node1/flows")
    assert answer.status == 500 and "secret" not in answer.error["message"]


def test_a_failing_switch_status_is_reported_not_raised(service: Service) -> None:
    def broken(_node: str) -> dict:
        raise RuntimeError("app not started")

    api = Wsgi(make_app(service, Tokens.from_dict(TOKENS), switch_status=broken))
    api.ok("PUT", "/v1/nodes/n1", {"tunnel_ip": "10.9.9.9"})
    status = api.ok("GET", "/v1/nodes/n1/flows")["switch"]
    assert status["connected"] is False and "app not started" in status["errors"][0]


def test_switch_status_values_without_a_json_type_are_shown_as_text(service: Service) -> None:
    class Plan:
        def __str__(self) -> str:
            return "3 flow-mods"

    report = {"connected": True, "in_sync": True, "errors": [], "last_push": Plan()}
    api = Wsgi(make_app(service, Tokens.from_dict(TOKENS), switch_status=lambda _node: report))
    api.ok("PUT", "/v1/nodes/n1", {"tunnel_ip": "10.9.9.9"})
    assert api.ok("GET", "/v1/nodes/n1")["switch"]["last_push"] == "3 flow-mods"
