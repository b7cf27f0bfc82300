"""Servers and clients for the gateway tests' real packets: Python scripts run in network namespaces."""

from __future__ import annotations

import subprocess
import sys

# argv: tcp|udp PORT NAME. TCP: greets each connection with "NAME PEER-IP", then echoes; UDP answers the same.
SERVER = r"""
import socket, sys, threading
kind, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def serve(c, a):
    with c:
        c.sendall(f"{name} {a[0]}\n".encode())
        while data := c.recv(100):
            c.sendall(data)
if kind == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); print("ready", flush=True)
    while True:
        c, a = s.accept(); threading.Thread(target=serve, args=(c, a), daemon=True).start()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port)); print("ready", flush=True)
    while True:
        data, a = s.recvfrom(100); s.sendto(f"{name} {a[0]}".encode(), a)
"""
# argv: tcp|udp HOST PORT [SOURCE-PORT [HOLD-S]]: prints the greeting (TCP: and checks an echo after HOLD-S).
CLIENT = r"""
import socket, sys, time
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sport = int(sys.argv[4]) if len(sys.argv) > 4 else 0
hold = sys.argv[5] if len(sys.argv) > 5 else "0"
try:
    if kind == "tcp":
        c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.bind(("", sport))
        c.settimeout(3); c.connect((host, port)); greeting = c.recv(100).decode().strip()
        if hold == "stdin":  # a long-lived connection: echo once told to on stdin
            print("connected", flush=True); sys.stdin.readline()
        else:
            time.sleep(float(hold))
        c.sendall(b"echo"); assert c.recv(100) == b"echo"
        print(greeting)
    else:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(("", sport)); c.settimeout(3)
        c.sendto(b"x", (host, port)); print(c.recv(100).decode())
except (OSError, AssertionError) as e:
    print("failed", type(e).__name__, e)
"""


# argv: tcp PORT NAME: greets each connection with its peer's port and closes it first (the server keeps TIME_WAIT).
CLOSER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(16); print("ready", flush=True)
while True:
    c, a = s.accept(); c.sendall(f"{a[1]}\n".encode()); c.close()
"""
# argv: HOST PORT SOURCE-PORT...: one connection from each source port in turn, each read to the server's close.
CLOSED = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
for sport in map(int, sys.argv[3:]):
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.bind(("", sport)); c.settimeout(5)
    start = time.monotonic()
    try:
        c.connect((host, port)); data = c.recv(100)
        while c.recv(100):
            pass
        print(sport, "ok", round(time.monotonic() - start, 1), data.decode().strip(), flush=True)
    except OSError as e:
        print(sport, "failed", type(e).__name__, flush=True)
    c.close()
"""


class Servers:
    """Server processes in namespaces, stopped by pid."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, netns: str, kind: str, port: int, name: str, *, script: str = SERVER) -> None:
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", script, kind, str(port), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready", process.stderr

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)


def client(netns: str, *args: object, timeout: float = 20) -> str:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False).stdout.strip()


def client_popen(netns: str, *args: object) -> subprocess.Popen:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, *map(str, args)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
