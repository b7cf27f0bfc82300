"""MTU rules: every path a tenant's packet can take fits, so no packet is ever dropped silently for its size.

A tenant's networks are all routed to each other through the tenant's gateway, and routing happens in
OpenFlow on the sender's node, which cannot send an ICMP "fragmentation needed" (RFC 792, RFC 1191)
without a controller in the data path. So Tenet gives every network of a tenant one MTU: a packet a pod
may send (at most its own interface MTU) fits every network it can be routed to, and a bigger one is
refused by the sender's own kernel at once ("message too long"), or fragmented there (`ping -M dont`).
This keeps the controller out of the data path and leaves no packet-in path a tenant could flood, at the
cost of a VLAN network giving up the 50 bytes VXLAN needs when its tenant has a VXLAN network too.

The limits come from the nodes, each reporting its underlay MTU (the interface its tunnel IP is on) and
its uplink's MTU when it registers:

- a node reports MTUs of `MIN_MTU`..`MAX_NODE_MTU` bytes (576..65535, IPv4's smallest and largest datagram);
- a VXLAN network's MTU is at most the smallest underlay MTU of any node minus `VXLAN_OVERHEAD` (50 bytes:
  outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8; RFC 7348);
- a VLAN network's MTU is at most the smallest uplink MTU of any node (the 802.1Q tag does not count
  against the MTU);
- and no network's MTU is above the jumbo-frame ceiling `MAX_NETWORK_MTU` (9000 bytes; VXLAN 8950);
- a network's default MTU is its tenant's MTU when the tenant has networks, else the largest MTU both a
  VXLAN and a VLAN network may have (the smallest underlay MTU minus 50, unless an uplink is smaller), for
  VLAN and VXLAN alike, so the tenant can add networks of either kind later;
- a node whose MTUs are too small for a network that exists is refused when it registers (409, naming
  `node.underlay_mtu` or `node.uplink_mtu` and the network), never accepted into a black hole.

Until a node registers, the underlay is taken to be `DEFAULT_UNDERLAY_MTU` (1500 bytes). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from topology.errors import ValidationError

VXLAN_OVERHEAD = 50  # outer Ethernet + IPv4 + UDP + VXLAN headers, bytes
DEFAULT_UNDERLAY_MTU = 1500  # bytes, until a node says otherwise
MIN_MTU = 576  # bytes: the smallest datagram every IPv4 host must accept (RFC 791)
MAX_NODE_MTU = 65535  # bytes: the largest IPv4 datagram (RFC 791 total length), so the most a node may report
MAX_NETWORK_MTU = 9000  # bytes: the jumbo-frame ceiling of a network (VXLAN: less VXLAN_OVERHEAD, 8950)


class HasMtu(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def underlay_mtu(self) -> int: ...
    @property
    def uplink_mtu(self) -> int | None: ...


class NetworkMtu(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def encap(self) -> object: ...  # topology.model.Encap; its value is "vlan" or "vxlan"
    @property
    def mtu(self) -> int: ...


def limits(nodes: Iterable[HasMtu]) -> tuple[int, int]:
    """(largest VXLAN network MTU, largest VLAN network MTU) the nodes allow, in bytes.

    A node without an uplink MTU (no uplink, or an old agent) counts with its underlay MTU for VLAN.
    """
    nodes = list(nodes)
    underlay, uplink = _smallest(nodes)
    return min(underlay, MAX_NETWORK_MTU) - VXLAN_OVERHEAD, min(uplink, MAX_NETWORK_MTU)


def _smallest(nodes: Iterable[HasMtu]) -> tuple[int, int]:
    """(smallest underlay MTU, smallest uplink MTU) of the nodes, in bytes."""
    nodes = list(nodes)
    underlay = min((n.underlay_mtu for n in nodes), default=DEFAULT_UNDERLAY_MTU)
    return underlay, min((n.uplink_mtu or n.underlay_mtu for n in nodes), default=DEFAULT_UNDERLAY_MTU)


def default_mtu(nodes: Iterable[HasMtu], tenant_networks: Iterable[NetworkMtu]) -> int:
    """The MTU (bytes) of a new network given none: its tenant's, else the most both encaps may have."""
    for network in tenant_networks:
        return network.mtu
    return min(limits(nodes))


def check_network(
    path: str, encap: str, mtu: int, *, nodes: Iterable[HasMtu], tenant_networks: Iterable[NetworkMtu]
) -> None:
    """Refuse a network MTU (bytes) that some node cannot carry or that differs from its tenant's MTU.

    `encap` is "vlan" or "vxlan". Raises `ValidationError` at `path` (e.g. "network.mtu"); a mismatch with
    the tenant is a conflict (409).
    """
    nodes = list(nodes)
    vxlan_max, vlan_max = limits(nodes)
    high = vxlan_max if encap == "vxlan" else vlan_max
    tenant_networks = list(tenant_networks)
    first = tenant_networks[0] if tenant_networks else None
    if first is not None and first.mtu == mtu and not MIN_MTU <= mtu <= high:  # the tenant's MTU, maybe not typed
        raise ValidationError(
            path,
            f"the networks of a tenant share one MTU, {mtu}, set by its first network {first.key!r}; a {encap}"
            f" network carries at most {high} (the smallest node "
            + ("underlay MTU less 50 bytes of VXLAN)" if encap == "vxlan" else "uplink MTU)"),
            conflict=True,
        )
    if not MIN_MTU <= mtu <= high:
        underlay, uplink = _smallest(nodes)
        if (underlay if encap == "vxlan" else uplink) > MAX_NETWORK_MTU:
            vxlan = f" less {VXLAN_OVERHEAD} bytes of VXLAN" if encap == "vxlan" else ""
            why = f"the jumbo-frame ceiling of {MAX_NETWORK_MTU} bytes{vxlan}"
        elif encap == "vxlan":
            why = f"the smallest node underlay MTU is {high + VXLAN_OVERHEAD}, less {VXLAN_OVERHEAD} bytes of VXLAN"
        else:
            why = "the smallest node uplink MTU"
        raise ValidationError(path, f"MTU {mtu} is outside {MIN_MTU}..{high} ({why})")
    for other in tenant_networks:
        if other.mtu != mtu:
            raise ValidationError(
                path,
                f"MTU {mtu} differs from {other.mtu}, the MTU of network {other.key!r}: the networks of a tenant "
                "are routed to each other and share one MTU",
                conflict=True,
            )


def check_node(path: str, underlay_mtu: int, uplink_mtu: int | None, networks: Iterable[NetworkMtu]) -> None:
    """Refuse a node (MTUs in bytes) that cannot carry a network that exists. Raises `ValidationError`:
    the field (`path`.underlay_mtu or `path`.uplink_mtu) outside its range is 400, too small is 409."""
    for field, value in (("underlay_mtu", underlay_mtu), ("uplink_mtu", uplink_mtu)):
        if value is not None and not MIN_MTU <= value <= MAX_NODE_MTU:
            raise ValidationError(f"{path}.{field}", f"MTU {value} is outside {MIN_MTU}..{MAX_NODE_MTU}")
    for network in sorted(networks, key=lambda n: -n.mtu):
        vxlan = getattr(network.encap, "value", network.encap) == "vxlan"
        field, have = ("underlay_mtu", underlay_mtu) if vxlan or uplink_mtu is None else ("uplink_mtu", uplink_mtu)
        need = network.mtu + (VXLAN_OVERHEAD if vxlan else 0)
        if have < need:
            raise ValidationError(
                f"{path}.{field}",
                f"MTU {have} is too small for network {network.key!r} (MTU {network.mtu}"
                f"{f' over VXLAN needs {need}' if vxlan else ''})",
                conflict=True,
            )
