"""L2 forwarding within a network: known MACs to their port or node, broadcast to the network's group.

Each network has two flood groups per node. Frames a local pod sends go to `flood all` (the local ports
of the network and every other node that hosts it); frames that arrived from another node go to `flood
local`, so a node never sends a flood back into the overlay (split horizon). OpenFlow never outputs a
packet to the port it came in on, so a group may list the sender's own port.
"""

from __future__ import annotations

from controller.pipeline.fields import FLAG_FROM_REMOTE, FLAGS, NETWORK, OUT_PORT
from controller.pipeline.ir import MULTICAST_BIT, Bucket, Flow, Group, Output, SetField, ToGroup, match
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, Network

UNICAST_PRIORITY = 100
# A node's own endpoints: above UNICAST_PRIORITY, so a VXLAN network's view of every endpoint as remote (one
# section shared by all its nodes, controller/pipeline/sections.py) may hold them too and never wins.
LOCAL_PRIORITY = 101
FLOOD_PRIORITY = 50


def flood_group_ids(network: Network) -> tuple[int, int]:
    """(flood all, flood local) group ids of a network."""
    return network.id << 1, (network.id << 1) | 1


def local(endpoint: Endpoint, network: Network, *, cookie: int) -> Flow:
    """Unicast to an endpoint of this node: its port, through the ingress policy stage (LOCAL_PRIORITY)."""
    return PIPELINE.verify(
        Flow(
            "l2",
            LOCAL_PRIORITY,
            match(**{NETWORK.register: network.id}, eth_dst=endpoint.mac),
            (SetField(OUT_PORT.register, endpoint.ofport),),
            goto="ingress_policy",
            cookie=cookie,
        )
    )


def remote(endpoint: Endpoint, network: Network, bucket: Bucket, *, cookie: int) -> Flow:
    """Unicast to an endpoint on another node; `bucket` is the encapsulation's way there."""
    return PIPELINE.verify(
        Flow(
            "l2",
            UNICAST_PRIORITY,
            match(**{NETWORK.register: network.id}, eth_dst=endpoint.mac),
            bucket,
            cookie=cookie,
        )
    )


def flood(
    network: Network, local_ports: list[int], everywhere: list[Bucket], onward: list[Bucket], *, cookie: int
) -> tuple[tuple[Flow, ...], tuple[Group, ...]]:
    """Flood flows and groups: `everywhere` reaches the other nodes, `onward` is what a frame from
    another node may still be sent to (nothing for VXLAN; the other tree links for a VLAN fabric)."""
    all_id, local_id = flood_group_ids(network)
    ports = [(Output(p),) for p in sorted(local_ports)]
    groups = (Group(all_id, (*ports, *everywhere)), Group(local_id, (*ports, *onward)))
    mcast = (MULTICAST_BIT, MULTICAST_BIT)
    net = {NETWORK.register: network.id}
    flows = (
        PIPELINE.verify(
            Flow(
                "l2",
                FLOOD_PRIORITY,
                match(**net, **{FLAGS.register: (0, FLAG_FROM_REMOTE)}, eth_dst=mcast),
                (ToGroup(all_id),),
                cookie=cookie,
            )
        ),
        PIPELINE.verify(
            Flow(
                "l2",
                FLOOD_PRIORITY,
                match(**net, **{FLAGS.register: (FLAG_FROM_REMOTE, FLAG_FROM_REMOTE)}, eth_dst=mcast),
                (ToGroup(local_id),),
                cookie=cookie,
            )
        ),
    )
    return flows, groups
