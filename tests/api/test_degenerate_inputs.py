"""Generated degenerate values through the API: never a 5xx, a 4xx names the field, nothing half-made.

The values are the edges users hit: prefixes /0 to /32 with host bits set or not, addresses of the other
family, segment ids just inside and just outside their ranges, MTUs at their limits, names at and over 63
characters, non-ASCII, empty, and JSON of the wrong type (booleans, which Python counts as integers,
nulls, lists, huge integers). A valid value comes first in each choice, so most requests get far.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.support import ADMIN, BLUE, Wsgi
from tests.degenerate import (
    ADDRESSES,
    BOUNDARY_INTS,
    NAMES,
    NORMAL_SUBNETS,
    SUBNETS,
    WRONG_TYPES,
    maybe,
)

MAX_EXAMPLES = 100  # per kind, networks three times that; derandomized: every run sends the same requests
NETS = "/v1/tenants/blue/networks"


def wire(path: str) -> str:
    """A path as WSGI's PATH_INFO carries it: its UTF-8 bytes decoded as latin-1 (PEP 3333)."""
    return path.encode().decode("latin-1")


@st.composite
def network_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible body (normalized prefixes of any length), then up to three fields made degenerate."""
    encap = draw(st.sampled_from(["vxlan", "vlan"]))
    segment_key = "vni" if encap == "vxlan" else "vlan"
    body: dict[str, Any] = {
        "name": draw(st.from_regex(r"\A[a-z][a-z0-9]{0,5}\Z")),
        "encap": encap,
        segment_key: draw(st.integers(1, 4094)),
        "subnet": draw(NORMAL_SUBNETS),
    }
    bad = {
        "name": NAMES | WRONG_TYPES,
        "encap": WRONG_TYPES | st.sampled_from(["gre", "VXLAN", "", "vlan" if encap == "vxlan" else "vxlan"]),
        segment_key: BOUNDARY_INTS | WRONG_TYPES | st.just("5"),
        "subnet": SUBNETS | WRONG_TYPES,
        "gateway": ADDRESSES | WRONG_TYPES,
        "mtu": BOUNDARY_INTS | WRONG_TYPES,
        "vlan" if encap == "vxlan" else "vni": BOUNDARY_INTS,
        "color": WRONG_TYPES,
    }
    for key in draw(st.lists(st.sampled_from(sorted(bad)), max_size=3, unique=True)):
        body[key] = draw(bad[key])
    return body


def endpoint_bodies() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"id": NAMES | WRONG_TYPES, "network": st.just("blue/web") | NAMES | WRONG_TYPES},
        optional={
            "node": st.just("node1") | NAMES | WRONG_TYPES,
            "ip": maybe(ADDRESSES),
            "mac": maybe(st.sampled_from(["02:00:00:00:00:05", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "2:0:0:0:1"])),
            "port_name": maybe(NAMES),
        },
    )


def node_bodies() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"tunnel_ip": st.just("192.168.60.9") | ADDRESSES | WRONG_TYPES},
        optional={"uplink": maybe(NAMES), "datapath_id": maybe(BOUNDARY_INTS)},
    )


def small_values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": NAMES | WRONG_TYPES},
        optional={"rate_kbps": BOUNDARY_INTS | WRONG_TYPES, "burst_kb": BOUNDARY_INTS | WRONG_TYPES},
    )


REQUESTS = {
    "network": network_bodies().map(lambda b: ("POST", NETS, b)),
    "endpoint": endpoint_bodies().map(lambda b: ("POST", "/v1/endpoints", b)),
    "node": st.tuples(NAMES.filter(lambda n: n and "/" not in n and n.isprintable()), node_bodies()).map(
        lambda p: ("PUT", wire("/v1/nodes/" + p[0]), p[1])
    ),
    "qos": small_values().map(lambda b: ("POST", "/v1/qos", b)),
    "tenant": small_values().map(lambda b: ("POST", "/v1/tenants", {"name": b["name"]})),
}
FIELDS = {
    "network": {"name", "encap", "vni", "vlan", "subnet", "gateway", "mtu"},
    "endpoint": {"id", "network", "node", "ip", "mac", "port_name"},
    "node": {"name", "tunnel_ip", "uplink", "datapath_id"},
    "qos": {"name", "rate_kbps", "burst_kb"},
    "tenant": {"name"},
}


def snapshot(api: Wsgi) -> tuple[Any, ...]:
    return tuple(api.ok("GET", p) for p in ("/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos", "/v1/nodes"))


def undo(api: Wsgi, path: str, answer: Any) -> None:
    """Remove what an accepted request made, so every example starts from the same state."""
    name = answer["id" if path == "/v1/endpoints" else "name"]
    api.ok("DELETE", wire(f"{path}/{name}"))


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_degenerate_values_get_a_4xx_naming_the_field(cluster: Wsgi, kind: str) -> None:
    cluster.ok("POST", NETS, {"name": "web", "encap": "vxlan", "vni": 100, "subnet": "10.0.0.0/24"})
    before = [snapshot(cluster)]

    @settings(
        max_examples=MAX_EXAMPLES * (3 if kind == "network" else 1),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=REQUESTS[kind], tenant_token=st.booleans())
    def check(request: tuple[str, str, dict[str, Any]], tenant_token: bool) -> None:
        method, path, body = request
        token = BLUE if tenant_token and not path.startswith(("/v1/qos", "/v1/tenants", "/v1/nodes")) else None
        answer = cluster.call(method, path, body, token=token or ADMIN)
        assert answer.status < 500, (method, path, body, answer)
        if answer.status >= 400:
            field = answer.error["field"]
            assert isinstance(field, str) and field.startswith(f"{kind}."), (body, answer)
            assert field.partition(".")[2] in FIELDS[kind] | set(body), (body, answer)
            assert field in answer.error["message"], answer
            assert snapshot(cluster) == before[0], (body, answer)  # nothing applied
        elif path.startswith("/v1/nodes"):
            assert answer.status in (200, 201), answer  # the API cannot remove a node: it stays
            before[0] = snapshot(cluster)
        else:
            assert answer.status == 201, answer
            undo(cluster, path, answer.body)

    check()
