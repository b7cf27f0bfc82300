"""A change lands in model, compiler, store and switches, or in none of them: a compile failure rolls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import records
from controller.pipeline.compile import Compiler
from controller.pipeline.features import port_security
from controller.pipeline.state import ChangeSet, NodeState
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import Wsgi, network

VIEWS = ["/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos-attachments", "/v1/nodes"]


def matches_full_compile(service: Service) -> None:
    fresh = Compiler(service.model).compile_all()
    assert set(service.compiler.states) == set(fresh)
    for name, state in fresh.items():
        assert service.compiler.states[name].same_as(state), name


def snapshot(api: Wsgi, service: Service, db_path: Path) -> dict[str, Any]:
    reopened = SqliteStore(db_path)
    try:
        stored = sorted((r.key, r.value) for r in reopened.list(records.PREFIX))
        restored = Service(reopened)
        restored.restore()
        restored_flows = {n: sorted(map(str, s.flows())) for n, s in restored.compiler.states.items()}
    finally:
        reopened.close()
    flows = {n: sorted(map(str, s.flows())) for n, s in service.compiler.states.items()}
    assert restored_flows == flows  # a fresh restore of the store compiles to what the compiler holds
    return {
        "views": {path: api.ok("GET", path) for path in VIEWS},
        "records": sorted(records.all_records(service.model)),
        "stored": stored,
        "flows": flows,
    }


@pytest.fixture
def failing(cluster: Wsgi, service: Service, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, ChangeSet]]:
    """Endpoint "bad" cannot be compiled (its port-security flows raise); returns what was published."""
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    cluster.ok("POST", "/v1/endpoints", {"id": "b2", "network": "blue/web", "node": "node2"})
    published: list[dict[str, ChangeSet]] = []
    service.subscribe(published.append)
    real = port_security.port_security

    def broken(endpoint: Any, **kwargs: Any) -> Any:
        if endpoint.id == "bad":
            raise RuntimeError("no flows for this endpoint")
        return real(endpoint, **kwargs)

    monkeypatch.setattr(port_security, "port_security", broken)
    return published


def test_compile_failure_changes_nothing(
    cluster: Wsgi, service: Service, db_path: Path, failing: list[dict[str, ChangeSet]]
) -> None:
    # On node3 (new to the network: every node's network sections change) and on node1.
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3"})
    failing.clear()
    before = snapshot(cluster, service, db_path)
    revision, sequence = service.store.revision(), service.sequence
    for node in ("node3", "node1"):
        answer = cluster.post("/v1/endpoints", {"id": "bad", "network": "blue/web", "node": node})
        assert answer.status == 500, answer
        message = answer.error["message"]
        assert "creating endpoint 'bad'" in message and "no flows for this endpoint" in message
        assert "nothing was changed" in message
        assert failing == []  # no change set published
        assert service.store.revision() == revision and service.sequence == sequence
        assert snapshot(cluster, service, db_path) == before
        matches_full_compile(service)


def test_after_a_rollback_changes_compile_as_before(
    cluster: Wsgi, service: Service, failing: list[dict[str, ChangeSet]]
) -> None:
    # The tenant's first endpoint on node3 would bring all its networks there: the compiler's record of
    # where each tenant is must be rolled back too, or the next endpoint there misses blue/db's routes.
    cluster.ok("POST", "/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vni=101))
    cluster.ok("POST", "/v1/endpoints", {"id": "d1", "network": "blue/db", "node": "node1"})
    cluster.ok("PUT", "/v1/nodes/node3", {"tunnel_ip": "192.168.50.3"})
    assert cluster.post("/v1/endpoints", {"id": "bad", "network": "blue/web", "node": "node3"}).status == 500
    cluster.ok("POST", "/v1/endpoints", {"id": "good3", "network": "blue/web", "node": "node3"})
    matches_full_compile(service)
    failing.clear()
    assert cluster.post("/v1/endpoints", {"id": "bad", "network": "blue/web", "node": "node2"}).status == 500
    # The same IP, MAC and port number go to the next endpoint, and its compile is incremental and exact.
    good = cluster.ok("POST", "/v1/endpoints", {"id": "good", "network": "blue/web", "node": "node2"})
    assert good["ip"] == "10.0.0.5" and good["ofport"] == 1001
    assert len(failing) == 1 and set(failing[0]) == {"node1", "node2", "node3"}
    matches_full_compile(service)


def test_compile_failure_of_a_qos_attachment_rolls_back(
    cluster: Wsgi, service: Service, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    cluster.ok("POST", "/v1/endpoints", {"id": "b2", "network": "blue/web", "node": "node2"})
    before = snapshot(cluster, service, db_path)
    real = port_security.classify_port

    def broken(endpoint: Any, *args: Any, **kwargs: Any) -> Any:
        if service.model.qos_for(endpoint) is not None and endpoint.id == "b2":
            raise ValueError("classify fails under QoS")
        return real(endpoint, *args, **kwargs)

    monkeypatch.setattr(port_security, "classify_port", broken)
    answer = cluster.post("/v1/qos/gold/attachments", {"target": "blue/web"})
    assert answer.status == 500 and "attaching QoS profile 'gold' to 'blue/web'" in answer.error["message"]
    assert snapshot(cluster, service, db_path) == before
    matches_full_compile(service)


def test_store_failure_after_the_compile_rolls_back_the_compiler(
    cluster: Wsgi, service: Service, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.store.base import StoreError

    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    before = snapshot(cluster, service, db_path)
    states: dict[str, NodeState] = dict(service.compiler.states)

    def down(*_args: Any, **_kwargs: Any) -> int:
        raise StoreError("disk on fire")

    monkeypatch.setattr(service.store, "commit", down)
    answer = cluster.post("/v1/endpoints", {"id": "b2", "network": "blue/web", "node": "node2"})
    assert answer.status == 503
    monkeypatch.undo()
    assert snapshot(cluster, service, db_path) == before
    assert set(service.compiler.states) == set(states)
    matches_full_compile(service)
