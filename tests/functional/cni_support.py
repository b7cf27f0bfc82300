"""A node as the CNI tests meet it: OVS and `tenet-agent` in the node's namespace, `tenet-cni` run as a
runtime runs it (environment variables, config on stdin, result or error on stdout), pods as namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.install import install
from lab.ovs import OvsNode, sh, wait_for
from tests.functional.conftest import ROOT, TOKEN, ControllerProcess


class AgentProcess:
    """`tenet-agent run` inside the node's namespace; stopped or killed by pid."""

    def __init__(self, node: OvsNode, controller: ControllerProcess, state: Path) -> None:
        self.node, self.controller, self.state = node, controller, state
        self.socket = str(state / "agent.sock")
        self.log = state / "agent.log"
        self.token_file = state / "agent-token"
        self.token_file.write_text(TOKEN)
        self.process: subprocess.Popen | None = None
        self._log_mark = 0  # where this run's log starts

    def new_log(self) -> str:
        """What the agent logged since it was last started."""
        return self.log.read_text()[self._log_mark :] if self.log.exists() else ""

    def start(self) -> AgentProcess:
        self._log_mark = len(self.log.read_text()) if self.log.exists() else 0
        args = [
            "ip", "netns", "exec", self.node.netns,
            sys.executable, "-m", "agent.main", "run",
            "--node", self.node.name,
            "--tunnel-ip", self.node.node_ip,
            "--controller", f"http://{self.node.host_ip}:{self.controller.api_port}",
            "--token-file", str(self.token_file),
            "--openflow", f"tcp:{self.node.host_ip}:{self.controller.ofp_port}",
            "--ovsdb", self.node.db,
            "--datapath-type", "netdev",
            "--socket", self.socket,
        ]  # fmt: skip
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
        wait_for(self._serving, "the agent's socket", timeout=60)
        return self

    def _serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"tenet-agent exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        return Path(self.socket).exists() and "socket " in self.new_log()

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


@dataclass
class CniResult:
    code: int  # the plugin's exit status
    out: dict[str, Any]
    stderr: str

    @property
    def error_code(self) -> int | None:
        return self.out.get("code") if self.code else None


@dataclass
class Runtime:
    """Calls the installed plugin the way kubelet or podman does."""

    plugin: Path
    socket: str
    cni_version: str = "1.1.0"
    namespaces: list[str] = field(default_factory=list)

    def config(self, tenant: str, network: str, **extra: Any) -> dict[str, Any]:
        return {
            "cniVersion": self.cni_version,
            "name": "tenet",
            "type": "tenet",
            "tenant": tenant,
            "network": network,
            "agentSocket": self.socket,
            **extra,
        }

    def call(
        self,
        command: str,
        config: dict[str, Any] | bytes,
        *,
        container: str = "",
        netns: str = "",
        ifname: str = "eth0",
        env: dict[str, str] | None = None,
    ) -> CniResult:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.plugin.parent),
            **(env or {}),
        }
        stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
        done = subprocess.run(
            [str(self.plugin)], input=stdin, env=environment, capture_output=True, timeout=60, check=False
        )
        text = done.stdout.decode()
        try:
            out = json.loads(text) if text.strip() else {}
        except ValueError:
            raise AssertionError(f"the plugin printed something that is not JSON: {text!r} {done.stderr!r}") from None
        return CniResult(done.returncode, out, done.stderr.decode())

    def pod_netns(self, name: str) -> str:
        """A fresh named network namespace, removed by `close`; its path is what runtimes pass as CNI_NETNS."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        return f"/var/run/netns/{name}"

    def add(self, name: str, tenant: str, network: str, **extra: Any) -> dict[str, Any]:
        netns = self.pod_netns(name)
        result = self.call("ADD", self.config(tenant, network, **extra), container=f"c-{name}", netns=netns)
        assert result.code == 0, result
        return result.out

    def close(self) -> None:
        for name in self.namespaces:
            sh("ip", "netns", "del", name, check=False)


def install_plugin(state: Path, socket: str) -> Path:
    plugin, _ = install(
        state / "bin", state / "net.d", socket_path=socket, tenant="blue", network="web", namespaces=None
    )
    return plugin


def in_pod(name: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", name, *args], capture_output=True, text=True, timeout=timeout, check=check
    )
