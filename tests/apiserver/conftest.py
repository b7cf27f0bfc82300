"""A real etcd and the stand-in API server on it, for the tests of lab.apiserver."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.apiserver import StandInApiServer
from tests.etcd_server import EtcdServer

_names = itertools.count()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="module")
def apiserver(etcd: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInApiServer]:
    certs = tmp_path_factory.mktemp("apiserver-certs")
    with StandInApiServer(etcd.client_url, bookmark_interval=0.3, cert_dir=certs) as server:
        yield server


@pytest.fixture
def kubeconfig(apiserver: StandInApiServer, tmp_path: Path) -> Path:
    return apiserver.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def namespace(apiserver: StandInApiServer) -> Iterator[str]:
    """A fresh namespace for one test (deleted after it, with what it holds)."""
    name = f"t{os.getpid()}-{next(_names)}"
    namespaces = apiserver.registry.find("", "v1", "namespaces")
    apiserver.registry.create(namespaces, None, {"metadata": {"name": name}}, False)
    yield name
    apiserver.registry.delete(namespaces, None, name, {}, False)
