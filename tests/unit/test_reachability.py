"""Every ordered pair of endpoints, traced through the compiled switches of the whole cluster.

What the model says: same network, delivered; same tenant, other network, delivered through the gateway
(MACs rewritten, TTL decremented); other tenant, dropped, even where the IPs are the same. Spoofed
sources are dropped, ARP for a known address is answered by the switch alone, and a broadcast reaches
exactly the other endpoints of its network.
"""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest

from controller.pipeline.compile import Compiler
from controller.pipeline.features import qos
from controller.pipeline.ir import ARP_REPLY
from controller.pipeline.probes import Spoof, broadcast, to_endpoint
from controller.pipeline.simulate import SimNetwork
from tests.unit.topologies import SHAPES, example
from topology.model import Endpoint, Model

CASES = [("example", example)] + [
    (f"{shape}-{seed}", lambda s=shape, n=seed: SHAPES[s](n)) for shape in SHAPES for seed in (1, 2)
]


@pytest.fixture(scope="module", params=CASES, ids=[name for name, _ in CASES])
def cluster(request: pytest.FixtureRequest) -> tuple[Model, SimNetwork]:
    model = request.param[1]()
    return model, SimNetwork(model, Compiler(model).compile_all())


def pairs(model: Model) -> list[tuple[Endpoint, Endpoint]]:
    return list(itertools.permutations(model.endpoints.values(), 2))


def test_unicast_follows_the_tenancy(cluster: tuple[Model, SimNetwork]) -> None:
    model, network = cluster
    for src, dst in pairs(model):
        for proto in ("icmp", "tcp"):
            trace = network.send(src.id, to_endpoint(model, src, dst, proto=proto, dport=443))
            where = f"{src.id}({src.network}@{src.node}) -> {dst.id}({dst.network}@{dst.node}) {proto}"
            if src.tenant != dst.tenant:
                # The address may well exist in the sender's own tenant too (subnets overlap): then that
                # endpoint, and only that one, gets it. Nothing ever lands in another tenant.
                owner = [e.id for e in model.endpoints.values() if e.tenant == src.tenant and e.ip == dst.ip]
                assert trace.delivered_to in ([], owner), f"{where}: crossed tenants: {trace.delivered_to}"
                assert dst.id not in trace.delivered_to
                continue
            assert trace.delivered_to == [dst.id], f"{where}: {trace.reason}"
            packet = trace.delivered[0].packet
            assert packet.fields["ipv4_src"] == int(src.ip) and packet.fields["ipv4_dst"] == int(dst.ip)
            assert packet.fields["eth_dst"] == dst.mac and packet.vlans == ()
            if src.network == dst.network:
                assert packet.fields["eth_src"] == src.mac and packet.fields["ip_ttl"] == 64
            else:
                assert packet.fields["eth_src"] == model.networks[dst.network].gateway_mac, where
                assert packet.fields["ip_ttl"] == 63, where


def test_overlapping_addresses_stay_apart() -> None:
    """b1 and r1 share 10.1.0.10 in identical subnets: neither the MAC nor the gateway path crosses."""
    model = example()
    network = SimNetwork(model, Compiler(model).compile_all())
    b1, r1, r2 = model.endpoints["b1"], model.endpoints["r1"], model.endpoints["r2"]
    assert b1.ip == r1.ip
    assert network.send("r2", to_endpoint(model, r2, r1)).delivered_to == ["r1"]
    assert network.send("b1", to_endpoint(model, b1, r1)).delivered_to == []
    assert network.send("b1", to_endpoint(model, b1, r2)).delivered_to == []
    # Routing to red's addresses through blue's gateway lands in blue (the same addresses exist there), never in red.
    # (r1's address is b1's own, and a switch never sends a packet back where it came from.)
    for red, blue in ((r1, []), (r2, ["b2"])):
        via_gateway = to_endpoint(model, b1, red)
        via_gateway.fields["eth_dst"] = model.networks["blue/web"].gateway_mac
        assert network.send("b1", via_gateway).delivered_to == blue
    # An address no blue endpoint has is no route at all.
    nowhere = to_endpoint(model, b1, r2)
    nowhere.fields.update(eth_dst=model.networks["blue/web"].gateway_mac, ipv4_dst=int(IPv4Address("10.1.0.200")))
    trace = network.send("b1", nowhere)
    assert trace.delivered_to == [] and "l3" in trace.reason


def test_spoofed_sources_are_dropped(cluster: tuple[Model, SimNetwork]) -> None:
    model, network = cluster
    for src, dst in pairs(model):
        if src.tenant != dst.tenant:
            continue
        other_ip = IPv4Address(int(src.ip) ^ 0x80)
        for spoof in (Spoof(ip=other_ip), Spoof(mac=src.mac ^ 0x1), Spoof(ip=dst.ip, mac=dst.mac)):
            trace = network.send(src.id, to_endpoint(model, src, dst, proto="udp", spoof=spoof))
            assert trace.delivered_to == [], f"{src.id} spoofing {spoof} reached {trace.delivered_to}"
            assert "port security" in trace.reason
        arp = to_endpoint(model, src, dst, proto="arp", spoof=Spoof(ip=other_ip))
        assert network.send(src.id, arp).delivered_to == []


def test_arp_is_answered_by_the_switch(cluster: tuple[Model, SimNetwork]) -> None:
    model, network = cluster
    for src, dst in pairs(model):
        if src.network != dst.network:
            continue
        trace = network.send(src.id, to_endpoint(model, src, dst, proto="arp"))
        assert trace.delivered_to == [src.id], f"ARP {src.id} -> {dst.id} reached {trace.delivered_to}"
        reply = trace.delivered[0].packet.fields
        assert reply["arp_op"] == ARP_REPLY
        assert (reply["arp_sha"], reply["arp_spa"]) == (dst.mac, int(dst.ip))
        assert (reply["arp_tha"], reply["arp_tpa"], reply["eth_dst"]) == (src.mac, int(src.ip), src.mac)
        assert {hop.node for hop in trace.hops} == {src.node}, "the answer never leaves the sender's node"


def test_arp_for_the_gateway(cluster: tuple[Model, SimNetwork]) -> None:
    model, network = cluster
    for src in model.endpoints.values():
        net = model.networks[src.network]
        probe = to_endpoint(model, src, src, proto="arp")
        probe.fields["arp_tpa"] = int(net.gateway)
        trace = network.send(src.id, probe)
        assert trace.delivered_to == [src.id]
        assert trace.delivered[0].packet.fields["arp_sha"] == net.gateway_mac


def test_broadcast_reaches_exactly_its_network(cluster: tuple[Model, SimNetwork]) -> None:
    model, network = cluster
    for src in model.endpoints.values():
        expected = sorted(e.id for e in model.endpoints_by_network[src.network].values() if e.id != src.id)
        for proto in ("udp", "arp"):
            trace = network.send(src.id, broadcast(src, proto=proto))
            assert sorted(trace.delivered_to) == expected, f"{proto} broadcast from {src.id}"
            assert all(d.packet.vlans == () for d in trace.delivered)


def test_a_pod_cannot_send_tagged_frames() -> None:
    model = example()
    network = SimNetwork(model, Compiler(model).compile_all())
    b1, b2 = model.endpoints["b1"], model.endpoints["b2"]
    packet = to_endpoint(model, b1, b2)
    packet.vlans = (101,)
    trace = network.send("b1", packet)
    assert trace.delivered_to == [] and "classify" in trace.reason


def test_meters_count_the_metered_endpoint() -> None:
    model = example()  # gold is attached to blue/web
    network = SimNetwork(model, Compiler(model).compile_all())
    b1, b2, b4 = (model.endpoints[e] for e in ("b1", "b2", "b4"))
    sent = network.send("b1", to_endpoint(model, b1, b2)).meters  # each endpoint's own meters: b1 sends, b2 receives
    assert sent == {(b1.node, qos.egress_meter_id(b1)): 1, (b2.node, qos.ingress_meter_id(b2)): 1}
    # blue/db is not metered: from b4 only b1's ingress meter counts, to b4 only b1's egress meter
    assert network.send("b4", to_endpoint(model, b4, b1)).meters == {(b1.node, qos.ingress_meter_id(b1)): 1}
    assert network.send("b1", to_endpoint(model, b1, b4)).meters == {(b1.node, qos.egress_meter_id(b1)): 1}
