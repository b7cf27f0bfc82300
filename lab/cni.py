"""A Tenet node for CNI work on one machine: `tenet-controller` as its own process, an OVS node with
`tenet-agent` running inside the node's namespace, the installed `tenet-cni` launcher, and a way to exec
any CNI plugin as a runtime does (``CNI_*`` environment, network configuration on stdin), timed from spawn
to exit.

Needs root. Processes started here are stopped by pid; `TenetNode.close()` undoes everything `start()` did,
even after a failure half way.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cni.install import install
from controller.client import Client, ClientError
from lab.ovs import OvsNode, free_ports, launch, sh, wait_for

TOKEN = "lab-admin-token"
CLONE_NEWNET = 0x40000000
_AGENT_LINE = re.compile(r"\b(ADD|DEL|CHECK) \S+: ok in (\d+) ms")
_AGENT_STEPS = re.compile(r"\b(ADD|DEL|CHECK) \S+ steps: (.*) ms$", re.MULTILINE)


def enter_netns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at `path`; what it spawns starts there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


class ControllerProcess:
    """`python -m controller.main` with its own store and token file; stopped by pid.

    `nodes`: the nodes whose agents will connect; each gets a node token (`node_token`).
    """

    def __init__(
        self, state: Path, *, api_host: str = "0.0.0.0", token: str = TOKEN, nodes: tuple[str, ...] = ()
    ) -> None:
        self.state = state
        self.api_host = api_host
        self.ofp_port, self.api_port = free_ports(2)
        self.tokens = state / "tokens.json"
        self.node_tokens = {name: secrets.token_hex(16) for name in nodes}
        document = {"admin": [token], "tenants": {}, "nodes": {n: [t] for n, t in self.node_tokens.items()}}
        self.tokens.write_text(json.dumps(document))
        self.log = state / "controller.log"
        self.process: subprocess.Popen | None = None
        self.client = Client(f"http://127.0.0.1:{self.api_port}", token, timeout=30)

    def start(self) -> ControllerProcess:
        args = [
            sys.executable, "-m", "controller.main",
            "--ofp-host", "0.0.0.0",
            "--ofp-port", str(self.ofp_port),
            "--api-host", self.api_host,
            "--api-port", str(self.api_port),
            "--store", f"sqlite:///{self.state}/tenet.db",
            "--token-file", str(self.tokens),
            "--log-level", "info",
        ]  # fmt: skip
        self.process = launch(args, self.log)
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
        """SIGKILL, as a crash would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        _stop(self.process)

    def node(self, name: str) -> dict:
        return self.client.get(f"/v1/nodes/{name}")

    def node_token(self, name: str) -> str:
        if name not in self.node_tokens:
            raise KeyError(f"the controller has no token for node {name!r}: pass nodes=({name!r},)")
        return self.node_tokens[name]


class AgentProcess:
    """`python -m agent.main run` inside the node's namespace (`ip netns exec`); stopped by pid."""

    def __init__(self, node: OvsNode, controller: ControllerProcess, state: Path, *, token: str | None = None) -> None:
        """`token`: default the node's own token from the controller's token file."""
        self.node, self.controller, self.state = node, controller, state
        self.socket = str(state / "agent.sock")
        self.log = state / "agent.log"
        self.token_file = state / "agent-token"
        self.token_file.write_text(token or controller.node_token(node.name))
        self.process: subprocess.Popen | None = None
        self._log_mark = 0  # where the current run's log starts

    def new_log(self) -> str:
        """What the agent logged since it was last started."""
        return self.log_text()[self._log_mark :]

    def start(self) -> AgentProcess:
        self._log_mark = len(self.log_text())
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
        self.process = launch(args, self.log)
        wait_for(self._serving, "the agent's socket", timeout=60)
        return self

    def _serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"tenet-agent exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        return Path(self.socket).exists() and "socket " in self.new_log()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def request_ms(self, verb: str, since: int = 0) -> list[int]:
        """The agent's own time for each successful `verb` it logged after offset `since` of its log."""
        return [int(ms) for found, ms in _AGENT_LINE.findall(self.log_text()[since:]) if found == verb]

    def step_ms(self, verb: str, since: int = 0, until: int | None = None) -> dict[str, list[float]]:
        """The agent's time in each step of `verb` (e.g. ADD: endpoint, veth, port, ready), logged between
        offsets `since` and `until` of its log: step -> ms of each request."""
        steps: dict[str, list[float]] = {}
        for found, text in _AGENT_STEPS.findall(self.log_text()[since:until]):
            if found == verb:
                for part in text.split(", "):
                    step, _, value = part.rpartition(" ")
                    steps.setdefault(step, []).append(float(value))
        return steps

    def kill9(self) -> None:
        """SIGKILL, as a crash would: its socket file stays behind, as it would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@dataclass(frozen=True)
class Network:
    tenant: str
    name: str
    vni: int
    subnet: str


class TenetNode:
    """Controller, OVS node `name` (br-int in sync), agent, the networks, and `tenet-cni` installed in `state`."""

    def __init__(self, state: Path, networks: list[Network], *, name: str = "n1", index: int = 1) -> None:
        self.state = state
        self.networks = networks
        self.controller = ControllerProcess(state, nodes=(name,))
        self.node = OvsNode(name, state / "ovs", index=index)
        self.agent = AgentProcess(self.node, self.controller, state)
        self.plugin, self.conflist = install(
            state / "bin",
            state / "net.d",
            socket_path=self.agent.socket,
            tenant=networks[0].tenant,
            network=networks[0].name,
            namespaces=None,
            cni_version="1.0.0",  # what Debian's reference plugins speak: the same version for both
        )

    @property
    def netns_path(self) -> str:
        """The node's own network namespace, where the agent (and a runtime on this node) runs."""
        return f"/var/run/netns/{self.node.netns}"

    def start(self) -> TenetNode:
        try:
            self.controller.start()
            self.node.start()
            api = self.controller.client
            for tenant in dict.fromkeys(n.tenant for n in self.networks):
                api.post("/v1/tenants", {"name": tenant})
            for net in self.networks:
                body = {"name": net.name, "encap": "vxlan", "vni": net.vni, "subnet": net.subnet}
                api.post(f"/v1/tenants/{net.tenant}/networks", body)
            self.agent.start()
            wait_for(
                lambda: self.controller.node(self.node.name).get("switch", {}).get("in_sync"),
                "br-int to connect and sync",
                timeout=60,
            )
        except BaseException:
            self.close()
            raise
        return self

    def net_config(self, tenant: str | None = None, network: str | None = None) -> dict[str, Any]:
        """The tenet plugin's configuration as a runtime passes it: its conflist entry with name and version."""
        conflist = json.loads(self.conflist.read_text())
        plugin = next(p for p in conflist["plugins"] if p["type"] == "tenet")
        config = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
        if tenant is not None:
            config["tenant"] = tenant
        if network is not None:
            config["network"] = network
        return config

    def pids(self) -> dict[str, int]:
        """The running daemons' process ids: agent, controller, ovs_vswitchd, ovsdb_server."""
        if self.agent.process is None or self.controller.process is None:
            raise RuntimeError("the node is not started")
        found = {"agent": self.agent.process.pid, "controller": self.controller.process.pid}
        for name in ("ovs-vswitchd", "ovsdb-server"):  # `ip netns exec` execs the agent: its pid is the agent's
            found[name.replace("-", "_")] = int((self.node.dir / f"{name}.pid").read_text().strip())
        return found

    def leftovers(self) -> dict[str, int]:
        """Pod ports on br-int, pod veths in the node, and endpoints: what DEL removes."""
        ports = [p for p in self.node.vsctl("list-ports", "br-int").split() if p.startswith("tn")]
        links = [line for line in self.node.exec("ip", "-o", "link").splitlines() if ": tn" in line]
        endpoints = self.controller.client.get("/v1/endpoints")
        return {"ports": len(ports), "links": len(links), "endpoints": len(endpoints)}

    def close(self) -> None:
        self.agent.stop()
        self.node.close()
        self.controller.stop()


@dataclass
class PluginCall:
    code: int  # the plugin's exit status
    out: dict[str, Any]
    stderr: str
    seconds: float  # from spawn to exit


def exec_plugin(
    plugin: Path | str,
    command: str,
    config: dict[str, Any],
    *,
    container: str = "",
    netns: str = "",
    ifname: str = "eth0",
    cni_path: str | None = None,
    cni_args: str = "",
    timeout: float = 60,
) -> PluginCall:
    """Run a CNI plugin once as a runtime does; time it from spawn to exit. `cni_args`: CNI_ARGS as kubelet
    passes it ("IgnoreUnknown=1;K8S_POD_NAMESPACE=NS;K8S_POD_NAME=POD", "IP=10.0.0.5"), none when empty."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path or str(Path(plugin).parent),
    }
    if cni_args:
        environment["CNI_ARGS"] = cni_args
    stdin = json.dumps(config).encode()
    started = time.perf_counter()
    done = subprocess.run(
        [str(plugin)], input=stdin, env=environment, capture_output=True, timeout=timeout, check=False
    )
    seconds = time.perf_counter() - started
    text = done.stdout.decode()
    try:
        out = json.loads(text) if text.strip() else {}
    except ValueError:
        out = {"unparsed": text}
    return PluginCall(done.returncode, out, done.stderr.decode(), seconds)


@dataclass
class Namespaces:
    """Named network namespaces (`ip netns add`), all removed by `close`."""

    names: list[str] = field(default_factory=list)

    def add(self, name: str, *, lo_up: bool = False) -> str:
        self.names.append(name)  # first: an interrupt right after `ip netns add` must not leak the namespace
        sh("ip", "netns", "add", name)
        if lo_up:
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        return f"/var/run/netns/{name}"

    def close(self) -> None:
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)
        self.names.clear()
