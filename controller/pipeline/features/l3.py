"""Routing between networks of one tenant, distributed: the sending node routes.

Traffic a pod sends to its gateway's MAC goes to l3_route, whose host routes match on the tenant register
and the destination IP. The tenant register is set by classify and never rewritten, so a route can only
lead to a network of the sender's own tenant, even where another tenant uses the very same subnet.
"""

from __future__ import annotations

from controller.pipeline.fields import NETWORK, TENANT
from controller.pipeline.ir import ETH_TYPE_IP, DecTtl, Flow, SetField, match
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, Network

PRIORITY = 100


def to_gateway(network: Network, *, cookie: int) -> Flow:
    return PIPELINE.verify(
        Flow(
            "l3_gateway",
            PRIORITY,
            match(**{NETWORK.register: network.id}, eth_dst=network.gateway_mac, eth_type=ETH_TYPE_IP),
            goto="l3_route",
            cookie=cookie,
        )
    )


def host_route(endpoint: Endpoint, network: Network, tenant_id: int, *, cookie: int) -> Flow:
    return PIPELINE.verify(
        Flow(
            "l3_route",
            PRIORITY,
            match(**{TENANT.register: tenant_id}, eth_type=ETH_TYPE_IP, ipv4_dst=int(endpoint.ip)),
            (
                SetField("eth_src", network.gateway_mac),
                SetField("eth_dst", endpoint.mac),
                SetField(NETWORK.register, network.id),
                DecTtl(),
            ),
            goto="l2",
            cookie=cookie,
        )
    )
