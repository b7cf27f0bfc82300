"""`tenet-lab matrix --ports`: new connections with real packets between the lab's pods, against the policy.

Every pod started with `--serve`, and with `up --kubernetes` every Pod the kubelets run (named NAMESPACE/NAME,
serving its containers' declared TCP and UDP ports; SCTP ones are not served), is a destination for each
protocol and port it serves; every pod with an endpoint of its own is a source.
A probe is allowed when the destination pod itself answered (lab/servers.py). What the probes should
find is what `tenetctl matrix` computes for the same pairs: the controller's model, read from the lab's
store, compiled for every node and run through the simulated switches, conntrack included
(`controller.pipeline.matrix`). Probes from one source run at once in one process in its namespace, several
sources at a time; each waits `timeout` seconds at most. A probe whose answer is not what the model says is
tried again, up to twice, with a 2 s wait before it counts as a mismatch (a first packet lost while the
underlay resolves a node's address is not a policy, nor is a new connection that happened to get the source
port of an earlier one of the same pair, still in conntrack).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller import records
from controller.main import Settings, load_gateway
from controller.pipeline import matrix
from controller.pipeline.compile import Compiler
from controller.store.open import open_store
from lab.cluster import Lab, LabPod
from lab.servers import probe_from
from topology.model import Model
from topology.netpol import EGRESS, INGRESS, selected_endpoints

RETRY_TIMEOUT_S = 2.0
RETRIES = 2  # a lost first packet, a busy machine, a source port an earlier connection of the pair used


@dataclass(frozen=True)
class PortProbe:
    """A new connection from pod `source` to pod `target` on `protocol` (tcp, udp) and `port`."""

    source: str
    target: str
    protocol: str
    port: int
    expected: bool
    allowed: bool  # the target's own server answered
    answered_by: str | None = None

    @property
    def matches(self) -> bool:
        return self.allowed == self.expected

    def json(self) -> dict[str, object]:
        """`tenetctl matrix --json`'s probe (from, to, protocol, port, allowed) plus `expected`."""
        return {
            "from": self.source,
            "to": self.target,
            "protocol": self.protocol,
            "port": self.port,
            "allowed": self.allowed,
            "expected": self.expected,
        }


Key = tuple[str, str, str, int]  # (source pod, target pod, protocol, port)


def wanted(pods: Mapping[str, LabPod], ports: Sequence[int], protocols: Sequence[str]) -> list[Key]:
    """Every ordered pair of distinct pods on each protocol and port the target serves."""
    return [
        (source, target, protocol, port)
        for source in pods
        for target, pod in pods.items()
        if target != source
        for protocol in protocols
        for port in ports
        if f"{port}/{protocol}" in pod.serve
    ]


def controller_model(lab: Lab) -> Model:
    """The controller's model, as the lab's store holds it (with the cluster network `up` gave the controller)."""
    store = open_store(f"sqlite:///{lab.dir}/tenet.db")
    try:
        default, chosen = Settings(), lab.state.controller_settings  # the cluster network's, as `up` gave them
        settings = Settings(
            cluster_network=chosen.get("cluster_network", default.cluster_network),
            cluster_subnet=chosen.get("cluster_subnet", default.cluster_subnet),
            transit_subnet=chosen.get("transit_subnet", default.transit_subnet),
        )
        return records.restore(store.list(records.PREFIX), gateway=load_gateway(settings))
    finally:
        store.close()


def isolation(lab: Lab, pods: Mapping[str, LabPod]) -> dict[str, frozenset[str]]:
    """The directions ("ingress", "egress") in which some NetworkPolicy of the controller's model isolates each
    of `pods` (a pod no policy selects, or one without an endpoint: none), by the policies' own selection
    (topology.netpol), as the compiler isolates them."""
    model = controller_model(lab)
    directions: dict[str, set[str]] = {}
    for policy in model.policies.values():
        isolates = {INGRESS} if policy.isolates_ingress else set()
        isolates |= {EGRESS} if policy.isolates_egress else set()
        for endpoint in selected_endpoints(model, policy):
            directions.setdefault(endpoint, set()).update(isolates)
    return {name: frozenset(directions.get(pod.endpoint or "", ())) for name, pod in pods.items()}


def expected(lab: Lab, pods: Mapping[str, LabPod], keys: Sequence[Key]) -> dict[Key, bool]:
    """What the controller's compiled flows allow for each probe, as `tenetctl matrix` computes it from the
    model in the lab's store. Raises RuntimeError when a pod has no endpoint there."""
    model = controller_model(lab)
    for name, pod in pods.items():
        if pod.endpoint not in model.endpoints:
            raise RuntimeError(f"pod {name}: the controller has no endpoint {pod.endpoint}")
    states = Compiler(model).compile_all()
    probes = [matrix.Probe(pods[s].endpoint or "", pods[d].endpoint or "", proto, port) for s, d, proto, port in keys]
    return {key: allowed for key, (_, allowed) in zip(keys, matrix.run(model, states, probes), strict=True)}


def probe_all(
    pods: Mapping[str, LabPod], keys: Sequence[Key], *, timeout: float, workers: int = 4
) -> dict[Key, str | None]:
    """Send every probe of `keys`: -> the name of the pod that answered, or None."""
    by_source: dict[str, list[Key]] = {}
    for key in keys:
        by_source.setdefault(key[0], []).append(key)

    def send(source: str) -> list[tuple[Key, str | None]]:
        mine = by_source[source]
        targets = [(pods[k[1]].ip or "", k[2], k[3]) for k in mine]
        return list(zip(mine, probe_from(pods[source].netns, targets, timeout), strict=True))

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return {key: name for found in pool.map(send, by_source) for key, name in found}


def measure(
    lab: Lab,
    pods: Mapping[str, LabPod],
    ports: Sequence[int],
    protocols: Sequence[str],
    *,
    timeout: float = 0.5,
    verdicts: Mapping[Key, bool] | None = None,
    retry: bool = True,
) -> list[PortProbe]:
    """Probe every pair of `pods` (name -> pod) on `ports` and `protocols` against `verdicts` (default: the
        controller's compiled view, `expected`). Mismatches are tried again, up to twice with a 2 s wait, when
    `retry`."""
    keys = wanted(pods, ports, protocols)
    truth = dict(verdicts) if verdicts is not None else expected(lab, pods, keys)
    answers = probe_all(pods, keys, timeout=timeout)
    for _ in range(RETRIES if retry else 0):
        again = [k for k in keys if (answers[k] == k[1]) != truth[k]]
        if not again:
            break
        answers.update(probe_all(pods, again, timeout=max(timeout, RETRY_TIMEOUT_S)))
    return [
        PortProbe(*key, expected=truth[key], allowed=answers[key] == key[1], answered_by=answers[key]) for key in keys
    ]


def render(names: Sequence[str], probes: Sequence[PortProbe], ports: Sequence[int], protocols: Sequence[str]) -> str:
    """One grid per protocol and port: rows send, columns receive; `.` allowed, `X` denied, `!` against the
    model, `-` not probed (the pod itself, or a port the column's pod does not serve); then a count and each
    mismatch."""
    by_key = {(p.source, p.target, p.protocol, p.port): p for p in probes}
    width = max(len(n) for n in names)
    blocks = []
    for protocol in protocols:
        for port in ports:
            lines = [f"{protocol}/{port}", " " * width + " " + " ".join(str(n % 10) for n in range(len(names)))]
            for source in names:
                cells = []
                for target in names:
                    found = by_key.get((source, target, protocol, port))
                    cell = "-" if found is None else "." if found.allowed else "X"
                    cells.append(cell if found is None or found.matches else "!")
                lines.append(f"{source:<{width}} " + " ".join(cells))
            blocks.append("\n".join(lines))
    wrong = [p for p in probes if not p.matches]
    tail = ["columns: " + " ".join(f"{n % 10}={name}" for n, name in enumerate(names))]
    tail.append(
        f"{len(probes) - len(wrong)}/{len(probes)} probes as the policy says (. allowed, X denied, ! not as the "
        "policy says, - not probed: the pod itself, or a port and protocol the column's pod does not serve)"
    )
    for p in wrong:
        what = "should reach" if p.expected else "must not reach"
        answer = f"answered by {p.answered_by}" if p.answered_by else "no answer"
        tail.append(f"  MISMATCH {p.source} {what} {p.target} on {p.protocol}/{p.port} ({answer})")
    return "\n\n".join(blocks) + "\n" + "\n".join(tail)
