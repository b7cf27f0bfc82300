"""The MTUs a node reports when it registers: its underlay's and its uplink's, read from the kernel.

The underlay interface is the one holding the tunnel IP (on the userspace datapath, br-phy's internal
port; on the kernel datapath, the underlay NIC). The controller keeps both per node and refuses network
MTUs they cannot carry (`topology.mtu`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from pyroute2 import IPRoute

log = logging.getLogger(__name__)


def interface_mtus(tunnel_ip: ipaddress.IPv4Address, uplink: str | None) -> tuple[int | None, int | None]:
    """(MTU of the interface holding `tunnel_ip`, MTU of `uplink`) in bytes, in this network namespace.

    Either is None when the interface is not there (a tunnel IP not configured yet, an uplink that is a
    pure OVS port); the controller then assumes 1500 bytes for the underlay and the underlay's MTU for the
    uplink, and this logs a warning.
    """
    with IPRoute() as ipr:
        underlay = None
        for address in ipr.get_addr(family=socket.AF_INET):
            if address.get("IFA_ADDRESS") == str(tunnel_ip) or address.get("IFA_LOCAL") == str(tunnel_ip):
                underlay = _mtu(ipr, address["index"])
                break
        uplink_mtu = None
        if uplink:
            indexes = ipr.link_lookup(ifname=uplink)
            uplink_mtu = _mtu(ipr, indexes[0]) if indexes else None
    if underlay is None:
        log.warning("no interface holds tunnel IP %s: the controller assumes an underlay MTU of 1500", tunnel_ip)
    if uplink and uplink_mtu is None:
        log.warning("uplink %s is no kernel interface here: its MTU counts as the underlay's", uplink)
    return underlay, uplink_mtu


def _mtu(ipr: IPRoute, index: int) -> int | None:
    links = ipr.get_links(index)
    return int(links[0].get("IFLA_MTU")) if links and links[0].get("IFLA_MTU") else None
