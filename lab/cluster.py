"""The multi-node lab on one machine: N nodes, each a network namespace with its own OVS and agent, joined by
an underlay; one controller in the root namespace; pods added through the real CNI plugin of their node.

    fabric namespace: Linux bridge `fab0` ── ul-<node> ⇄ ul0 (node): VXLAN underlay, on br-phy (userspace)
                                         └── vl-<node> ⇄ vl0 (node): VLAN uplink, a port of br-int
                                         └── ox-<id> ⇄ eth0 (outside host, 203.0.113.10: lab/outside.py)
    root namespace: the controller; tnc<tag> ⇄ ctl0 (node): the node's path to the controller

Everything lives under one state directory, with `lab.json` recording what exists, so `tenet-lab` commands
in separate processes see the same lab and `down` finds everything to remove, even after a failed `up`.
Names carry an id made from the state directory (namespaces tl-ID-*, tn-nodeN-IDN; veths tncIDN), and each
lab takes a control network no other lab uses, so several labs can run side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.client import Client, ClientError, path
from lab.outside import Outside
from lab.ovs import ROOT, OvsNode, Pod, free_ports, launch, pid_alive, sh, stop_pid, wait_for
from lab.pods import check_ip, cni_args, describe, endpoint_of, ensure_namespace, runtime_config
from lab.servers import Served, server_command

NODE_SETUP = ROOT / "vagrant" / "provision" / "node-setup.sh"
DEFAULT_STATE = Path("/var/lib/tenet-lab")
UNDERLAY = "192.168.100"  # node i has 192.168.100.i/24
CONTROL_NETS = range(200, 250)  # node i reaches the controller at 10.X.i.1, X free in the root namespace
CONTROLLER_SETTINGS = ("cluster_network", "cluster_subnet", "transit_subnet")  # from the config, if set
DEFAULT_CONFIG: dict[str, Any] = {
    "cluster_network": "default/pods",  # made by the controller; routed by the nodes' host stacks (tenet-gw0)
    "cluster_subnet": "10.244.0.0/16",
    "tenants": [
        {
            "name": "blue",
            "networks": [
                {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"},
                {"name": "db", "encap": "vlan", "vlan": 101, "subnet": "10.2.0.0/24"},
            ],
        },
        {
            "name": "red",
            "networks": [
                {"name": "web", "encap": "vxlan", "vni": 6001, "subnet": "10.1.0.0/24"},
                {"name": "db", "encap": "vlan", "vlan": 201, "subnet": "10.2.0.0/24"},
            ],
        },
    ],
    "qos": [],
}


class LabError(RuntimeError):
    """Something the user must fix or know: printed as one line by `tenet-lab`."""


@dataclass
class LabPod:
    name: str
    node: str
    network: str
    netns: str
    container_id: str
    ip: str | None = None
    mac: str | None = None
    endpoint: str | None = None  # the endpoint's id, once the lab has described the pod to the controller
    namespace: str | None = None  # the Kubernetes namespace (of the network's tenant)
    labels: dict[str, str] = field(default_factory=dict)
    serve: list[str] = field(default_factory=list)  # "80/tcp": served ports, named serve-80-tcp (lab/servers.py)
    server_pid: int | None = None

    def as_pod(self) -> Pod:
        return Pod(self.name, self.netns, self.ip or "")


@dataclass
class LabState:
    nodes: list[str] = field(default_factory=list)
    control_net: str = ""  # "10.X"
    api_port: int = 0
    server: str = ""  # the API's URL, what `tenetctl` takes as --server (TENET_SERVER)
    ofp_port: int = 0
    token: str = ""
    controller_pid: int | None = None
    agent_pids: dict[str, int] = field(default_factory=dict)
    outside_pids: list[int] = field(default_factory=list)  # the outside host's servers
    pods: dict[str, LabPod] = field(default_factory=dict)
    controller_settings: dict[str, str] = field(default_factory=dict)  # CONTROLLER_SETTINGS the config gave
    kubernetes: bool = False  # up --kubernetes: etcd, the API server and the kubelets (lab/k8s.py)
    etcd_pid: int | None = None
    apiserver_pid: int | None = None
    etcd_url: str = ""  # etcd's client URL
    apiserver_port: int = 0  # the API server's, kept across its restarts (`tenet-lab apiserver start`)
    apiserver_token: str = ""  # the bearer token of STATE_DIR/kubeconfig, kept across the API server's restarts
    kubelet_pids: dict[str, int] = field(default_factory=dict)
    tenant_tokens: dict[str, str] = field(default_factory=dict)  # a token per tenant of the config: its own only

    @classmethod
    def load(cls, file: Path) -> LabState:
        data = json.loads(file.read_text())
        pods = {name: LabPod(**pod) for name, pod in data.pop("pods", {}).items()}
        return cls(**data, pods=pods)

    def save(self, file: Path) -> None:
        temporary = file.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        os.replace(temporary, file)


class Lab:
    def __init__(self, state_dir: Path = DEFAULT_STATE, *, progress: Any = None) -> None:
        # Absolute: the lab's processes start in the repository (lab.ovs.launch), and their paths are passed
        # on command lines, where a relative one beginning with "-" would read as an option.
        self.dir = state_dir.absolute()
        self.file = self.dir / "lab.json"
        self.state = LabState.load(self.file) if self.file.exists() else LabState()
        self.progress = progress or (lambda message: None)

    # --- names ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:4]

    @property
    def fabric_netns(self) -> str:
        return f"tl-{self.id}-fabric"

    @property
    def outside(self) -> Outside:
        """The outside host: beyond the fabric, reachable from every node's host stack (lab/outside.py)."""
        return Outside(f"tl-{self.id}-outside", self.fabric_netns, self.id, self.dir / "outside")

    def netns_of(self, *, pod: str | None = None, node: str | None = None) -> str:
        """The network namespace of a pod, or of a node's host stack; LabError names an unknown one."""
        if pod is not None:
            pods = self.pods()
            if pod not in pods:
                raise LabError(f"no pod {pod!r}: the lab has {', '.join(pods) or 'no pods'}")
            return pods[pod].netns
        if node not in self.state.nodes:
            raise LabError(f"unknown node {node!r}: the lab has {', '.join(self.state.nodes)}")
        return self.node(node).netns

    def pods(self) -> dict[str, LabPod]:
        """The pods added with `pod add`, and with --kubernetes those the kubelets run (named NAMESPACE/NAME)."""
        if not self.state.kubernetes:
            return dict(self.state.pods)
        from lab.sandbox import lab_pods

        return {**self.state.pods, **lab_pods(self)}

    def pod_netns(self, pod: str) -> str:
        return f"tl-{self.id}-{pod}"

    def node(self, name: str) -> OvsNode:
        index = self.state.nodes.index(name) + 1
        tag = f"{self.id}{index}"
        return OvsNode(name, self.dir / "nodes", index=index, tag=tag, control_net=self.state.control_net)

    @property
    def client(self) -> Client:
        return Client(f"http://127.0.0.1:{self.state.api_port}", self.state.token, timeout=60)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state.save(self.file)

    # --- up and down ---------------------------------------------------------------------------

    def up(self, nodes: int, config: dict[str, Any] | None = None, *, kubernetes: bool = False) -> None:
        """Build the lab; `kubernetes`: with the Kubernetes side of lab/k8s.py (API server, kubelets)."""
        if self.file.exists():
            raise LabError(f"a lab is already up in {self.dir}: `tenet-lab down` first")
        if not 1 <= nodes <= 200:
            raise LabError(f"--nodes {nodes}: want 1..200")
        config = config or DEFAULT_CONFIG
        check_config(config)  # the whole of it, before anything is built
        self.state = LabState(nodes=[f"node{i}" for i in range(1, nodes + 1)], control_net=_free_control_net())
        self.state.kubernetes = kubernetes
        self.save()
        try:
            self._fabric()
            self._outside()
            if kubernetes:
                from lab import k8s

                k8s.start_api(self, _spawn, _alive)
            self._controller(config)
            if kubernetes:  # the agents start once the controller's watches have the Nodes
                from lab import k8s

                k8s.wait_for_nodes(self)
            self._apply(config)
            for name in self.state.nodes:
                self._node(name, config)
            self._warm_underlay()
            if kubernetes:
                from lab import k8s

                k8s.start_kubelets(self, _spawn, _alive)
        except BaseException:
            self.progress("up failed: taking down what was made")
            self.down()
            raise

    def _fabric(self) -> None:
        self.progress("fabric: a namespace with the Linux bridge fab0")
        sh("ip", "netns", "add", self.fabric_netns)
        fabric = ("ip", "netns", "exec", self.fabric_netns)
        sh(*fabric, "ip", "link", "set", "lo", "up")
        sh(*fabric, "ip", "link", "add", "fab0", "type", "bridge")
        sh(*fabric, "ip", "link", "set", "fab0", "up")

    def _outside(self) -> None:
        outside = self.outside
        self.progress(f"outside host: namespace {outside.netns}, HTTP and echo servers on 203.0.113.10")
        self.state.outside_pids = outside.start(_spawn)
        self.save()
        wait_for(outside.listening, "the outside host's servers to listen", timeout=20)

    def _controller(self, config: dict[str, Any]) -> None:
        self.state.api_port, self.state.ofp_port = free_ports(2)
        self.state.server = f"http://127.0.0.1:{self.state.api_port}"
        self.state.token = secrets.token_hex(16)
        # Each agent gets a token of its own node only; the admin token stays with tenet-lab and tenetctl.
        node_tokens = {name: secrets.token_hex(16) for name in self.state.nodes}
        for name, token in node_tokens.items():
            file = self._token_file(name)
            file.write_text(token)
            os.chmod(file, 0o600)
        tokens = self.dir / "tokens.json"
        self.state.tenant_tokens = {t["name"]: secrets.token_hex(16) for t in config.get("tenants", [])}
        tenants = {name: [token] for name, token in self.state.tenant_tokens.items()}
        document = {"admin": [self.state.token], "tenants": tenants, "nodes": {n: [t] for n, t in node_tokens.items()}}
        tokens.write_text(json.dumps(document))
        os.chmod(tokens, 0o600)
        args = [
            sys.executable, "-m", "controller.main",
            "--ofp-host", "0.0.0.0", "--ofp-port", str(self.state.ofp_port),
            "--api-host", "0.0.0.0", "--api-port", str(self.state.api_port),
            "--store", f"sqlite:///{self.dir}/tenet.db", "--token-file", str(tokens),
        ]  # fmt: skip
        for setting in CONTROLLER_SETTINGS:  # the cluster network, when the config names one
            if config.get(setting):
                args += [f"--{setting.replace('_', '-')}", str(config[setting])]
                self.state.controller_settings[setting] = str(config[setting])
        if self.state.kubernetes:
            args += ["--kubeconfig", str(self.dir / "kubeconfig")]
        self.progress(f"controller: API on :{self.state.api_port}, OpenFlow on :{self.state.ofp_port}")
        self.state.controller_pid = _spawn(args, self.dir / "controller.log")
        self.save()
        wait_for(self._controller_answers, "the controller's API", timeout=60)

    def _controller_answers(self) -> bool:
        if not _alive(self.state.controller_pid or 0):
            raise LabError(f"the controller exited; see {self.dir / 'controller.log'}")
        try:
            self.client.get("/v1/health")
        except ClientError:
            return False
        return True

    def _apply(self, config: dict[str, Any]) -> None:
        """Tenants, networks and QoS of the config, through the API as an admin would."""
        client = self.client
        for tenant in config.get("tenants", []):
            client.post("/v1/tenants", {"name": tenant["name"]})
            for network in tenant.get("networks", []):
                client.post(path("v1", "tenants", tenant["name"], "networks"), network)
                self.progress(f"network {tenant['name']}/{network['name']} ({network['encap']})")
        for profile in config.get("qos", []):
            body = {k: profile[k] for k in ("name", "rate_kbps", "burst_kb", "direction") if k in profile}
            client.post("/v1/qos", body)
            targets = profile.get("applies_to") or []
            for target in [targets] if isinstance(targets, str) else targets:
                client.post(path("v1", "qos", profile["name"], "attachments"), {"target": target})
            self.progress(f"QoS profile {profile['name']}: {profile['rate_kbps']} kbit/s on {targets or 'nothing'}")
        for namespace in config.get("namespaces", []):
            client.post("/v1/namespaces", {k: namespace[k] for k in ("name", "tenant", "labels") if k in namespace})
            self.progress(f"namespace {namespace['name']} of tenant {namespace['tenant']}")

    def _node(self, name: str, config: dict[str, Any]) -> None:
        node = self.node(name)
        index = self.state.nodes.index(name) + 1
        self.progress(f"{name}: namespace {node.netns}, ovsdb-server and ovs-vswitchd (userspace)")
        node.start()
        fabric = ("ip", "netns", "exec", self.fabric_netns)
        for kind in ("ul", "vl"):  # underlay for VXLAN, uplink for VLAN: both into the fabric bridge
            sh("ip", "link", "add", f"{kind}0", "netns", node.netns, "type", "veth", "peer", "name",
               f"{kind}-{name}", "netns", self.fabric_netns)  # fmt: skip
            sh(*fabric, "ip", "link", "set", f"{kind}-{name}", "master", "fab0", "up")
        # The conflist's default network; the lab names each pod's network anyway.
        default = (
            config.get("cni_default") or f"{config['tenants'][0]['name']}/{config['tenants'][0]['networks'][0]['name']}"
        )
        default_tenant, default_network = default.split("/", 1)
        environment = {
            "TUNNEL_IP": f"{UNDERLAY}.{index}",
            "UNDERLAY_IF": "ul0",
            "UPLINK_IF": "vl0",
            "DATAPATH_TYPE": "netdev",
            "OVSDB": node.db,
            "TENET_AGENT": str(Path(sys.executable).with_name("tenet-agent")),
            "CNI_BIN_DIR": str(node.dir / "cni" / "bin"),
            "CNI_CONF_DIR": str(node.dir / "cni" / "net.d"),
            "AGENT_SOCKET": str(node.dir / "agent.sock"),
            "CNI_TENANT": default_tenant,
            "CNI_NETWORK": default_network,
        }
        if self.state.kubernetes:  # the controller picks each pod's network (README "Kubernetes")
            environment["CNI_KUBERNETES"] = "1"
        env_args = [f"{key}={value}" for key, value in environment.items()]
        self.progress(f"{name}: node set-up (vagrant/provision/node-setup.sh): underlay {UNDERLAY}.{index}")
        node.exec("env", *env_args, "sh", str(NODE_SETUP))
        self.outside.route_from(node.netns)
        args = [
            "ip", "netns", "exec", node.netns, sys.executable, "-m", "agent.main", "run",
            "--node", name, "--tunnel-ip", f"{UNDERLAY}.{index}", "--uplink", "vl0",
            "--controller", f"http://{node.host_ip}:{self.state.api_port}",
            "--token-file", str(self._token_file(name)),
            "--openflow", f"tcp:{node.host_ip}:{self.state.ofp_port}",
            "--ovsdb", node.db, "--datapath-type", "netdev", "--socket", environment["AGENT_SOCKET"],
        ]  # fmt: skip
        self.start_agent(name, args)

    def _warm_underlay(self) -> None:
        """Userspace OVS drops a tunnel's first packet while it resolves the remote node's MAC, and learns
        it only by snooping ARP on br-phy: one ping between every pair of nodes fills that cache."""
        for index, name in enumerate(self.state.nodes, start=1):
            node = self.node(name)
            for other in range(1, len(self.state.nodes) + 1):
                if other != index:
                    node.exec("ping", "-c", "1", "-W", "2", f"{UNDERLAY}.{other}", check=False)
        self.progress("underlay: every node has resolved every other node's tunnel address")

    def start_agent(self, name: str, args: list[str] | None = None) -> None:
        args = args or json.loads((self.dir / "nodes" / name / "agent.args").read_text())
        (self.dir / "nodes" / name / "agent.args").write_text(json.dumps(args))
        log = self.dir / "nodes" / name / "agent.log"
        mark = log.stat().st_size if log.exists() else 0
        self.state.agent_pids[name] = _spawn(args, log)
        self.save()
        socket_path = self.dir / "nodes" / name / "agent.sock"

        def serving() -> bool:
            if not _alive(self.state.agent_pids[name]):
                last = log.read_text()[mark:].strip().splitlines()[-5:]  # `down` removes the log
                raise LabError(f"the agent of {name} exited; its log ended: {' | '.join(last)}")
            return socket_path.exists() and "socket " in log.read_text()[mark:]

        wait_for(serving, f"the agent of {name}", timeout=60)
        wait_for(lambda: self.switch(name).get("in_sync"), f"br-int of {name} to sync", timeout=60)
        self.progress(f"{name}: agent up, br-int in sync with the controller")

    def kill_agent(self, name: str) -> None:
        """SIGKILL, as a crash would: for tests of what keeps working without it."""
        pid = self.state.agent_pids.pop(name)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), f"the agent of {name} to die")
        self.save()

    def _token_file(self, node: str) -> Path:
        """The file holding the token of `node`'s agent (written when the controller starts)."""
        return self.dir / f"{node}-token"

    def switch(self, node: str) -> dict[str, Any]:
        try:
            return self.client.get(path("v1", "nodes", node)).get("switch") or {}
        except ClientError:
            return {}

    def down(self) -> None:
        """Remove every pod, agent, OVS instance, namespace and veth of the lab, and the controller."""
        if self.state.kubelet_pids or self.state.kubernetes:
            from lab import k8s

            k8s.stop_kubelets(self, _stop)
        for pod in list(self.state.pods.values()):
            if pod.server_pid:
                _stop(pod.server_pid)
            sh("ip", "netns", "del", pod.netns, check=False)
        for name, pid in self.state.agent_pids.items():
            self.progress(f"{name}: stopping the agent")
            _stop(pid)
        for name in self.state.nodes:
            node = self.node(name)
            if node.dir.exists() or _netns_exists(node.netns):
                self.progress(f"{name}: stopping OVS, removing {node.netns}")
                node.close()
        if self.state.controller_pid:
            self.progress("stopping the controller")
            _stop(self.state.controller_pid)
        if self.state.apiserver_pid or self.state.etcd_pid:
            from lab import k8s

            k8s.stop_api(self, _stop)
        for pid in self.state.outside_pids:
            _stop(pid)
        self.outside.close()
        sh("ip", "netns", "del", self.fabric_netns, check=False)
        for name in self.state.nodes:
            self._token_file(name).unlink(missing_ok=True)
        for leftover in ("lab.json", "tenet.db", "tokens.json", "admin-token"):
            (self.dir / leftover).unlink(missing_ok=True)
        self.state = LabState()

    # --- pods ----------------------------------------------------------------------------------

    def pod_add(
        self,
        name: str,
        node: str,
        network: str,
        *,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        serve: list[Served] | None = None,
        ip: str | None = None,
    ) -> LabPod:
        """A pod through `node`'s CNI plugin on `network` ("TENANT/NETWORK"), as a user's cluster makes one
        (lab.pods): `namespace` (made first if the tenant lacks it) and the pod's name in CNI_ARGS, the address
        `ip` through the CNI `ips` capability, then `labels` and `serve`'s named ports in one PATCH of the
        endpoint; `serve` starts the pod's servers (lab/servers.py). Raises LabError naming the option."""
        if name in self.state.pods:
            raise LabError(f"pod {name} exists (on {self.state.pods[name].node})")
        if node not in self.state.nodes:
            raise LabError(f"unknown node {node!r}: the lab has {', '.join(self.state.nodes)}")
        if network.count("/") != 1:
            raise LabError(f"--network {network!r}: want TENANT/NETWORK")
        check_ip(ip)
        pod = LabPod(name, node, network, self.pod_netns(name), f"lab-{self.id}-{name}")
        pod.namespace, pod.labels, pod.serve = namespace, dict(labels or {}), [str(s) for s in serve or []]
        if namespace is not None:  # first: the controller files the endpoint in it at the ADD
            ensure_namespace(self.client, namespace, network.split("/", 1)[0])
        sh("ip", "netns", "add", pod.netns)
        self.state.pods[name] = pod
        self.save()
        try:
            result = self._cni("ADD", pod, ip)
            ours = result["ips"][-1]
            pod.ip = ours["address"].split("/")[0]
            pod.mac = result["interfaces"][ours["interface"]]["mac"]
            pod.endpoint = endpoint_of(self.client, pod)["id"]
            self.save()
            if labels or serve:
                describe(self, pod, serve or [])
            if serve:
                self.start_servers(pod, serve)
        except BaseException:
            self.pod_rm(name, check=False)  # as a runtime does after a failed ADD
            raise
        return pod

    def stop_servers(self, pod: LabPod) -> None:
        """End `pod`'s servers, if it has any running."""
        if pod.server_pid:
            _stop(pod.server_pid)
            pod.server_pid = None
            self.save()

    def start_servers(self, pod: LabPod, serve: list[Served]) -> None:
        """Start `pod`'s servers on `serve` (lab/servers.py) and wait until they listen; the pid is kept."""
        log = self.dir / "pods" / f"{pod.name}.log"
        log.unlink(missing_ok=True)
        process = launch(server_command(pod.netns, pod.name, serve), log, detach=True)
        _CHILDREN[process.pid] = process
        pod.server_pid = process.pid
        self.save()
        wait_for(lambda: _listening(process.pid, log), f"the servers of pod {pod.name} ({log})", timeout=20)

    def pod_rm(self, name: str, *, check: bool = True) -> None:
        pod = self.state.pods.get(name)
        if pod is None:
            if name in self.pods():  # a kubelet's: its Pod is the API server's
                raise LabError(f"pod {name} runs from the API server: `kubectl delete pod` removes it")
            raise LabError(f"no pod {name!r}")
        self.stop_servers(pod)
        try:
            self._cni("DEL", pod)
        except LabError:
            if check:
                raise
        sh("ip", "netns", "del", pod.netns, check=False)
        del self.state.pods[name]
        self.save()

    def run_cni(self, command: str, pod: LabPod, *, cni_args: str | None = None) -> dict[str, Any]:
        """Run the node's installed plugins as a runtime does: loopback, then tenet with its prevResult; the
        ADD's result. `cni_args`: the CNI_ARGS a kubelet passes (K8S_POD_NAMESPACE, ...): then the plugin's
        config is the conflist's, else the lab names the pod's network. Raises LabError with the plugin's
        error."""
        return self._cni(command, pod, kubelet_args=cni_args)

    def _cni(
        self, command: str, pod: LabPod, ip: str | None = None, *, kubelet_args: str | None = None
    ) -> dict[str, Any]:
        """Run the node's installed plugins as a runtime does: loopback, then tenet with its prevResult, the
        pod's Kubernetes namespace and name in CNI_ARGS and the address `ip` asked (lab.pods); or, for a
        kubelet's pod, the kubelet's `kubelet_args` and the conflist's own config."""
        node_dir = self.dir / "nodes" / pod.node / "cni"
        conflist = json.loads((node_dir / "net.d" / "10-tenet.conflist").read_text())
        tenant, network = pod.network.split("/") if kubelet_args is None else ("", "")
        tenet = next(p for p in conflist["plugins"] if p["type"] == "tenet")
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": pod.container_id,
            "CNI_NETNS": f"/var/run/netns/{pod.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": f"{node_dir / 'bin'}:/usr/lib/cni",
            "CNI_ARGS": cni_args(pod, ip, tenet) if kubelet_args is None else kubelet_args,
        }
        result: dict[str, Any] | None = None
        plugins = [(str(node_dir / "bin" / p["type"]), p) for p in conflist["plugins"]]
        if command == "DEL":
            plugins.reverse()
        for program, plugin in plugins:
            config = {**plugin, "cniVersion": conflist["cniVersion"], "name": conflist["name"]}
            if plugin is tenet and kubelet_args is None:  # the lab names each pod's network; a kubelet's pods do not
                config |= {"tenant": tenant, "network": network}
                if command == "ADD" and runtime_config(ip, plugin):
                    config["runtimeConfig"] = runtime_config(ip, plugin)
            if result is not None and command == "ADD":
                config["prevResult"] = result
            done = subprocess.run(
                [program], input=json.dumps(config).encode(), env=environment, capture_output=True, timeout=120
            )
            if done.returncode != 0:
                asked = f" (--ip {ip})" if ip is not None and command == "ADD" else ""
                raise LabError(
                    f"{command} of pod {pod.name}{asked} failed in {Path(program).name}: {done.stdout.decode()}"
                )
            if command == "ADD":
                result = json.loads(done.stdout)
        return result or {}


_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this one started: reaped here, never left as zombies


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    return child.poll() is None if child is not None else pid_alive(pid)


def _stop(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is None:
        stop_pid(pid)
        return
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)


def _spawn(args: list[str], log: Path) -> int:
    """A process that outlives this command: its own session, output to its log; returns its pid."""
    process = launch(args, log, detach=True)
    _CHILDREN[process.pid] = process
    return process.pid


def _listening(pid: int, log: Path) -> bool:
    if not _alive(pid):
        raise LabError(f"a pod's servers exited: {log.read_text()[-300:] if log.exists() else 'no log'}")
    return log.exists() and "listening" in log.read_text()


def _free_control_net() -> str:
    """A 10.X/16 with no address in the root namespace, for the /30s between it and the nodes."""
    used = sh("ip", "-o", "-4", "addr", "show")
    for octet in CONTROL_NETS:
        if f" 10.{octet}." not in used:
            return f"10.{octet}"
    raise LabError(f"every control network 10.{CONTROL_NETS[0]}-{CONTROL_NETS[-1]}.0.0/16 is in use")


def _netns_exists(name: str) -> bool:
    return Path("/var/run/netns", name).exists()


def load_config(file: Path) -> dict[str, Any]:
    """The YAML of `up --config`, checked whole (check_config) before anything is built; LabError names the
    file and the field."""
    try:
        config = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LabError(f"--config {file}: {error}") from None
    if not isinstance(config, dict) or not config.get("tenants"):
        raise LabError(f"--config {file}: want a mapping with tenants (and their networks)")
    for i, tenant in enumerate(config["tenants"]):
        if not isinstance(tenant, dict) or not tenant.get("networks"):
            raise LabError(f"--config {file}: tenants[{i}] needs a name and networks")
    for i, namespace in enumerate(config.get("namespaces") or []):
        if not isinstance(namespace, dict) or not namespace.get("name") or not namespace.get("tenant"):
            raise LabError(f"--config {file}: namespaces[{i}] needs a name and a tenant (labels optional)")
    try:
        check_config(config)
    except LabError as error:
        raise LabError(f"--config {file}: {error}") from None
    return config


LAB_KEYS = (*CONTROLLER_SETTINGS, "cni_default")  # the lab's own top-level keys, beside the topology file's
APPLIED = ("tenants", "namespaces", "qos")  # what `up` applies of the topology file's sections (nodes... it makes)
API_NETWORK_KEYS = ("nat_outgoing", "node_ports")  # a network's keys the API takes beyond the file format's


def check_config(config: dict[str, Any]) -> None:
    """Check everything `up` would apply before it builds anything, with the validation that already exists:
    the controller's own for the cluster network's settings (controller.main.load_gateway), the topology
    loader's for tenants with their networks, namespaces and QoS profiles (topology.loader.load_data, which
    names the field: `tenants[0].networks[1].vlan: VLAN 5000 is outside 1..4094`), with the cluster network
    made as the controller makes it (a stand-in VNI: the controller takes its pool's lowest free one). A
    network's `nat_outgoing` and `node_ports` are the API's to check. Raises LabError."""
    from controller.main import Settings, StartupError, load_gateway
    from topology.errors import ValidationError
    from topology.loader import SECTIONS, load_data

    unknown = sorted(str(key) for key in config if key not in (*SECTIONS, *LAB_KEYS))
    if unknown:
        raise LabError(f"unknown top-level key {unknown[0]!r} (allowed: {', '.join((*APPLIED, *LAB_KEYS))})")
    try:
        default = Settings()
        network, subnet, transit = (str(config.get(k) or getattr(default, k)) for k in CONTROLLER_SETTINGS)
        gateway = load_gateway(Settings(cluster_network=network, cluster_subnet=subnet, transit_subnet=transit))
    except StartupError as error:
        raise LabError(str(error).removeprefix("bad setting ")) from None
    document: dict[str, Any] = {key: config[key] for key in APPLIED if config.get(key) is not None}
    tenants = document.get("tenants")
    if isinstance(tenants, list):
        document["tenants"] = [_file_tenant(tenant) for tenant in tenants]
        if gateway is not None:
            _add_cluster_network(document["tenants"], gateway.cluster_network, str(gateway.cluster_subnet))
    try:
        load_data(document, source="config")
    except ValidationError as error:
        raise LabError(str(error)) from None


def _file_tenant(tenant: object) -> object:
    """The tenant as the topology file has it: its networks without the API's own keys."""
    if not isinstance(tenant, dict) or not isinstance(tenant.get("networks"), list):
        return tenant
    networks = [
        {k: v for k, v in network.items() if k not in API_NETWORK_KEYS} if isinstance(network, dict) else network
        for network in tenant["networks"]
    ]
    return {**tenant, "networks": networks}


def _add_cluster_network(tenants: list[Any], key: str, subnet: str) -> None:
    """The cluster network (`key`, TENANT/NAME) and its tenant among `tenants`, if the config has not got them,
    so namespaces and QoS profiles of the config may name them as they may in the lab."""
    tenant_name, name = key.split("/", 1)
    vnis = {
        n.get("vni") for t in tenants if isinstance(t, dict) for n in t.get("networks") or [] if isinstance(n, dict)
    }
    vni = next(v for v in range(5000, 1 << 24) if v not in vnis)
    tenant = next((t for t in tenants if isinstance(t, dict) and t.get("name") == tenant_name), None)
    if tenant is None:
        tenant = {"name": tenant_name, "networks": []}
        tenants.append(tenant)
    networks = tenant.setdefault("networks", [])
    if isinstance(networks, list) and not any(isinstance(n, dict) and n.get("name") == name for n in networks):
        networks.append({"name": name, "encap": "vxlan", "vni": vni, "subnet": subnet})
