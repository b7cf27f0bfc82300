"""`tenet-cni` as the CNI tests meet it: run as a runtime runs it (environment variables, config on stdin,
result or error on stdout), pods as namespaces. The controller and agent processes come from lab.cni."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.install import install
from lab.ovs import sh


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
