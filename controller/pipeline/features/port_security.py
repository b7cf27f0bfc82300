"""A pod's port: classify it into its network, and let it send only from its own MAC and IP."""

from __future__ import annotations

from controller.pipeline.fields import enter_network
from controller.pipeline.ir import ETH_TYPE_ARP, ETH_TYPE_IP, OFPVID_NONE, Flow, match
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, Network

PRIORITY = 100


def classify_port(endpoint: Endpoint, network: Network, tenant_id: int, *, cookie: int) -> Flow:
    """Untagged frames from the pod's port belong to its network; tagged ones miss and are dropped."""
    return PIPELINE.verify(
        Flow(
            "classify",
            PRIORITY,
            match(in_port=endpoint.ofport, vlan_vid=OFPVID_NONE),
            enter_network(network.id, tenant_id, from_remote=False),
            goto="port_security",
            cookie=cookie,
        )
    )


def port_security(endpoint: Endpoint, *, cookie: int) -> tuple[Flow, ...]:
    """IPv4 from the pod's MAC and IP, ARP whose sender fields are the pod's own; anything else misses."""
    ip, mac, port = int(endpoint.ip), endpoint.mac, endpoint.ofport
    return (
        PIPELINE.verify(
            Flow(
                "port_security",
                PRIORITY,
                match(in_port=port, eth_src=mac, eth_type=ETH_TYPE_IP, ipv4_src=ip),
                goto="arp_responder",
                cookie=cookie,
            )
        ),
        PIPELINE.verify(
            Flow(
                "port_security",
                PRIORITY,
                match(in_port=port, eth_src=mac, eth_type=ETH_TYPE_ARP, arp_spa=ip, arp_sha=mac),
                goto="arp_responder",
                cookie=cookie,
            )
        ),
    )
