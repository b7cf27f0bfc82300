"""Who reaches whom, measured with real packets, against the model's policy.

Every pod runs a small TCP server that answers with the pod's name, so a probe knows not only that it got
through but to whom: with overlapping subnets, 10.1.0.2 is a different pod in each tenant. For each ordered
pair the source pings the destination and opens a TCP connection to it. The policy: a tenant's pods reach
each other, on one network or across its networks (routed at the gateway); pods of different tenants never.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from lab.ovs import Pod

PORT = 5900
_SERVER = (
    "import socket,sys,threading\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',int(sys.argv[2])))\n"
    "s.listen(64);print('listening',flush=True)\n"
    "def serve(c):\n try:c.sendall(sys.argv[1].encode()+b'\\n')\n finally:c.close()\n"
    "while True:\n c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()\n"
)
_CLIENT = (
    "import socket,sys\n"
    "try:\n c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))\n"
    " c.settimeout(float(sys.argv[3]));print(c.recv(64).decode().strip() or '-')\nexcept OSError:print('-')\n"
)
PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Probe:
    source: str
    target: str
    expected: bool
    ping: bool
    tcp: bool
    tcp_answered_by: str | None  # the pod whose server answered, if any
    ping_ambiguous: bool = False  # the source's own tenant has a pod at the target's address

    @property
    def reached(self) -> bool:
        return self.ping and self.tcp and self.tcp_answered_by == self.target

    @property
    def isolated(self) -> bool:
        """Nothing got to the target. A ping answer from an address the source's tenant also holds proves
        nothing (its own pod answered); the TCP answer says who it was."""
        return (self.ping_ambiguous or not self.ping) and self.tcp_answered_by != self.target

    @property
    def matches(self) -> bool:
        """Reached when the policy allows it; isolated when it does not."""
        return self.reached if self.expected else self.isolated


def tenant_of(network: str) -> str:
    return network.split("/", 1)[0]


class Servers:
    """One answering TCP server per pod for the matrix's duration."""

    def __init__(self, pods: Iterable[Pod]) -> None:
        self.processes: list[subprocess.Popen] = []
        try:
            for pod in pods:
                process = pod.popen(PYTHON, "-I", "-S", "-c", _SERVER, pod.name, str(PORT))
                self.processes.append(process)
                assert process.stdout is not None
                if process.stdout.readline().strip() != "listening":
                    raise RuntimeError(f"the probe server in pod {pod.name} did not start")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)


def probe(source: Pod, target: Pod, *, expected: bool, ambiguous: bool = False, timeout: float = 1.0) -> Probe:
    """Two pings (a reply to either counts) and one TCP connection from `source` to `target`'s address."""
    pinged = subprocess.run(
        ["ip", "netns", "exec", source.netns, "ping", "-c", "2", "-i", "0.2", "-W", f"{timeout:g}", target.ip],
        capture_output=True,
        timeout=timeout + 10,
    )
    answer = source.run(PYTHON, "-I", "-S", "-c", _CLIENT, target.ip, str(PORT), f"{timeout:g}", check=False)
    answered_by = answer.strip() if answer.strip() not in ("", "-") else None
    return Probe(
        source.name, target.name, expected, pinged.returncode == 0, answered_by is not None, answered_by, ambiguous
    )


def measure(pods: dict[str, tuple[Pod, str]], *, workers: int = 8) -> list[Probe]:
    """Probe every ordered pair of `pods` (name -> (pod, "tenant/network")), several at a time."""
    servers = Servers(pod for pod, _ in pods.values())
    addresses = {(tenant_of(network), pod.ip) for pod, network in pods.values()}
    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = []
            for a, (source, source_network) in pods.items():
                for b, (target, target_network) in pods.items():
                    if a == b:
                        continue
                    same_tenant = tenant_of(source_network) == tenant_of(target_network)
                    ambiguous = not same_tenant and (tenant_of(source_network), target.ip) in addresses
                    futures.append(pool.submit(probe, source, target, expected=same_tenant, ambiguous=ambiguous))
            return [future.result() for future in futures]
    finally:
        servers.close()


def render(pods: dict[str, tuple[Pod, str]], probes: list[Probe]) -> str:
    """A table: rows send, columns receive; `ok` reached, `--` isolated; `!` marks a cell against policy."""
    by_pair = {(p.source, p.target): p for p in probes}
    names = list(pods)
    width = max(6, *(len(n) for n in names)) + 1
    header = "from \\ to".ljust(22) + "".join(name.rjust(width) for name in names)
    lines = [header]
    for source in names:
        label = f"{source} ({pods[source][1]})"
        cells = []
        for target in names:
            if source == target:
                cells.append(".".rjust(width))
                continue
            found = by_pair[(source, target)]
            cell = "ok" if found.reached else ("--" if found.isolated else "part")
            cells.append((cell if found.matches else f"!{cell}").rjust(width))
        lines.append(label.ljust(22) + "".join(cells))
    wrong = [p for p in probes if not p.matches]
    lines.append(
        f"{len(probes) - len(wrong)}/{len(probes)} pairs as the policy says (ping and TCP; ok = reached, -- = isolated)"
    )
    for p in wrong:
        what = "should reach" if p.expected else "must not reach"
        lines.append(f"  MISMATCH {p.source} {what} {p.target}: ping {p.ping}, TCP answered by {p.tcp_answered_by}")
    return "\n".join(lines)
