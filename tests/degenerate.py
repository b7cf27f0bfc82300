"""Degenerate values for generated requests: the edges where validation goes wrong.

Prefixes /0 to /32 with and without host bits, addresses of the other family, segment ids and MTUs just
inside and just outside their ranges, names at and over 63 characters, non-ASCII, empty, and JSON of the
wrong type (booleans, which Python counts as integers, nulls, lists, huge integers).
"""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from hypothesis import strategies as st

OCTETS = st.tuples(*[st.sampled_from([0, 1, 10, 127, 192, 224, 255]) | st.integers(0, 255)] * 4)
IPV4 = OCTETS.map(lambda o: ".".join(map(str, o)))
IPV6 = st.sampled_from(["::1", "fd00::1", "2001:db8::5", "::ffff:10.0.0.1", "fe80::1%eth0"])
GARBAGE_TEXT = st.sampled_from(["", " ", "10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1 ", "x", "10.0.0.1/"])
WRONG_TYPES: st.SearchStrategy[object] = st.sampled_from(
    [None, True, False, 0, 1, -1, 2**64, 10**30, 1.5, [], ["10.0.0.0/24"], {}]
)
BOUNDARY_INTS = st.sampled_from(
    [-1, 0, 1, 2, 575, 576, 1450, 1500, 4094, 4095, 8950, 8951, 9000, 9001, 2**24 - 1, 2**24, 2**31, 2**64, 10**40]
)
PREFIXES = st.sampled_from([24, 30, 31, 32, 0, 1, 8, 29]) | st.integers(0, 32)
SUBNETS = (
    st.tuples(IPV4, PREFIXES).map(lambda p: f"{p[0]}/{p[1]}")
    | IPV6.map(lambda a: a.split("%")[0] + "/64")
    | GARBAGE_TEXT
    | st.sampled_from(["10.6.0.0/32", "10.6.0.0/31", "10.6.0.4/30", "10.1.0.5/24", "10.0.0.0/33", "10.0.0.0/-1"])
)
ADDRESSES = IPV4 | IPV6 | GARBAGE_TEXT | st.sampled_from(["10.6.0.0", "10.6.0.1", "10.6.0.3", "255.255.255.255"])
NAMES = (
    st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
    | st.sampled_from(["a" * 63, "a" * 64, "b" * 300, "", "-a", "a-", "Web", "web_1", "wéb", "веб", "a/b", "a b"])
    | st.text(max_size=8)
)
# Normalized prefixes of any length, /31 and /32 included: what a user who knows CIDR would send.
NORMAL_SUBNETS = st.tuples(IPV4, PREFIXES).map(lambda p: str(ip_network(f"{p[0]}/{p[1]}", strict=False)))
ANY = SUBNETS | NORMAL_SUBNETS | ADDRESSES | NAMES | BOUNDARY_INTS | WRONG_TYPES


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is absent, or one of `values`, or a value of the wrong JSON type."""
    return st.none() | values | WRONG_TYPES
