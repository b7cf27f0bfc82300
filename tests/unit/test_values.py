"""Single-value checks at their edges: what is just allowed and what is just not."""

from __future__ import annotations

import pytest

from topology.errors import ValidationError
from topology.values import check_ifname, check_name, check_unicast, parse_ip, parse_subnet


@pytest.mark.parametrize("name", ["a", "0", "a" * 63, "web-1", "1-web", "x--y"])
def test_labels_accepted(name: str) -> None:
    check_name("n", name)


@pytest.mark.parametrize("name", ["", "a" * 64, "-a", "a-", "A", "a_b", "a.b", "a b", "wéb", "a/b", 5, None, True])
def test_labels_refused(name: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_name("n", name)
    assert caught.value.path == "n"


@pytest.mark.parametrize(
    "name", ["a.b", "node1.example.com", "a" * 63 + "." + "b" * 63, ".".join(["a" * 63] * 4)[:253]]
)
def test_subdomains_accepted(name: str) -> None:
    check_name("n", name, subdomain=True)


@pytest.mark.parametrize("name", ["a..b", ".a", "a.", "a.-b", "a" * 254, "A.b"])
def test_subdomains_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        check_name("n", name, subdomain=True)


@pytest.mark.parametrize("name", ["eth1", "s1-s2", "br.100", "a" * 15, "veth_0", "en+"])
def test_interface_names_accepted(name: str) -> None:
    check_ifname("p", name)


@pytest.mark.parametrize("name", ["", "a" * 16, ".", "..", "a/b", "a:b", "a b", "eth\t1", "ethé", "eth\x00"])
def test_interface_names_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        check_ifname("p", name)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.0.0.0/31", "too small"),
        ("10.0.0.0/32", "too small"),
        ("10.0.0.1/24", "did you mean 10.0.0.0/24?"),
        ("10.0.0.0", "no prefix length"),
        ("10.0.0.0/255.255.255.0", "bad prefix length"),
        ("10.0.0.0/33", "bad prefix length"),
        ("10.0.0.0/-1", "bad prefix length"),
        ("0.0.0.0/0", "overlaps 0.0.0.0/8 (this network)"),
        ("128.0.0.0/1", "overlaps 224.0.0.0/4 (multicast)"),
        ("127.1.0.0/16", "(loopback)"),
        ("240.0.0.0/24", "(reserved)"),
        ("fd00::/64", "IPv6 subnet"),
        ("::1", "IPv6 address"),
        ("", "not an IPv4 subnet"),
        ("x/24", "not an IPv4 subnet"),
    ],
)
def test_subnets_refused(text: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_subnet("s", text)
    assert words in caught.value.message


@pytest.mark.parametrize("value", [None, 24, ["10.0.0.0/24"], b"10.0.0.0/24"])
def test_subnets_of_the_wrong_type_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        parse_subnet("s", value)


@pytest.mark.parametrize("text", ["10.0.0.0/30", "10.0.0.0/8", "128.0.0.0/2", "192.168.0.0/16"])
def test_subnets_accepted(text: str) -> None:
    assert str(parse_subnet("s", text)) == text


@pytest.mark.parametrize("text", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1"])
def test_tunnel_ips_must_be_unicast(text: str) -> None:
    with pytest.raises(ValidationError, match="want a unicast address"):
        check_unicast("t", parse_ip("t", text))


@pytest.mark.parametrize("text", ["10.0.0", "010.0.0.1", "10.0.0.1 ", "::1", "fe80::1%eth0", ""])
def test_addresses_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_ip("ip", text)
