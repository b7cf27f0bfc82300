"""Address pools and MAC helpers: deterministic, lowest free first, never reserved, never twice."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.errors import PoolExhausted, ValidationError
from topology.ipam import (
    ENDPOINT_MAC_BASE,
    AddressPool,
    endpoint_mac,
    gateway_mac,
    int_to_mac,
    is_unicast_mac,
    mac_to_int,
)

IP = IPv4Address


def pool(subnet: str = "10.0.0.0/24", gateway: str = "10.0.0.1") -> AddressPool:
    return AddressPool(IPv4Network(subnet), IP(gateway), label="'t/n'")


def take(addresses: AddressPool, count: int) -> list[str]:
    return [str(addresses.allocate(path="ip")) for _ in range(count)]


def test_allocates_in_order_skipping_network_address_and_gateway() -> None:
    assert take(pool(), 3) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_gateway_in_the_middle_and_no_broadcast() -> None:
    addresses = pool("10.0.0.0/29", "10.0.0.5")
    assert take(addresses, 5) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.6"]
    with pytest.raises(PoolExhausted):
        addresses.allocate(path="ip")


def test_exhaustion_on_a_slash_30() -> None:
    addresses = pool("10.0.0.0/30", "10.0.0.1")
    assert take(addresses, 1) == ["10.0.0.2"]
    with pytest.raises(PoolExhausted) as caught:
        addresses.allocate(path="endpoints[3].ip")
    error = caught.value
    assert isinstance(error, ValidationError)
    assert error.path == "endpoints[3].ip"
    assert error.message == "no free address left in 10.0.0.0/30 of network 't/n'"
    assert error.conflict
    assert len(addresses) == 1  # the failed call took nothing


def test_release_then_reuse_lowest_first() -> None:
    addresses = pool()
    assert take(addresses, 5) == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    addresses.release(IP("10.0.0.5"))
    addresses.release(IP("10.0.0.3"))
    assert take(addresses, 3) == ["10.0.0.3", "10.0.0.5", "10.0.0.7"]


def test_released_address_is_reused_after_exhaustion() -> None:
    addresses = pool("10.0.0.0/29")
    take(addresses, 5)
    addresses.release(IP("10.0.0.4"))
    assert take(addresses, 1) == ["10.0.0.4"]


def test_slash_31_has_no_network_or_broadcast_address() -> None:
    # RFC 3021: both addresses of a /31 are hosts; one is the gateway, the other is the only endpoint.
    addresses = pool("10.0.0.0/31", "10.0.0.0")
    assert take(addresses, 1) == ["10.0.0.1"]
    with pytest.raises(PoolExhausted):
        addresses.allocate(path="ip")
    addresses.release(IP("10.0.0.1"))
    addresses.claim(IP("10.0.0.1"), path="ip")
    with pytest.raises(ValidationError, match=r"10\.0\.0\.0 is the gateway"):
        addresses.claim(IP("10.0.0.0"), path="ip")


def test_slash_31_with_the_gateway_last() -> None:
    assert take(pool("10.0.0.0/31", "10.0.0.1"), 1) == ["10.0.0.0"]


def test_slash_32_holds_only_the_gateway() -> None:
    with pytest.raises(PoolExhausted):
        pool("10.0.0.7/32", "10.0.0.7").allocate(path="ip")


@pytest.mark.parametrize(
    ("ip", "message", "conflict"),
    [
        ("10.0.1.5", "10.0.1.5 is outside subnet 10.0.0.0/24 of network 't/n'", False),
        ("10.0.0.0", "10.0.0.0 is the network address of 10.0.0.0/24, not a host address", False),
        ("10.0.0.255", "10.0.0.255 is the broadcast address of 10.0.0.0/24, not a host address", False),
        ("10.0.0.1", "10.0.0.1 is the gateway of network 't/n'", True),
        ("10.0.0.2", "10.0.0.2 is already used in network 't/n'", True),
    ],
)
def test_claim_refusals_change_nothing(ip: str, message: str, conflict: bool) -> None:
    addresses = pool()
    take(addresses, 1)
    with pytest.raises(ValidationError) as caught:
        addresses.claim(IP(ip), path="endpoints[0].ip")
    assert (caught.value.path, caught.value.message, caught.value.conflict) == ("endpoints[0].ip", message, conflict)
    assert len(addresses) == 1
    assert take(addresses, 1) == ["10.0.0.3"]


def test_allocation_skips_claimed_addresses() -> None:
    addresses = pool()
    addresses.claim(IP("10.0.0.3"), path="ip")
    assert take(addresses, 2) == ["10.0.0.2", "10.0.0.4"]
    addresses.release(IP("10.0.0.3"))
    assert take(addresses, 2) == ["10.0.0.3", "10.0.0.5"]


def test_releasing_the_gateway_or_a_free_address_is_harmless() -> None:
    addresses = pool()
    addresses.release(IP("10.0.0.1"))
    addresses.release(IP("10.0.0.9"))
    assert take(addresses, 1) == ["10.0.0.2"]
    with pytest.raises(ValidationError, match="gateway"):
        addresses.claim(IP("10.0.0.1"), path="ip")


# --- properties: any sequence of allocate/claim/release --------------------------------------------

SUBNETS = ["10.0.0.0/24", "10.0.0.0/28", "10.0.0.16/29", "10.0.0.8/30", "10.0.0.4/31", "10.0.0.9/32"]
operations = st.lists(st.tuples(st.sampled_from(["allocate", "claim", "release"]), st.integers(0, 255)), max_size=60)


def run(subnet: str, gateway_index: int, ops: list[tuple[str, int]]) -> list[object]:
    """Apply `ops` to a fresh pool, checking it against a reference model at each step; return the outcomes."""
    network = IPv4Network(subnet)
    everything = list(network)
    hosts = list(network.hosts())
    gateway = hosts[gateway_index % len(hosts)]
    addresses = AddressPool(network, gateway, label="'t/n'")
    live: set[IPv4Address] = set()
    outcomes: list[object] = []
    for op, index in ops:
        if op == "allocate":
            outcomes.append(allocate_checked(addresses, live, hosts, gateway))
        elif op == "claim":
            outcomes.append(claim_checked(addresses, live, everything[index % len(everything)]))
        elif live:
            released = sorted(live)[index % len(live)]
            addresses.release(released)
            live.discard(released)
            outcomes.append(("released", released))
        assert len(addresses) == len(live)
    return outcomes


def allocate_checked(
    addresses: AddressPool, live: set[IPv4Address], hosts: list[IPv4Address], gateway: IPv4Address
) -> object:
    free = [ip for ip in hosts if ip not in live and ip != gateway]
    try:
        ip = addresses.allocate(path="ip")
    except PoolExhausted:
        assert not free
        return "exhausted"
    assert ip == free[0]  # lowest free first; so never the gateway, never a live one, always a host
    live.add(ip)
    return ip


def claim_checked(addresses: AddressPool, live: set[IPv4Address], ip: IPv4Address) -> object:
    try:
        addresses.claim(ip, path="ip")
    except ValidationError as error:
        assert ip in live or ip not in set(addresses.subnet.hosts()) or error.conflict
        return error.message
    assert ip not in live
    live.add(ip)
    return ("claimed", ip)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SUBNETS), st.integers(0, 255), operations)
def test_pool_matches_lowest_free_first_reference(subnet: str, gateway_index: int, ops: list[tuple[str, int]]) -> None:
    run(subnet, gateway_index, ops)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SUBNETS), st.integers(0, 255), operations)
def test_pool_is_deterministic(subnet: str, gateway_index: int, ops: list[tuple[str, int]]) -> None:
    assert run(subnet, gateway_index, ops) == run(subnet, gateway_index, ops)


# --- MAC helpers -------------------------------------------------------------------------------------


def test_mac_text_round_trip() -> None:
    assert mac_to_int("02:00:00:00:01:0a") == 0x02_00_00_00_01_0A
    assert int_to_mac(0x02_00_00_00_01_0A) == "02:00:00:00:01:0a"


@pytest.mark.parametrize(
    "text",
    [
        "02:00:00:00:01",
        "2:0:0:0:1:a",
        "02-00-00-00-01-0a",
        "02:00:00:00:01:0g",
        "+2:00:00:00:01:0a",
        " 2:00:00:00:01:0a",
        "0_:00:00:00:01:0a",
        "",
    ],
)
def test_bad_mac_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not a MAC address"):
        mac_to_int(text)


def test_endpoint_and_gateway_macs() -> None:
    assert int_to_mac(endpoint_mac(3, IP("10.1.0.2"))) == "02:00:03:01:00:02"
    assert int_to_mac(gateway_mac(3)) == "0a:00:00:00:00:03"
    assert endpoint_mac(1, IP("10.1.0.2")) != endpoint_mac(2, IP("10.1.0.2"))
    assert is_unicast_mac(endpoint_mac(0xFFFF, IP("255.255.255.255")))
    assert is_unicast_mac(gateway_mac(0xFFFF))
    assert not is_unicast_mac(mac_to_int("01:00:5e:00:00:01"))
    assert endpoint_mac(0, IP("0.0.0.0")) == ENDPOINT_MAC_BASE


@pytest.mark.parametrize(
    ("subnet", "gateway", "size"), [("10.0.0.0/29", "10.0.0.1", 5), ("10.0.0.0/31", "10.0.0.0", 1)]
)
def test_free_counts_what_allocate_can_still_hand_out(subnet: str, gateway: str, size: int) -> None:
    addresses = pool(subnet, gateway)
    assert addresses.free == size
    first = addresses.allocate(path="ip")
    if size > 1:
        addresses.claim(IP(int(first) + 1), path="ip")
    assert addresses.free == max(size - 2, 0)
    while addresses.free:
        addresses.allocate(path="ip")
    with pytest.raises(PoolExhausted):
        addresses.allocate(path="ip")
    addresses.release(first)
    assert addresses.free == 1
