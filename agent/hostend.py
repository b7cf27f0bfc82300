"""The host end of a pod's veth, kept away from the node's own IP stack; and the pod's gratuitous ARP.

The host end is an ordinary interface of the node's kernel as well as an OVS port. On the userspace datapath
OVS reads it through an AF_PACKET socket, which sees every frame before the kernel's IP stack does, so the
stack can be shut out without OVS noticing: the settings below, written while the link is still down (so no
IPv6 link-local address, DAD or MLD ever happens on it), and there an nftables ingress chain that drops
everything (agent/nft.py). What each setting stops: Documentation/networking/ip-sysctl.rst.
"""

from __future__ import annotations

import os
import struct

from agent import nft

SYSCTLS = (
    ("ipv6", "disable_ipv6", "1"),  # no IPv6 on it at all: no link-local address, no ND, no MLD, IPv6 dropped
    ("ipv4", "arp_ignore", "8"),  # answer no ARP request on it, for any of the node's addresses
    # Strict reverse-path filtering: the link has no IPv4 address and no route points at it, so every IPv4
    # packet arriving on it fails the check and is dropped before local delivery. (Any non-zero value does,
    # on a link without an address; 1 keeps it so whatever conf/all says.) Not checked: IPv4 from 0.0.0.0
    # to a broadcast address, which only the ingress chain stops.
    ("ipv4", "rp_filter", "1"),
    ("ipv4", "forwarding", "0"),  # and the node routes nothing that arrives on it
)


class HostEndError(Exception):
    """A setting could not be made; the message names it."""


def isolate(name: str, *, ingress_drop: bool) -> None:
    """Shut the node's IP stack out of host end `name` (IPv4, IPv6, ARP and ND): the SYSCTLS and, if
    `ingress_drop` (userspace datapath only: the kernel datapath's OVS module takes frames after that hook),
    an ingress chain dropping every frame. Call it while the link is down.

    Written through /proc/sys/net of the calling thread's namespace (/proc/sys/net follows the thread that
    opens the file). A kernel without IPv6 has no ipv6 directory: nothing to disable there. Raises
    HostEndError.
    """
    for family, key, value in SYSCTLS:
        where = f"/proc/sys/net/{family}/conf/{name}/{key}"
        try:
            with open(where, "w") as setting:
                setting.write(value)
        except FileNotFoundError:
            if family == "ipv6" and not os.path.exists("/proc/sys/net/ipv6"):
                continue
            raise HostEndError(f"setting {where} = {value}: no such setting") from None
        except OSError as error:
            raise HostEndError(f"setting {where} = {value}: {error.strerror or error}") from None
    if ingress_drop:
        try:
            nft.drop_ingress(name)
        except OSError as error:
            raise HostEndError(f"host link {name}: {error} (nf_tables with netdev support is needed)") from None


def garp_frame(mac: bytes, ip: bytes) -> bytes:
    """A broadcast Ethernet frame holding an ARP reply from `mac` (6 bytes) / `ip` (4 bytes) about itself,
    target MAC = sender MAC: the gratuitous form Linux accepts (RFC 826 layout, RFC 5227 section 3)."""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip + mac + ip  # Ethernet/IPv4, op 2 (reply)
    return b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp
