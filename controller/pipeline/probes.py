"""Packets an endpoint would send, for traces: built the way the pod's own IP stack would build them.

A destination inside the sender's subnet is addressed to its MAC directly; anything else goes to the
sender's gateway MAC. Spoofing replaces the source IP or MAC, to check that port security drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from controller.pipeline.ir import ARP_REQUEST, BROADCAST_MAC, ETH_TYPE_ARP, ETH_TYPE_IP, IP_PROTO
from controller.pipeline.simulate import Packet
from topology.model import Endpoint, Model

PROTOCOLS = ("icmp", "tcp", "udp", "arp")


@dataclass(frozen=True)
class Spoof:
    ip: IPv4Address | None = None
    mac: int | None = None


def to_endpoint(
    model: Model, src: Endpoint, dst: Endpoint, *, proto: str = "icmp", dport: int | None = None, spoof: Spoof = Spoof()
) -> Packet:
    src_ip = int(spoof.ip if spoof.ip is not None else src.ip)
    src_mac = spoof.mac if spoof.mac is not None else src.mac
    if proto == "arp":
        return Packet(
            {
                "eth_src": src_mac,
                "eth_dst": BROADCAST_MAC,
                "eth_type": ETH_TYPE_ARP,
                "arp_op": ARP_REQUEST,
                "arp_spa": src_ip,
                "arp_sha": src_mac,
                "arp_tpa": int(dst.ip),
                "arp_tha": 0,
            }
        )
    network = model.networks[src.network]
    eth_dst = dst.mac if dst.ip in network.subnet else network.gateway_mac
    fields = {
        "eth_src": src_mac,
        "eth_dst": eth_dst,
        "eth_type": ETH_TYPE_IP,
        "ipv4_src": src_ip,
        "ipv4_dst": int(dst.ip),
        "ip_proto": IP_PROTO[proto],
        "ip_ttl": 64,
    }
    if proto in ("tcp", "udp"):
        fields[f"{proto}_dst"] = dport if dport is not None else 80
    return Packet(fields)


def broadcast(src: Endpoint, *, proto: str = "udp") -> Packet:
    """A broadcast from an endpoint: UDP to 255.255.255.255, or an ARP request for an unknown address."""
    if proto == "arp":
        return Packet(
            {
                "eth_src": src.mac,
                "eth_dst": BROADCAST_MAC,
                "eth_type": ETH_TYPE_ARP,
                "arp_op": ARP_REQUEST,
                "arp_spa": int(src.ip),
                "arp_sha": src.mac,
                "arp_tpa": int(IPv4Address("0.0.0.1")),
                "arp_tha": 0,
            }
        )
    return Packet(
        {
            "eth_src": src.mac,
            "eth_dst": BROADCAST_MAC,
            "eth_type": ETH_TYPE_IP,
            "ipv4_src": int(src.ip),
            "ipv4_dst": 0xFFFFFFFF,
            "ip_proto": IP_PROTO["udp"],
            "udp_dst": 67,
            "ip_ttl": 64,
        }
    )
