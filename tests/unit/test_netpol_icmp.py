"""ICMP through NetworkPolicy and the simulated conntrack: an egress-isolated pod answers a ping, and its
own echo request, whatever its identifier, is a new connection its policy denies."""

from __future__ import annotations

from controller.pipeline.ir import ETH_TYPE_IP
from controller.pipeline.simulate import Packet
from tests.unit.test_gateway_netpol import isolated_model, network_of


def echo(src: int, dst: int, eth_src: int, eth_dst: int, icmp_type: int, icmp_id: int) -> Packet:
    fields = {"eth_type": ETH_TYPE_IP, "ipv4_src": src, "ipv4_dst": dst, "ip_proto": 1, "ip_ttl": 64}
    return Packet(
        fields | {"icmp_type": icmp_type, "icmp_code": 0, "icmp_id": icmp_id, "eth_src": eth_src, "eth_dst": eth_dst}
    )


def test_an_egress_isolated_pod_answers_a_ping_and_sends_no_echo_request() -> None:
    model = isolated_model("Egress")
    sim = network_of(model)
    p1, q1 = model.endpoints["p1"], model.endpoints["q1"]  # both on n1; q1 egress-isolated, p1 in no namespace
    a, b = int(p1.ip), int(q1.ip)
    assert sim.send("p1", echo(a, b, p1.mac, q1.mac, 8, 7)).delivered_to == ["q1"]
    assert sim.send("q1", echo(b, a, q1.mac, p1.mac, 0, 7)).delivered_to == ["p1"]  # the reply: +est
    assert sim.send("q1", echo(b, a, q1.mac, p1.mac, 8, 7)).delivered_to == []  # a request: new, denied
    assert sim.send("q1", echo(b, a, q1.mac, p1.mac, 8, 8)).delivered_to == []
    assert sim.send("q1", echo(b, a, q1.mac, p1.mac, 0, 9)).delivered_to == []  # a reply to nothing
