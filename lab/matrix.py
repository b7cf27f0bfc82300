"""Who reaches whom, measured with real packets, against the model's policy.

Every pod runs a small TCP server that answers with the pod's name, so a probe knows not only that it got
through but to whom: with overlapping subnets, 10.1.0.2 is a different pod in each tenant. For each ordered
pair the source pings the destination and opens a TCP connection to it. The policy: a tenant's pods reach
each other, on one network or across its networks (routed at the gateway); pods of different tenants never.

NetworkPolicy is not checked here. The probes are a ping and a TCP connection to a port of the matrix's own
(5900), and the expectation `tenet-lab matrix --ports` uses (the controller's compiled model through the
simulated switches, lab/ports.py `expected`) answers each probe with another probe sent back the other way:
sound for TCP and UDP, whose answer is the established direction of the same connection, not for ping, whose
reply conntrack tracks by its ICMP type (an echo request sent back is a new connection, which the source's
ingress policy may deny while the real echo reply passes). So a pair whose sender a NetworkPolicy isolates
for egress, or whose receiver it isolates for ingress, is left to the policy: measured, shown, and not
judged (a policy cannot open what the tenants' isolation closes, so pairs across tenants are judged always).
"""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

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
    by_policy: bool = False  # a NetworkPolicy isolates the source (egress) or the target (ingress): not judged

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
        """Reached when the policy allows it; isolated when it does not; a pair NetworkPolicy decides, always."""
        if self.by_policy:
            return True
        return self.reached if self.expected else self.isolated

    def answers(self) -> str:
        """What the probe found, in words: `ping answered, TCP answered by b2`, `ping no answer, TCP no answer`."""
        ping = "answered" if self.ping else "no answer"
        if self.ping and self.ping_ambiguous:
            ping += " (the source's tenant has a pod at that address too)"
        tcp = f"answered by {self.tcp_answered_by}" if self.tcp_answered_by else "no answer"
        return f"ping {ping}, TCP {tcp}"


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


def measure(
    pods: dict[str, tuple[Pod, str]], *, workers: int = 8, isolation: Mapping[str, Collection[str]] | None = None
) -> list[Probe]:
    """Probe every ordered pair of `pods` (name -> (pod, "tenant/network")), several at a time. `isolation`:
    the directions ("ingress", "egress") in which a NetworkPolicy isolates each pod (lab/ports.py
    `isolation`); a pair of one tenant whose source is isolated for egress or target for ingress is left to
    the policy (`by_policy`)."""
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
            probes = [future.result() for future in futures]
    finally:
        servers.close()
    return left_to_policy(probes, isolation or {})


def left_to_policy(probes: Iterable[Probe], isolation: Mapping[str, Collection[str]]) -> list[Probe]:
    """`probes`, those between pods of one tenant whose source `isolation` says a NetworkPolicy isolates for
    egress, or whose target for ingress, marked `by_policy` (not judged here). Pairs across tenants stay
    judged: no policy opens what the tenants' isolation closes."""
    return [
        replace(p, by_policy=True)
        if p.expected and ("egress" in isolation.get(p.source, ()) or "ingress" in isolation.get(p.target, ()))
        else p
        for p in probes
    ]


def render(pods: dict[str, tuple[Pod, str]], probes: list[Probe]) -> str:
    """A table: rows send, columns receive; `ok` reached, `--` isolated; `!` marks a cell against the policy,
    `~` a pair a NetworkPolicy decides (not judged)."""
    by_pair = {(p.source, p.target): p for p in probes}
    names = list(pods)
    width = max(6, *(len(n) for n in names)) + 1
    labels = {source: f"{source} ({pods[source][1]})" for source in names}
    label_width = max(len("from \\ to"), *(len(label) for label in labels.values())) + 2
    header = "from \\ to".ljust(label_width) + "".join(name.rjust(width) for name in names)
    lines = [header]
    for source in names:
        cells = []
        for target in names:
            if source == target:
                cells.append(".".rjust(width))
                continue
            found = by_pair[(source, target)]
            cell = "ok" if found.reached else ("--" if found.isolated else "part")
            mark = "~" if found.by_policy else ("" if found.matches else "!")
            cells.append(f"{mark}{cell}".rjust(width))
        lines.append(labels[source].ljust(label_width) + "".join(cells))
    judged = [p for p in probes if not p.by_policy]
    wrong = [p for p in judged if not p.matches]
    lines.append(
        f"{len(judged) - len(wrong)}/{len(judged)} pairs as the policy says (ping and TCP; ok = reached, "
        "-- = isolated, part = one of the two, ! = against the policy)"
    )
    left = len(probes) - len(judged)
    if left:
        lines.append(
            f"{left} pair(s) marked ~ left to NetworkPolicy (it isolates the sender for egress or the receiver for "
            "ingress):\n  not checked here, where ping and TCP are checked against the tenants' isolation only; "
            "`tenet-lab matrix --ports P` checks NetworkPolicy"
        )
    for p in wrong:
        what = "should reach" if p.expected else "must not reach"
        lines.append(f"  MISMATCH {p.source} {what} {p.target}: {p.answers()}")
    return "\n".join(lines)
