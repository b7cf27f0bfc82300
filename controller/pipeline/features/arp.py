"""ARP responder: requests for known addresses are answered by the switch, back out the asking port.

The reply is built in place: the request's sender becomes the target, the answered MAC and IP become the
sender, and it leaves through OFPP_IN_PORT. Nothing is flooded for an address the model knows.
"""

from __future__ import annotations

from controller.pipeline.fields import NETWORK
from controller.pipeline.ir import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_TYPE_ARP,
    OFPP_IN_PORT,
    Flow,
    Move,
    Output,
    SetField,
    match,
)
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, Network

PRIORITY = 100


def answer(network: Network, ip: int, mac: int, *, cookie: int) -> Flow:
    return PIPELINE.verify(
        Flow(
            "arp_responder",
            PRIORITY,
            match(**{NETWORK.register: network.id}, eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=ip),
            (
                Move("eth_src", "eth_dst"),
                SetField("eth_src", mac),
                SetField("arp_op", ARP_REPLY),
                Move("arp_sha", "arp_tha"),
                Move("arp_spa", "arp_tpa"),
                SetField("arp_sha", mac),
                SetField("arp_spa", ip),
                Output(OFPP_IN_PORT),
            ),
            cookie=cookie,
        )
    )


def endpoint_answer(endpoint: Endpoint, network: Network, *, cookie: int) -> Flow:
    return answer(network, int(endpoint.ip), endpoint.mac, cookie=cookie)


def gateway_answer(network: Network, *, cookie: int) -> Flow:
    return answer(network, int(network.gateway), network.gateway_mac, cookie=cookie)
