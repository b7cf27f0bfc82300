"""Real Open vSwitch on one machine: an ovsdb-server and ovs-vswitchd (userspace datapath) in a namespace of
their own, a br-int wired to a controller, and pods as namespaces with a veth on br-int.

Everything made here is recorded and undone by `close()`, even after a failure half way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def launch(args: list[str], log: Path, *, detach: bool = False) -> subprocess.Popen:
    """A process of this project run from the source tree, its output appended to `log`; `detach` gives it a
    session of its own, so it outlives the command that started it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on every address now: the kernel's picks for sockets bound to
    port 0, all held at once, so none is handed out twice (one probe closed before the next could get the
    same). Another process may still take one before its user binds it."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.socket())
            sockets[-1].bind(("0.0.0.0", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def wait_for(condition, what: str, *, timeout: float = 20.0, interval: float = 0.05):
    """Poll `condition` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Running: a zombie (dead, waiting for a parent that is gone or busy to reap it) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pid(pid: int, *, timeout: float = 10) -> None:
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not pid_alive(pid), f"pid {pid} to exit", timeout=timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)


@dataclass
class Pod:
    name: str
    netns: str
    ip: str

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        return sh("ip", "netns", "exec", self.netns, *args, check=check, timeout=timeout)

    def ping(self, ip: str, *, count: int = 1, wait: int = 2) -> bool:
        result = subprocess.run(
            ["ip", "netns", "exec", self.netns, "ping", "-c", str(count), "-W", str(wait), ip],
            capture_output=True,
            timeout=count * wait + 10,
            check=False,
        )
        return result.returncode == 0

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


class OvsNode:
    """One node: its own namespace, OVS instance and br-int, reachable from the root namespace."""

    def __init__(
        self, name: str, state_dir: Path, *, index: int = 1, tag: str | None = None, control_net: str = "10.254"
    ) -> None:
        """`tag` makes the namespace and veth names (default: from this process's pid, unique per run);
        `control_net` the first two octets of the /30 between the node and the root namespace."""
        self.name = name
        self.tag = tag or f"{os.getpid() % 10000}{index}"
        self.netns = f"tn-{name}-{self.tag}"
        self.dir = state_dir / name
        self.db = f"unix:{self.dir}/db.sock"
        self.host_ip, self.node_ip = f"{control_net}.{index}.1", f"{control_net}.{index}.2"
        self._veth = f"tnc{self.tag}"
        self._pods: list[Pod] = []

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> OvsNode:
        self.dir.mkdir(parents=True, exist_ok=True)
        sh("ip", "netns", "add", self.netns)
        self.exec("ip", "link", "set", "lo", "up")
        # A veth to the root namespace, where the controller listens.
        sh("ip", "link", "add", self._veth, "type", "veth", "peer", "name", "ctl0", "netns", self.netns)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self._veth)
        sh("ip", "link", "set", self._veth, "up")
        self.exec("ip", "addr", "add", f"{self.node_ip}/30", "dev", "ctl0")
        self.exec("ip", "link", "set", "ctl0", "up")
        sh("ovsdb-tool", "create", f"{self.dir}/conf.db", SCHEMA)
        self._daemon("ovsdb-server", f"{self.dir}/conf.db", f"--remote=p{self.db}")
        sh("ovs-vsctl", f"--db={self.db}", "--no-wait", "init")
        self._daemon("ovs-vswitchd", self.db, "--disable-system")
        return self

    def _daemon(self, program: str, *args: str) -> None:
        pidfile = self.dir / f"{program}.pid"
        rundir = f"OVS_RUNDIR={self.dir}"  # the bridge's br-int.mgmt socket goes there, not to /var/run
        self.exec(
            "env",
            rundir,
            program,
            *args,
            f"--pidfile={pidfile}",
            f"--unixctl={self.dir}/{program}.ctl",
            f"--log-file={self.dir}/{program}.log",
            "--detach",
        )

    def close(self) -> None:
        for pod in self._pods:
            sh("ip", "netns", "del", pod.netns, check=False)
        ctl = self.dir / "ovs-vswitchd.ctl"
        if ctl.exists():
            sh("ovs-appctl", "-t", str(ctl), "exit", "--cleanup", check=False, timeout=15)
        for program in ("ovs-vswitchd", "ovsdb-server"):  # known paths: a later process can stop them too
            pidfile = self.dir / f"{program}.pid"
            if pidfile.exists():
                stop_pid(int(pidfile.read_text().strip()))
        sh("ip", "link", "del", self._veth, check=False)
        sh("ip", "netns", "del", self.netns, check=False)
        if not os.environ.get("TENET_KEEP_OVS_LOGS"):  # set it to read the daemons' logs after a failure
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- commands ------------------------------------------------------------------------------

    def exec(self, *args: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.netns, *args, check=check)

    def appctl(self, *args: str) -> str:
        return sh("ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args)

    def purge_datapath_flows(self) -> None:
        """Drop every datapath flow (megaflow) of this node, as the agent does after a change to the policy
        tables (agent/datapath_flows.py: on the userspace datapath a megaflow may keep the verdict of the tables
        before a change). For a test that changes policies without an agent; raises RuntimeError when
        ovs-vswitchd refuses."""
        self.appctl("revalidator/purge")
        self.appctl("dpctl/del-flows")

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db={self.db}", "--timeout=20", *args)

    def ofctl(self, *args: str, timeout: float = 300) -> str:
        """`ovs-ofctl [--options] COMMAND br-int ARGS` against this node's bridge."""
        options = [a for a in args if a.startswith("--")]
        command, *rest = [a for a in args if not a.startswith("--")]
        bridge = f"unix:{self.dir}/br-int.mgmt"
        return sh("ovs-ofctl", "-O", "OpenFlow13", *options, command, bridge, *rest, timeout=timeout)

    def add_bridge(self, datapath_id: int, controller_port: int) -> None:
        self.vsctl(
            "add-br",
            "br-int",
            "--",
            "set",
            "bridge",
            "br-int",
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            "fail_mode=secure",
            f"other-config:datapath-id={datapath_id:016x}",
            "--",
            "set-controller",
            "br-int",
            f"tcp:{self.host_ip}:{controller_port}",
            "--",
            "set",
            "controller",
            "br-int",
            "connection-mode=out-of-band",
        )

    def connected(self) -> bool:
        return "is_connected: true" in self.vsctl("show")

    def add_pod(self, endpoint: dict, *, gateway: str, prefix: int, mtu: int) -> Pod:
        """A namespace with `eth0` (the endpoint's MAC, IP, route and MTU); its peer on br-int."""
        pod = Pod(endpoint["id"], f"tp-{endpoint['id']}-{self.tag}", endpoint["ip"])
        sh("ip", "netns", "add", pod.netns)
        self._pods.append(pod)
        port = endpoint["port_name"]
        sh(
            "ip",
            "netns",
            "exec",
            self.netns,
            "ip",
            "link",
            "add",
            port,
            "mtu",
            str(mtu),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.netns,
        )
        pod.run("ip", "link", "set", "eth0", "address", endpoint["mac"], "mtu", str(mtu))
        pod.run("ip", "addr", "add", f"{endpoint['ip']}/{prefix}", "dev", "eth0")
        pod.run("ip", "link", "set", "eth0", "up")
        pod.run("ip", "link", "set", "lo", "up")
        pod.run("ip", "route", "add", "default", "via", gateway)
        pod.run("ethtool", "-K", "eth0", "tx", "off")  # the userspace datapath does not fill checksums in
        self.exec("ip", "link", "set", port, "up")
        self.vsctl(
            "add-port",
            "br-int",
            port,
            "--",
            "set",
            "interface",
            port,
            f"ofport_request={endpoint['ofport']}",
            f"external_ids:tenet-endpoint={endpoint['id']}",
        )
        return pod


_TCP_SERVER = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((sys.argv[1],int(sys.argv[2])))\n"
    "s.listen(1);s.settimeout(float(sys.argv[3]));print('listening',flush=True)\n"
    "try:\n c,_=s.accept();c.sendall(b'tenet\\n');c.close()\nexcept OSError:pass\n"
)
_TCP_CLIENT = (
    "import socket,sys\n"
    "try:\n c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))\n"
    " print(c.recv(16).decode().strip())\nexcept OSError as e:print('failed',e)\n"
)


def tcp_connects(client: Pod, server: Pod, *, port: int = 5900, timeout: float = 3.0) -> bool:
    """A TCP connection from `client` to `server` that delivers data (the handshake alone proves little)."""
    python = "/usr/bin/python3"
    listener = server.popen(python, "-I", "-S", "-c", _TCP_SERVER, server.ip, str(port), str(timeout + 2))
    try:
        assert listener.stdout is not None and listener.stderr is not None
        if listener.stdout.readline().strip() != "listening":
            raise RuntimeError(f"the TCP listener in {server.name} did not start: {listener.stderr.read()}")
        answer = client.run(python, "-I", "-S", "-c", _TCP_CLIENT, server.ip, str(port), str(timeout), check=False)
        return answer.strip() == "tenet"
    finally:
        listener.kill()
        listener.wait(timeout=10)


def iperf_works(client: Pod, server: Pod) -> bool:
    """One second of iperf3 TCP from `client` to `server` completes."""
    listener = server.popen("iperf3", "-s", "-1", "-B", server.ip)
    try:
        wait_for(lambda: "iperf3" in server.run("ss", "-ltnp", check=False), "iperf3 to listen")
        result = client.run("iperf3", "-c", server.ip, "-t", "1", "--connect-timeout", "3000", check=False)
        return "receiver" in result
    finally:
        listener.kill()
        listener.wait(timeout=10)
