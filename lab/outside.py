"""The lab's outside host: a namespace beyond the fabric that plays "the internet" for pods' outgoing traffic.

    outside namespace: eth0 ── (veth) ── ox-<id> on fab0, in the fabric namespace
        203.0.113.10/24 (TEST-NET-3, RFC 5737: never routed anywhere, so all local to the machine)
        192.168.100.254/24 on the underlay's subnet: every node routes 203.0.113.0/24 through it, and the
        outside host answers each node on its underlay address directly

It serves HTTP on port 80 (Python's http.server, logging each request with its client's address) and a TCP and
a UDP echo on port 7 (socat, RFC 862), so a test sees which source address a pod's traffic left the cluster
with: a node's underlay address after the node's SNAT, never a pod's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.ovs import sh

ADDRESS = "203.0.113.10"  # TEST-NET-3 (RFC 5737)
SUBNET = "203.0.113.0/24"
FABRIC_ADDRESS = "192.168.100.254"  # on the underlay's /24 (nodes are .1 to .200)
HTTP_PORT = 80
ECHO_PORT = 7  # TCP and UDP echo (RFC 862)
PAGE = "Hello from the outside host.\n"


class Outside:
    """The outside host of one lab: namespace `netns`, attached to the Linux bridge fab0 of `fabric_netns`.

    `dir` holds its web root and its logs (http.log: one line per request, the client's address first)."""

    def __init__(self, netns: str, fabric_netns: str, tag: str, dir: Path) -> None:
        self.netns = netns
        self.fabric_netns = fabric_netns
        self.veth = f"ox-{tag}"  # the fabric's end
        self.dir = dir

    def start(self, spawn: Callable[[list[str], Path], int]) -> list[int]:
        """Namespace, veth into fab0, addresses, and the servers; returns their pids (`spawn(args, log)` starts
        one process and returns its pid). Raises RuntimeError when a command fails."""
        sh("ip", "netns", "add", self.netns)
        inside = ("ip", "netns", "exec", self.netns)
        fabric = ("ip", "netns", "exec", self.fabric_netns)
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*fabric, "ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh(*fabric, "ip", "link", "set", self.veth, "master", "fab0", "up")
        sh(*inside, "ip", "addr", "add", f"{ADDRESS}/24", "dev", "eth0")
        sh(*inside, "ip", "addr", "add", f"{FABRIC_ADDRESS}/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        # The nodes' userspace OVS takes frames off a socket and does not fill in checksums left to offload.
        sh(*inside, "ethtool", "-K", "eth0", "tx", "off")
        root = self.dir / "www"
        root.mkdir(parents=True, exist_ok=True)
        (root / "index.html").write_text(PAGE)
        python = "/usr/bin/python3"
        servers = [
            ([python, "-u", "-m", "http.server", str(HTTP_PORT), "--directory", str(root)], "http.log"),
            (["socat", f"TCP-LISTEN:{ECHO_PORT},fork,reuseaddr", "PIPE"], "tcp-echo.log"),
            # bound to ADDRESS, or a reply would leave from the underlay address, and no client takes it
            (["socat", f"UDP-RECVFROM:{ECHO_PORT},bind={ADDRESS},fork", "PIPE"], "udp-echo.log"),
        ]
        return [spawn([*inside, *args], self.dir / log) for args, log in servers]

    def listening(self) -> bool:
        """The HTTP server and both echoes have their sockets open."""
        tcp = sh("ip", "netns", "exec", self.netns, "ss", "-ltnH", check=False)
        udp = sh("ip", "netns", "exec", self.netns, "ss", "-lunH", check=False)
        return f":{HTTP_PORT} " in tcp and f":{ECHO_PORT} " in tcp and f":{ECHO_PORT} " in udp

    def route_from(self, node_netns: str) -> None:
        """The route of a node's host stack to the outside host, over its underlay address."""
        sh("ip", "netns", "exec", node_netns, "ip", "route", "replace", SUBNET, "via", FABRIC_ADDRESS)

    def http_log(self) -> list[str]:
        """The HTTP server's request lines so far, oldest first: `CLIENT - - [TIME] "GET / HTTP/1.1" 200 -`."""
        log = self.dir / "http.log"
        return [line for line in log.read_text().splitlines() if '"GET ' in line] if log.exists() else []

    def close(self) -> None:
        """Remove the namespace (its veth goes with it); the caller stops the servers first."""
        sh("ip", "netns", "del", self.netns, check=False)
