"""The real thing: a `tenet-controller` process, and OVS nodes whose br-int it programs.

These tests need root (namespaces, OVS); CI runs as root and installs Open vSwitch, so they run there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.client import Client, ClientError
from lab.ovs import OvsNode, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "functional-admin-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ControllerProcess:
    """`tenet-controller` as an operator runs it, with its own store file; killed by pid, never by name."""

    def __init__(self, state: Path, *, api_host: str = "127.0.0.1") -> None:
        self.state = state
        self.api_host = api_host
        self.ofp_port, self.api_port = free_port(), free_port()
        self.tokens = state / "tokens.json"
        self.tokens.write_text(json.dumps({"admin": [TOKEN], "tenants": {}}))
        self.log = state / "controller.log"
        self.process: subprocess.Popen | None = None
        self.client = Client(f"http://127.0.0.1:{self.api_port}", TOKEN, timeout=30)

    def start(self) -> ControllerProcess:
        args = [
            sys.executable,
            "-m",
            "controller.main",
            "--ofp-host",
            "0.0.0.0",
            "--ofp-port",
            str(self.ofp_port),
            "--api-host",
            self.api_host,
            "--api-port",
            str(self.api_port),
            "--store",
            f"sqlite:///{self.state}/tenet.db",
            "--token-file",
            str(self.tokens),
            "--log-level",
            "info",
        ]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
        wait_for(self._answers, "the controller's API", timeout=60)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"tenet-controller exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            self.client.get("/v1/nodes")
        except ClientError:
            return False
        return True

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def node(self, name: str) -> dict:
        return self.client.get(f"/v1/nodes/{name}")


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    process = ControllerProcess(tmp_path)
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
