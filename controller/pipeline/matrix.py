"""A reachability matrix through the compiled, simulated pipeline: does a new connection get through?

Each probe is a new connection (a source port no earlier probe used) from one endpoint to another on a
protocol and destination port; it is allowed when the first packet reaches the destination and the
destination's answer comes back to the source, through every switch in between (conntrack included), as
the upstream NetworkPolicy e2e suite's probes connect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.pipeline.probes import to_endpoint
from controller.pipeline.simulate import Packet, SimNetwork
from controller.pipeline.state import NodeState
from topology.model import Endpoint, Model

FIRST_SOURCE_PORT, LAST_SOURCE_PORT = 1024, 65535


@dataclass(frozen=True)
class Probe:
    source: str
    destination: str
    protocol: str  # tcp, udp or sctp
    port: int

    def json(self, allowed: bool) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.destination,
            "protocol": self.protocol,
            "port": self.port,
            "allowed": allowed,
        }


def packet(model: Model, src: Endpoint, dst: Endpoint, protocol: str, sport: int, dport: int) -> Packet:
    """A packet of `protocol` from src:sport to dst:dport, as src's IP stack addresses it."""
    built = to_endpoint(model, src, dst, proto=protocol)
    built.fields[f"{protocol}_src"], built.fields[f"{protocol}_dst"] = sport, dport
    return built


def probes(model: Model, ports: Iterable[int], protocols: Iterable[str]) -> list[Probe]:
    """Every ordered pair of distinct endpoints, on every protocol and port, sorted."""
    ids = sorted(model.endpoints)
    return [Probe(s, d, proto, port) for s in ids for d in ids if s != d for proto in protocols for port in ports]


def run(model: Model, states: Mapping[str, NodeState], wanted: Iterable[Probe]) -> list[tuple[Probe, bool]]:
    """Each probe and whether its connection gets through (request delivered, answer delivered back)."""
    network, sport, results = SimNetwork(model, states), FIRST_SOURCE_PORT, []
    for probe in wanted:
        if sport > LAST_SOURCE_PORT:  # every source port used once: start again with empty connection tables
            network, sport = SimNetwork(model, states), FIRST_SOURCE_PORT
        src, dst = model.endpoints[probe.source], model.endpoints[probe.destination]
        there = network.send(src.id, packet(model, src, dst, probe.protocol, sport, probe.port))
        allowed = dst.id in there.delivered_to
        if allowed:
            back = network.send(dst.id, packet(model, dst, src, probe.protocol, probe.port, sport))
            allowed = src.id in back.delivered_to
        results.append((probe, allowed))
        sport += 1
    return results
