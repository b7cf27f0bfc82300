"""Address management for one network: deterministic, never twice, lowest free address first.

The pool hands out host addresses of the subnet in ascending order, skipping the network address, the
broadcast address, the gateway and anything claimed explicitly. A released address is handed out again
before any address above the high-water mark, so the result depends only on the sequence of calls.
"""

from __future__ import annotations

import heapq
from ipaddress import IPv4Address, IPv4Network

from topology.errors import PoolExhausted, ValidationError

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class AddressPool:
    def __init__(self, subnet: IPv4Network, gateway: IPv4Address, *, label: str) -> None:
        self.subnet = subnet
        self.label = label
        # /31 and /32 have no network or broadcast address to reserve (RFC 3021).
        if subnet.prefixlen >= 31:
            self._first, self._last = int(subnet.network_address), int(subnet.broadcast_address)
        else:
            self._first, self._last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
        self._gateway = int(gateway)
        self._used: set[int] = {self._gateway}
        self._next = self._first  # high-water mark: every address below it was handed out at least once
        self._freed: list[int] = []  # min-heap of released addresses below the mark

    def __len__(self) -> int:
        """Addresses in use, the gateway excluded."""
        return len(self._used) - 1

    @property
    def free(self) -> int:
        """Addresses `allocate` can still hand out: the subnet's host addresses less the used ones and the gateway."""
        gateway_inside = self._first <= self._gateway <= self._last
        return self._last - self._first + 1 - len(self._used) + (0 if gateway_inside else 1)

    def claim(self, ip: IPv4Address, *, path: str) -> None:
        """Reserve a specific address (an endpoint with a static IP)."""
        value = int(ip)
        if ip not in self.subnet:
            raise ValidationError(path, f"{ip} is outside subnet {self.subnet} of network {self.label}")
        if not self._first <= value <= self._last:
            which = "network" if ip == self.subnet.network_address else "broadcast"
            raise ValidationError(path, f"{ip} is the {which} address of {self.subnet}, not a host address")
        if value == self._gateway:
            raise ValidationError(path, f"{ip} is the gateway of network {self.label}", conflict=True)
        if value in self._used:
            raise ValidationError(path, f"{ip} is already used in network {self.label}", conflict=True)
        self._used.add(value)

    def allocate(self, *, path: str) -> IPv4Address:
        while self._freed:
            value = heapq.heappop(self._freed)
            if value not in self._used:
                self._used.add(value)
                return IPv4Address(value)
        while self._next <= self._last:
            value = self._next
            self._next += 1
            if value not in self._used:
                self._used.add(value)
                return IPv4Address(value)
        raise PoolExhausted(path, f"no free address left in {self.subnet} of network {self.label}")

    def release(self, ip: IPv4Address) -> None:
        value = int(ip)
        if value == self._gateway or value not in self._used:
            return
        self._used.discard(value)
        if value < self._next:
            heapq.heappush(self._freed, value)


def mac_to_int(mac: str) -> int:
    parts = mac.split(":")
    # Checked digit by digit: int() alone would also take "+1", " 1" or "1_" as an octet.
    if len(parts) != 6 or not all(len(p) == 2 and all(c in HEX_DIGITS for c in p) for p in parts):
        raise ValueError(f"{mac!r} is not a MAC address (want six hex octets like 02:00:00:00:00:0a)")
    return int("".join(parts), 16)


def int_to_mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


# Allocated endpoint MACs: locally administered, unicast, 02:<network id, 16 bits>:<IP, low 24 bits>,
# so they are unique across the whole cluster as long as network ids fit 16 bits (the model enforces it).
ENDPOINT_MAC_BASE = 0x02_00_00_00_00_00
# Gateway MACs: 0a:00:00:00:<network id>; a different first octet, so never equal to an allocated MAC.
GATEWAY_MAC_BASE = 0x0A_00_00_00_00_00
MAX_NETWORK_ID = 0xFFFF


def endpoint_mac(network_id: int, ip: IPv4Address) -> int:
    return ENDPOINT_MAC_BASE | (network_id << 24) | (int(ip) & 0xFFFFFF)


def gateway_mac(network_id: int) -> int:
    return GATEWAY_MAC_BASE | network_id


def is_unicast_mac(value: int) -> bool:
    return not (value >> 40) & 1
