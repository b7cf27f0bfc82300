"""VXLAN segments: one flow-based tunnel port per node; the VNI and the remote node are set per flow."""

from __future__ import annotations

from ipaddress import IPv4Address

from controller.pipeline.fields import enter_network
from controller.pipeline.ir import Bucket, Flow, Output, SetField, match
from controller.pipeline.tables import PIPELINE
from topology.model import TUNNEL_OFPORT, Network

PRIORITY = 100


def classify(network: Network, tenant_id: int, *, cookie: int) -> Flow:
    return PIPELINE.verify(
        Flow(
            "classify",
            PRIORITY,
            match(in_port=TUNNEL_OFPORT, tunnel_id=network.segment),
            enter_network(network.id, tenant_id, from_remote=True),
            goto="l2",
            cookie=cookie,
        )
    )


def to_node(network: Network, tunnel_ip: IPv4Address) -> Bucket:
    return (SetField("tunnel_id", network.segment), SetField("tun_ipv4_dst", int(tunnel_ip)), Output(TUNNEL_OFPORT))
