"""Fixtures for the store suite: every contract test runs once on SQLite and once on a real etcd."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from controller.store.base import Store
from controller.store.open import open_store
from tests.etcd_server import EtcdServer


def sqlite_url(path: Path) -> str:
    return "sqlite://" + quote(str(path))


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One etcd for the whole session; tests keep apart by prefix. Missing etcd is a failure, not a skip."""
    server: EtcdServer | None = None
    missing = ""
    try:
        server = EtcdServer()
    except RuntimeError as error:
        missing = str(error)
    if server is None:  # failed outside the except block, so the report is this one line, not a chained traceback
        pytest.fail(f"the etcd store tests need a real etcd: {missing}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def etcd_url(etcd_server: EtcdServer) -> str:
    """An etcd store URL with a prefix no other test uses."""
    return f"etcd://127.0.0.1:{etcd_server.client_port}/test-{uuid.uuid4().hex}"


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store; open it as often as needed to see the same data."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store" / "tenet.db")
    return str(request.getfixturevalue("etcd_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()
