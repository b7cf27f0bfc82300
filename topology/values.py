"""Checks of single values: names, interface names, IPv4 addresses and subnets, each with the rule it comes from.

Each raises `ValidationError` at the path it is given, saying what is wrong with the value and what is allowed;
none looks at more than the one value (conflicts with other objects are the model's business).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError, ip_address, ip_network

from topology.errors import ValidationError

MAX_PREFIX_LEN = 30  # the longest prefix with room for the gateway and an endpoint beside network and broadcast
MAX_NAME_LEN = 63  # a DNS-1123 label (RFC 1123), as Kubernetes names namespaces and services
MAX_SUBDOMAIN_LEN = 253  # a DNS-1123 subdomain, as Kubernetes names nodes and pods
# Ranges no network, endpoint or tunnel may live in: RFC 1122 "this network" and loopback, RFC 5771 multicast,
# RFC 1112 reserved (with the limited broadcast address).
NOT_UNICAST = (
    (IPv4Network("0.0.0.0/8"), "this network"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved"),
)


def check_name(path: str, name: object, *, subdomain: bool = False) -> None:
    """A name of a tenant, network or QoS profile: a DNS-1123 label (RFC 1123, as Kubernetes checks it),
    1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit. With `subdomain`
    (node names, endpoint ids): dot-separated labels, at most 253 characters, as Kubernetes names nodes and pods.

    Raises ValidationError at `path` saying what is wrong and what is allowed.
    """
    limit, pattern, kind = (MAX_NAME_LEN, _LABEL, "a DNS-1123 label")
    if subdomain:
        limit, pattern, kind = (MAX_SUBDOMAIN_LEN, _SUBDOMAIN, "a DNS-1123 subdomain")
    if not isinstance(name, str):
        raise ValidationError(path, f"want a name (a string), got {show(name)}")
    if not name:
        raise ValidationError(path, "a name may not be empty")
    if len(name) > limit:
        raise ValidationError(path, f"{show(name)} is {len(name)} characters long; a name has at most {limit}")
    if not pattern.fullmatch(name):
        dots = ", '-' and '.'" if subdomain else " and '-'"
        raise ValidationError(
            path,
            f"{show(name)} is not a valid name: use lowercase letters, digits{dots}, "
            f"starting and ending with a letter or digit ({kind})",
        )


def check_ifname(path: str, name: object) -> None:
    """A Linux network interface (and OVS port) name: 1 to 15 characters (IFNAMSIZ), printable ASCII without
    '/', ':' or spaces, not '.' or '..' (the kernel's `dev_valid_name`, kept to ASCII). Raises ValidationError
    at `path`."""
    if not isinstance(name, str) or not name:
        raise ValidationError(path, f"want an interface name (a non-empty string), got {show(name)}")
    if len(name) > 15:
        raise ValidationError(path, f"{show(name)} is longer than 15 characters (Linux IFNAMSIZ)")
    if name in (".", "..") or any(not "!" <= c <= "~" or c in "/:" for c in name):
        raise ValidationError(
            path, f"{show(name)} is not an interface name: printable ASCII without '/', ':' or spaces, not '.' or '..'"
        )


def parse_ip(path: str, text: object) -> IPv4Address:
    """An IPv4 address in dotted decimal; raises ValidationError at `path` (also for an IPv6 address)."""
    try:
        return IPv4Address(str(text))
    except ValueError:
        if isinstance(text, str) and _is_ipv6(text, ip_address):
            raise ValidationError(path, f"{text} is an IPv6 address; want an IPv4 address like 10.1.0.1") from None
        raise ValidationError(path, f"{show(text)} is not an IPv4 address (want one like 10.1.0.1)") from None


def parse_subnet(path: str, text: object) -> IPv4Network:
    """A network's subnet: IPv4 CIDR with no host bits set (`10.1.0.5/24` is refused, not rounded down),
    a prefix length of at most /30 (network and broadcast address, the gateway and at least one endpoint),
    and unicast (not in 0/8, 127/8, 224/4 or 240/4). Raises ValidationError at `path`."""
    if not isinstance(text, str) or "/" not in text:
        if isinstance(text, str) and _is_ipv6(text, ip_address):
            raise ValidationError(path, f"{text} is an IPv6 address; want an IPv4 subnet like 10.1.0.0/24")
        if isinstance(text, str) and _is_ipv4(text):
            raise ValidationError(path, f"{text} has no prefix length; want CIDR notation like 10.1.0.0/24")
        raise ValidationError(path, f"{show(text)} is not an IPv4 subnet; want CIDR notation like 10.1.0.0/24")
    prefix = text.rpartition("/")[2]
    if not re.fullmatch(r"[12]?[0-9]|3[0-2]", prefix) and not _is_ipv6(text, ip_network):  # no netmask forms
        raise ValidationError(path, f"{show(text)} has a bad prefix length; want 0..32 after '/', like 10.1.0.0/24")
    try:
        net = IPv4Network(text, strict=True)
    except ValueError as error:
        if isinstance(text, str) and _is_ipv6(text, ip_network):
            raise ValidationError(path, f"{text} is an IPv6 subnet; want an IPv4 subnet like 10.1.0.0/24") from None
        if not isinstance(error, AddressValueError | NetmaskValueError):  # host bits set
            loose = IPv4Network(text, strict=False)
            try:  # suggest only a subnet that would be taken
                parse_subnet(path, str(loose))
            except ValidationError as unusable:
                raise ValidationError(
                    path, f"{text} has host bits set, and its network is refused too: {unusable.message}"
                ) from None
            raise ValidationError(path, f"{text} has host bits set; did you mean {loose}?") from None
        why = str(error)[:1].lower() + str(error)[1:]
        raise ValidationError(path, f"{show(text)} is not an IPv4 subnet ({why}); want one like 10.1.0.0/24") from None
    if net.prefixlen > MAX_PREFIX_LEN:
        raise ValidationError(
            path,
            f"{net} is too small: a network needs a prefix length of /{MAX_PREFIX_LEN} or shorter "
            "(room for the network and broadcast addresses, the gateway and one endpoint)",
        )
    for reserved, what in NOT_UNICAST:
        if net.overlaps(reserved):
            raise ValidationError(path, f"{net} overlaps {reserved} ({what}); a network's subnet must be unicast")
    return net


def check_unicast(path: str, ip: IPv4Address) -> None:
    """A tunnel endpoint must be a unicast address; raises ValidationError at `path`."""
    for reserved, what in NOT_UNICAST:
        if ip in reserved:
            raise ValidationError(path, f"{ip} is in {reserved} ({what}); want a unicast address")


def _is_ipv6(text: str, parse: Callable[[str], object]) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return ":" in text


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def show(value: object) -> str:
    """A value for a message, bounded: a client's string or number may be huge."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
