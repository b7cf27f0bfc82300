"""Cookies mark ownership: round (8 bits) | feature (8 bits) | object id (48 bits).

The compiler sets feature | object id; the round is added by whoever sends the flow, so a restarted
controller can install a new round and then delete the previous one with one masked flow-mod.
"""

from __future__ import annotations

from enum import IntEnum

ROUND_SHIFT = 56
FEATURE_SHIFT = 48
OBJECT_MASK = (1 << FEATURE_SHIFT) - 1
ROUND_MASK = 0xFF << ROUND_SHIFT
FEATURE_MASK = 0xFF << FEATURE_SHIFT
OWNED_MASK = FEATURE_MASK  # a Tenet flow always has a non-zero feature


class Feature(IntEnum):
    PIPELINE = 1  # table-miss flows
    PORT = 2  # one local endpoint: classify, port security, QoS
    SEGMENT = 3  # one network's classification of tunnel/VLAN traffic and its flooding, per node
    ARP = 4  # one network's ARP responder
    GATEWAY = 5  # one network's gateway: ARP for it, traffic to its MAC goes to routing
    ROUTES = 6  # host routes to one network's endpoints, on every node of its tenant
    L2 = 7  # one network's unicast forwarding: a VXLAN network's to every endpoint as remote; a VLAN one's per node
    METER = 8  # one endpoint's QoS meters (by endpoint num)
    FABRIC = 9  # a node's transit forwarding on a VLAN fabric with links
    NODE_GATEWAY = 10  # a node's gateway port: the cluster network's way to the host, egress SNAT (object 0)
    NETPOL = 11  # a node's NetworkPolicy stage: conntrack, isolation and the rules' shared clause flows
    NETPOL_RULE = 12  # one NetworkPolicy rule's allow flows (by policy id, direction and index): its counters
    L2_LOCAL = 13  # one VXLAN network's unicast forwarding to a node's own endpoints of it (above L2's), per node
    NETPOL_LOCAL = 20  # one local endpoint's NetworkPolicy isolation and clause flows (by endpoint num)
    NETPOL_PEER = 21  # the NetworkPolicy clause flows of one peer address or prefix (address << 6 | length)


def cookie(feature: Feature, object_id: int) -> int:
    return (int(feature) << FEATURE_SHIFT) | (object_id & OBJECT_MASK)


def with_round(value: int, round_: int) -> int:
    return ((round_ & 0xFF) << ROUND_SHIFT) | (value & ~ROUND_MASK)


def split(value: int) -> tuple[int, Feature | None, int]:
    """(round, feature, object id) of a cookie; feature None when it is not one of ours."""
    feature = (value >> FEATURE_SHIFT) & 0xFF
    try:
        known = Feature(feature)
    except ValueError:
        known = None
    return value >> ROUND_SHIFT, known, value & OBJECT_MASK
