"""The cluster network and the node gateway ports: settings and the numbers derived from them. Pure.

Every node has a gateway port, `tenet-gw0`, an OVS internal port in its host stack. The cluster network
(controller setting `cluster_network`, `tenant/name`) is routed by the hosts: its subnet
(`cluster_subnet`) overlaps no other network of any tenant. A network of another tenant with
`nat_outgoing` on reaches the outside through the same port, SNATed in OVS to its own transit address, in
a conntrack zone of its own (`snat_zone`), and the host masquerades the transit subnet (`transit_subnet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from topology.errors import ValidationError

# A node's gateway port MAC: 0e:00:<tunnel IP>; a first octet of its own, never an endpoint's or a gateway's.
NODE_GATEWAY_MAC_BASE = 0x0E_00_00_00_00_00
# Conntrack zones of egress SNAT: 0x8000 | network id, apart from the zone policy uses (the network id).
SNAT_ZONE_BASE = 0x8000
MAX_SNAT_NETWORK_ID = SNAT_ZONE_BASE - 1
NODE_PORT_PROTOCOLS = {"tcp": 6, "udp": 17}  # IANA protocol numbers


class HasId(Protocol):
    @property
    def id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The cluster network and the node gateway ports (controller settings `cluster_network`,
    `cluster_subnet`, `transit_subnet`).

    The cluster network (`tenant/name`) is routed by the nodes' host stacks through each node's gateway
    port; its subnet overlaps no other network of any tenant. A network of another tenant with
    `nat_outgoing` is SNATed in OVS to its transit address, `transit_subnet`'s address number `network id`,
    which the host then masquerades.
    """

    cluster_network: str
    cluster_subnet: IPv4Network
    transit_subnet: IPv4Network

    @property
    def cluster_tenant(self) -> str:
        return self.cluster_network.split("/", 1)[0]

    def transit_ip(self, network: HasId) -> IPv4Address:
        """A network's own SNAT address; ValueError if its id does not fit the transit subnet."""
        if network.id >= self.transit_subnet.num_addresses - 1:
            raise ValueError(f"network id {network.id} does not fit transit subnet {self.transit_subnet}")
        return self.transit_subnet.network_address + network.id


def node_gateway_mac(tunnel_ip: IPv4Address) -> int:
    """The MAC of a node's gateway port: 0e:00 and the node's tunnel IP."""
    return NODE_GATEWAY_MAC_BASE | int(tunnel_ip)


def snat_zone(network: HasId) -> int:
    """The conntrack zone a network's egress SNAT uses (16 bits; network ids below 0x8000)."""
    return SNAT_ZONE_BASE | network.id


def ct_zones(network: HasId) -> tuple[int, ...]:
    """The conntrack zones a network's state lives in: the policy tables' (its id) and, for ids that have
    one, its SNAT zone. A deleted network's zones are flushed on every switch."""
    if network.id > MAX_SNAT_NETWORK_ID:
        return (network.id,)
    return (network.id, snat_zone(network))


def parse_node_ports(path: str, value: Any) -> tuple[str, ...]:
    """A network's `node_ports`: a list of `"tcp/PORT"` or `"udp/PORT"` (port 1..65535, decimal without
    leading zeros), or `"none"`
    (the same as `[]`), returned sorted and without repeats as `("tcp/53", "udp/53")`. ValidationError
    naming `path` (and the item) otherwise."""
    if value == "none":
        return ()
    if not isinstance(value, list):
        raise ValidationError(path, f'want a list like ["tcp/53", "udp/53"], got {value!r:.60}')
    ports: set[tuple[str, int]] = set()
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        protocol, _, number = item.partition("/") if isinstance(item, str) else ("", "", "")
        if protocol not in NODE_PORT_PROTOCOLS or not number.isascii() or not number.isdigit():
            raise ValidationError(where, f"want PROTOCOL/PORT with PROTOCOL tcp or udp, like tcp/53; got {item!r:.60}")
        if len(number) > 5 or not 1 <= int(number) <= 65535:
            raise ValidationError(where, f"port {number:.12} is not in 1..65535")
        if number.startswith("0"):
            raise ValidationError(where, f"want the port without leading zeros, like {protocol}/{int(number)}")
        ports.add((protocol, int(number)))
    return tuple(f"{protocol}/{number}" for protocol, number in sorted(ports))


def node_port(text: str) -> tuple[int, int]:
    """`"tcp/53"` (as parse_node_ports returns it) → (IP protocol number, port)."""
    protocol, number = text.split("/")
    return NODE_PORT_PROTOCOLS[protocol], int(number)
