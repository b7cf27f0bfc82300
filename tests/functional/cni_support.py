"""`tenet-cni` as the CNI tests meet it: run as a runtime runs it (environment variables, config on stdin,
result or error on stdout), pods as namespaces. The controller and agent processes come from lab.cni."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.install import install
from controller.client import Client, path
from lab.cni import AgentProcess, ControllerProcess
from lab.ovs import OvsNode, Pod, sh, wait_for


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


NETWORKS = (  # tenant, name, vni, subnet: red/web overlaps blue/web on purpose
    ("blue", "web", 5001, "10.1.0.0/24"),
    ("blue", "db", 5002, "10.2.0.0/24"),
    ("red", "web", 6001, "10.1.0.0/24"),
)


@dataclass
class Cluster:
    controller: ControllerProcess
    node: OvsNode
    agent: AgentProcess
    runtime: Runtime

    @property
    def api(self) -> Client:
        return self.controller.client

    def pod(self, name: str, out: dict) -> Pod:
        ours = out["interfaces"][out["ips"][-1]["interface"]]
        assert ours["sandbox"] == f"/var/run/netns/{name}"
        return Pod(name, name, out["ips"][-1]["address"].split("/")[0])

    def leftovers(self) -> dict[str, list[str]]:
        """Pod ports on br-int, pod veths in the node, flows naming pod ports, and endpoints: what DEL removes."""
        ports = [p for p in self.node.vsctl("list-ports", "br-int").split() if p.startswith("tn")]
        links = [
            line.split(":")[1].strip() for line in self.node.exec("ip", "-o", "link").splitlines() if ": tn" in line
        ]
        endpoints = [e["id"] for e in self.api.get("/v1/endpoints")]
        # A DEL returns once the endpoint is gone; its flows leave the switch with the next change set the
        # controller sends. A verification runs on the switch's session after every change queued before it.
        self.api.get(path("v1", "nodes", self.node.name, "flows"), verify="1")  # (a switch away: none queued)
        flows = [f for f in self.node.ofctl("--no-names", "dump-flows").splitlines() if _names_pod_port(f)]
        return {"ports": ports, "links": links, "endpoints": endpoints, "flows": flows}


def _names_pod_port(flow: str) -> bool:
    """Pod ports are numbered from 1000: a flow matching or sending to one belongs to a pod."""
    numbers = re.findall(r"in_port=(\d+)|output:(\d+)|reg3=(0x[0-9a-f]+)|load:(0x[0-9a-f]+)->NXM_NX_REG3", flow)
    return any(int(value, 0) >= 1000 for found in numbers for value in found if value)


def free_control_net() -> str:
    """A 10.X (X in 150..199) with no address in the root namespace, for the /30 between it and the node:
    test runs side by side on one machine must not both route 10.254.1.0/30. Starts from this process's pid,
    so two runs starting at once rarely try the same one."""
    used = sh("ip", "-o", "-4", "addr", "show")
    for step in range(50):
        octet = 150 + (os.getpid() + step) % 50
        if f" 10.{octet}." not in used:
            return f"10.{octet}"
    raise RuntimeError("every control network 10.150-199.0.0/16 is in use")


@contextmanager
def start_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Controller, one node (n1) with its agent, the NETWORKS, and a runtime calling the installed plugin."""
    controller = ControllerProcess(tmp_path, api_host="0.0.0.0", nodes=("n1",))
    node = OvsNode("n1", tmp_path / "ovs", control_net=free_control_net())
    agent = AgentProcess(node, controller, tmp_path)
    runtime = Runtime(install_plugin(tmp_path, agent.socket), agent.socket)
    try:
        controller.start()
        node.start()
        for tenant in ("blue", "red"):
            controller.client.post("/v1/tenants", {"name": tenant})
        for tenant, name, vni, subnet in NETWORKS:
            body = {"name": name, "encap": "vxlan", "vni": vni, "subnet": subnet}
            controller.client.post(f"/v1/tenants/{tenant}/networks", body)
        agent.start()
        wait_for(lambda: controller.node("n1").get("switch", {}).get("in_sync"), "br-int to connect and sync")
        yield Cluster(controller, node, agent, runtime)
    finally:
        runtime.close()
        agent.stop()
        node.close()
        controller.stop()
