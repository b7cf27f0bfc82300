"""The in-namespace half of the mininet tests: Open vSwitch and a mininet network, driven over a pipe.

Run by `test_ring.py` as `ip netns exec NS unshare --mount --propagation private -- python network.py SPEC`,
so the network namespace NS is this process's own and the mount namespace too: a tmpfs over
/var/run/openvswitch gives ovsdb-server and ovs-vswitchd (userspace datapath) the default socket paths
mininet's `ovs-vsctl` and `ovs-ofctl` calls expect, without touching any other OVS on the machine.

SPEC (JSON): state directory, controller address, switches (name, datapath id), and the controller's own
link and endpoint documents, so ports get the names and ofports the model planned. Then one JSON request per
line on stdin, one JSON answer per line on the original stdout (everything mininet prints goes to stderr):

    {"op": "ping", "probes": [[host, ip], ...]}     every probe at once -> {"ok": [bool, ...]}
    {"op": "broadcast", "host": h, "ip": ip, "count": n}
    {"op": "counters", "hosts": [...], "intfs": [...]}  packet counters of host eth0s and switch ports
    {"op": "cmd", "host": h, "command": "ip neigh"}   a shell command in a host -> {"output": text}
    {"op": "link", "a": s1, "b": s2, "status": "down"|"up"}   mininet's configLinkStatus
    {"op": "iperf", "client": h, "server": h, "seconds": n}   iperf3's JSON summary
    {"op": "stop"}

Daemons are started detached with pidfiles and control sockets in the state directory, so the test can
stop them by pid even if this process dies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

OVS_RUNDIR = Path("/var/run/openvswitch")
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def start_ovs(state: Path) -> None:
    """ovsdb-server and ovs-vswitchd of this namespace, at the default socket path (a private tmpfs)."""
    OVS_RUNDIR.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "tenet-mininet", str(OVS_RUNDIR))
    run("ovsdb-tool", "create", str(state / "conf.db"), SCHEMA)
    for program, args in (
        ("ovsdb-server", [str(state / "conf.db"), f"--remote=punix:{OVS_RUNDIR}/db.sock"]),
        ("ovs-vswitchd", ["--disable-system"]),
    ):
        run(
            program,
            *args,
            f"--pidfile={state / program}.pid",
            f"--unixctl={state / program}.ctl",
            f"--log-file={state / program}.log",
            "--detach",
        )
        if program == "ovsdb-server":
            run("ovs-vsctl", "--no-wait", "init")


def build(spec: dict[str, Any]) -> Mininet:
    Mininet.inited = True  # skip mininet's fixLimits(): it raises machine-wide sysctls
    # Switch ports and host interfaces without IPv6: no router solicitations or MLD in the packet counters.
    run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    net = Mininet(controller=None, build=False, autoSetMacs=False, waitConnected=False)
    controller = spec["controller"]
    net.addController(RemoteController("c0", ip=controller["ip"], port=controller["port"]))
    switches = {
        s["name"]: net.addSwitch(
            s["name"], cls=OVSSwitch, dpid=f"{s['dpid']:016x}", datapath="user", protocols="OpenFlow13"
        )
        for s in spec["switches"]
    }
    for h in spec["hosts"]:  # endpoint documents: the model's IP, MAC, port name and ofport
        host = net.addHost(h["name"], ip=f"{h['ip']}/{h['prefix_len']}", mac=h["mac"])
        host.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        switch = switches[h["node"]]
        net.addLink(host, switch, port2=h["ofport"], intfName1=f"{h['name']}-eth0", intfName2=h["port_name"])
    for x in spec["links"]:  # link documents: the model's port names and planned ofports
        a, b = switches[x["a"]], switches[x["b"]]
        net.addLink(a, b, port1=x["a_ofport"], port2=x["b_ofport"], intfName1=x["a_port"], intfName2=x["b_port"])
    net.build()
    for host in net.hosts:
        # The userspace datapath does not fill in checksums: without this TCP never completes.
        host.cmd(f"ethtool -K {host.defaultIntf()} tx off")
    net.start()
    return net


def packet_counters(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/dev: interface -> rx and tx packets."""
    counters: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        fields = numbers.split()
        counters[name.strip()] = {"rx": int(fields[1]), "tx": int(fields[9])}
    return counters


def ping_all(net: Mininet, probes: list[list[str]]) -> list[bool]:
    """Every probe at once: two echo requests 0.2 s apart, a reply within a second counts."""
    pings = [net[host].popen(["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", ip]) for host, ip in probes]
    return [ping.wait(timeout=30) == 0 for ping in pings]


def iperf(net: Mininet, client: str, server: str, seconds: int) -> dict[str, object]:
    ip = net[server].IP()
    listener = net[server].popen(["iperf3", "-s", "-1", "-B", ip, "--forceflush"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while "listening" not in (listener.stdout.readline() or ""):
            if time.monotonic() > deadline or listener.poll() is not None:
                raise RuntimeError("iperf3 -s did not start")
        answer = net[client].popen(
            ["iperf3", "-c", ip, "-t", str(seconds), "-J", "--connect-timeout", "3000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = answer.communicate(timeout=seconds + 20)
        report = json.loads(out)
        if "error" in report:
            return {"error": report["error"]}
        return {"bits_per_second": report["end"]["sum_received"]["bits_per_second"]}
    finally:
        listener.kill()
        listener.wait(timeout=10)


def serve(net: Mininet, replies: TextIO) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        answer: dict[str, object]
        try:
            if op == "stop":
                break
            if op == "ping":
                answer = {"ok": ping_all(net, request["probes"])}
            elif op == "broadcast":
                host = net[request["host"]]
                host.cmd(f"ping -n -q -b -c {request['count']} -i 0.05 -W 1 {request['ip']}")
                answer = {}
            elif op == "counters":
                switches = packet_counters(Path("/proc/net/dev").read_text())
                hosts = {h: packet_counters(net[h].cmd("cat /proc/net/dev"))[f"{h}-eth0"] for h in request["hosts"]}
                answer = {"hosts": hosts, "intfs": {i: switches[i] for i in request["intfs"]}}
            elif op == "cmd":
                answer = {"output": net[request["host"]].cmd(request["command"])}
            elif op == "link":
                net.configLinkStatus(request["a"], request["b"], request["status"])
                answer = {}
            elif op == "iperf":
                answer = iperf(net, request["client"], request["server"], request["seconds"])
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as error:  # the test shows it; the network stays up for the next request
            answer = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(answer) + "\n")
        replies.flush()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # mininet's output goes to the log, the pipe carries only answers
    setLogLevel("info")
    state = Path(spec["state"])
    start_ovs(state)
    net = build(spec)
    try:
        pids = {host.name: host.pid for host in net.hosts}
        replies.write(json.dumps({"ready": True, "pids": pids}) + "\n")
        replies.flush()
        serve(net, replies)
    finally:
        net.stop()
        subprocess.run(
            ["ovs-appctl", "-t", str(state / "ovs-vswitchd.ctl"), "exit", "--cleanup"], check=False, timeout=15
        )
        subprocess.run(["ovs-appctl", "-t", str(state / "ovsdb-server.ctl"), "exit"], check=False, timeout=15)


if __name__ == "__main__":
    main()
