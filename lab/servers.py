"""A pod's served ports and the probes that try them: small stdlib servers and clients run in pod namespaces.

`tenet-lab pod add ... --serve 80/tcp,81/udp` starts one server process in the pod's namespace (its pid in
the lab's state, ended by `pod rm` and `down`): on each TCP port it accepts, answers the pod's name and
closes; on each UDP port it answers every datagram with the pod's name. The pod's endpoint gets one named
container port per served port, named as the upstream NetworkPolicy e2e suite names them:
`serve-80-tcp`, `serve-81-udp`.

A probe is a new connection: TCP connects and reads the answer; UDP sends a datagram and waits for the
answer. Both say who answered, so with overlapping subnets a probe knows it reached the pod it meant.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

PYTHON = "/usr/bin/python3"  # the system's: pods run it with -I -S, nothing of the project imported
PROTOCOLS = ("tcp", "udp")

SERVER = r"""
import socket, sys, threading
name = sys.argv[1].encode()
sockets = []
for spec in sys.argv[2:]:
    port, proto = spec.split("/")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    if proto == "tcp":
        s.listen(128)
    sockets.append((s, proto))
def answer(c):
    try:
        c.sendall(name + b"\n")
    except OSError:
        pass
    finally:
        c.close()
def serve(s, proto):
    while True:
        if proto == "tcp":
            c, _ = s.accept()
            threading.Thread(target=answer, args=(c,), daemon=True).start()
        else:
            _, peer = s.recvfrom(2048)
            s.sendto(name + b"\n", peer)
threads = [threading.Thread(target=serve, args=pair, daemon=True) for pair in sockets]
for t in threads:
    t.start()
print("listening", flush=True)
for t in threads:
    t.join()
"""

PROBER = r"""
import json, socket, sys, threading
wanted, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
found = [None] * len(wanted)
def probe(i, ip, proto, port):
    try:
        if proto == "tcp":
            c = socket.create_connection((ip, port), timeout=timeout)
        else:
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(timeout)
            c.connect((ip, port))
            c.send(b"probe\n")
        c.settimeout(timeout)
        with c:
            found[i] = c.recv(256).decode().strip() or None
    except OSError:
        pass
threads = [threading.Thread(target=probe, args=(i, *w)) for i, w in enumerate(wanted)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(found))
"""


@dataclass(frozen=True, order=True)
class Served:
    """One served port: `port` 1..65535, `protocol` tcp or udp."""

    port: int
    protocol: str

    @property
    def name(self) -> str:
        """The container port's name, as the upstream e2e cluster names it: serve-80-tcp."""
        return f"serve-{self.port}-{self.protocol}"

    def container_port(self) -> dict[str, object]:
        """The endpoint's `ports` entry: `{name, port, protocol}` with the protocol in capitals (TCP, UDP)."""
        return {"name": self.name, "port": self.port, "protocol": self.protocol.upper()}

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def parse_serve(text: str, field: str = "--serve") -> list[Served]:
    """`80/tcp,81/udp` (protocol default tcp) -> the served ports, sorted; ValueError names `field` and the part."""
    served = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        port_text, _, protocol = part.partition("/")
        protocol = (protocol or "tcp").lower()
        if protocol not in PROTOCOLS:
            raise ValueError(f"{field} {part!r}: the protocol is tcp or udp")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{field} {part!r}: the port is 1..65535")
        served.add(Served(int(port_text), protocol))
    if not served:
        raise ValueError(f"{field} {text!r}: want PORT/PROTOCOL[,PORT/PROTOCOL...], e.g. 80/tcp,81/udp")
    return sorted(served)


def server_command(netns: str, name: str, served: Sequence[Served]) -> list[str]:
    """The command that serves `served` in `netns`, answering `name`; it prints `listening` once bound."""
    return ["ip", "netns", "exec", netns, PYTHON, "-I", "-S", "-u", "-c", SERVER, name, *map(str, served)]


def probe_from(netns: str, wanted: Sequence[tuple[str, str, int]], timeout: float) -> list[str | None]:
    """New connections from `netns`, all at once: each (ip, protocol, port) -> the name that answered, or None
    when nothing did within `timeout` seconds (refused, dropped, or another pod's name with the address)."""
    if not wanted:
        return []
    done = subprocess.run(
        ["ip", "netns", "exec", netns, PYTHON, "-I", "-S", "-c", PROBER, json.dumps(list(wanted)), f"{timeout:g}"],
        capture_output=True,
        timeout=timeout * 4 + 30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probing from {netns} failed: {done.stderr.decode().strip()[-300:]}")
    return json.loads(done.stdout)
