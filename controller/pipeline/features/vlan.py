"""VLAN segments: tagged on the uplink (a physical L2 fabric) or on fabric links between nodes."""

from __future__ import annotations

from controller.pipeline.fields import enter_network
from controller.pipeline.ir import (
    MULTICAST_BIT,
    OFPVID_PRESENT,
    Bucket,
    Flow,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    match,
)
from controller.pipeline.tables import PIPELINE
from topology.model import Network

PRIORITY = 100


def classify(network: Network, tenant_id: int, port: int, *, cookie: int, unicast_only: bool = False) -> Flow:
    """Tagged frames on a fabric port belong to the network. On a port off the flood tree only unicast
    is accepted: a broadcast arriving there has travelled a loop."""
    fields: dict = {"in_port": port, "vlan_vid": OFPVID_PRESENT | network.segment}
    if unicast_only:
        fields["eth_dst"] = (0, MULTICAST_BIT)
    return PIPELINE.verify(
        Flow(
            "classify",
            PRIORITY,
            match(**fields),
            (PopVlan(), *enter_network(network.id, tenant_id, from_remote=True)),
            goto="l2",
            cookie=cookie,
        )
    )


def to_port(network: Network, port: int) -> Bucket:
    return (PushVlan(), SetField("vlan_vid", OFPVID_PRESENT | network.segment), Output(port))
