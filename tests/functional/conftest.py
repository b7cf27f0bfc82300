"""The real thing: a `tenet-controller` process, and OVS nodes whose br-int it programs.

These tests need root (namespaces, OVS); CI runs as root and installs Open vSwitch, so they run there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cni import ControllerProcess
from lab.ovs import OvsNode
from tests.functional.cni_support import Cluster, start_cluster


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    process = ControllerProcess(tmp_path, api_host="127.0.0.1")
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def ovs_node(tmp_path: Path) -> Iterator[OvsNode]:
    node = OvsNode("n1", tmp_path / "ovs")
    try:
        yield node.start()
    finally:
        node.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Pods through the real plugin, agent, controller and br-int (tests.functional.cni_support)."""
    with start_cluster(tmp_path) as running:
        yield running
