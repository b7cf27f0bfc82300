"""The API under test: a Service over a real SQLite store, called in-process through WSGI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api import Tokens, make_app
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import TOKENS, Wsgi


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tenet.db"


@pytest.fixture
def service(db_path: Path) -> Iterator[Service]:
    store = SqliteStore(db_path)
    yield Service(store)
    store.close()


@pytest.fixture
def api(service: Service) -> Wsgi:
    return Wsgi(make_app(service, Tokens.from_dict(TOKENS)))


@pytest.fixture
def cluster(api: Wsgi) -> Wsgi:
    """Two tenants, two nodes and a QoS profile, made through the API."""
    for name in ("blue", "red"):
        api.ok("POST", "/v1/tenants", {"name": name})
    api.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.1"})
    api.ok("PUT", "/v1/nodes/node2", {"tunnel_ip": "192.168.50.2", "uplink": "eth1"})
    api.ok("POST", "/v1/qos", {"name": "gold", "rate_kbps": 10_000, "burst_kb": 1_000})
    return api
