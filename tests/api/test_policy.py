"""What tenants may not touch: segments outside the admin's pools, quotas, infrastructure port names, and
QoS caps the admin attached. Each refusal names what is wrong and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import records
from controller.api import Tokens, make_app
from controller.policy import Policy, Quota, SegmentPool
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.api.support import BLUE, RED, TOKENS, Wsgi, network
from topology.model import VLAN_RANGE, VNI_RANGE

POLICY = Policy(
    vlan_pool=SegmentPool.parse("100-102", what="vlan_pool", bounds=VLAN_RANGE),
    vni_pool=SegmentPool.parse("5000-5002,6000", what="vni_pool", bounds=VNI_RANGE),
    quota=Quota(networks=3, endpoints=None),
)
VIEWS = ["/v1/tenants", "/v1/networks", "/v1/endpoints", "/v1/qos-attachments", "/v1/nodes"]


def open_api(db_path: Path) -> tuple[Wsgi, Service, SqliteStore]:
    store = SqliteStore(db_path)
    service = Service(store, policy=POLICY)
    service.restore()
    return Wsgi(make_app(service, Tokens.from_dict(TOKENS))), service, store


@pytest.fixture
def api(db_path: Path) -> Iterator[Wsgi]:
    wsgi, _service, store = open_api(db_path)
    for name in ("blue", "red"):
        wsgi.ok("POST", "/v1/tenants", {"name": name})
    wsgi.ok("PUT", "/v1/nodes/node1", {"tunnel_ip": "192.168.50.1", "uplink": "eth1"})
    wsgi.ok("POST", "/v1/qos", {"name": "gold", "rate_kbps": 10_000, "burst_kb": 1_000})
    wsgi.ok("POST", "/v1/qos", {"name": "fast", "rate_kbps": 900_000, "burst_kb": 1_000})
    yield wsgi
    store.close()


def state(api: Wsgi) -> dict[str, Any]:
    return {path: api.ok("GET", path) for path in VIEWS}


def refused(
    api: Wsgi, method: str, path: str, body: Any, *, token: str, status: int, field: str | None, words: str
) -> None:
    before = state(api)
    answer = api.call(method, path, body, token=token)
    assert answer.status == status, answer
    assert answer.error["field"] == field and words in answer.error["message"], answer
    assert state(api) == before


def test_policy_is_shown(api: Wsgi) -> None:
    doc = api.ok("GET", "/v1/policy", token=BLUE)
    assert doc == {"vlan_pool": "100-102", "vni_pool": "5000-5002,6000", "quota": {"networks": 3, "endpoints": None}}


def test_tenant_segments_come_from_the_pools(api: Wsgi) -> None:
    nets = "/v1/tenants/blue/networks"
    refused(
        api,
        "POST",
        nets,
        network("a", "10.0.0.0/24", vni=7000),
        token=BLUE,
        status=400,
        field="network.vni",
        words="VNI 7000 is outside the tenants' pool 5000-5002,6000",
    )
    refused(
        api,
        "POST",
        nets,
        network("a", "10.0.0.0/24", vlan=4000),
        token=BLUE,
        status=400,
        field="network.vlan",
        words="VLAN 4000 is outside the tenants' pool 100-102",
    )
    assert api.ok("POST", nets, network("a", "10.0.0.0/24", vni=5001), token=BLUE)["vni"] == 5001
    # Omitted: the lowest free one of the pool, for a tenant and for the admin alike.
    assert api.ok("POST", nets, {"name": "b", "encap": "vxlan", "subnet": "10.1.0.0/24"}, token=BLUE)["vni"] == 5000
    red = api.ok("POST", "/v1/tenants/red/networks", {"name": "c", "encap": "vlan", "subnet": "10.2.0.0/24"})
    assert red["vlan"] == 100
    # The admin may use any valid segment.
    assert api.ok("POST", "/v1/tenants/red/networks", network("d", "10.3.0.0/24", vni=7000))["vni"] == 7000


def test_an_exhausted_pool_is_409_naming_the_field(api: Wsgi) -> None:
    for i, vni in enumerate((5000, 5001, 5002, 6000)):
        tenant = "blue" if i < 2 else "red"
        api.ok("POST", f"/v1/tenants/{tenant}/networks", network(f"n{i}", f"10.{i}.0.0/24", vni=vni))
    refused(
        api,
        "POST",
        "/v1/tenants/blue/networks",
        {"name": "x", "encap": "vxlan", "subnet": "10.9.0.0/24"},
        token=BLUE,
        status=409,
        field="network.vni",
        words="no free VNI left in the pool 5000-5002,6000",
    )


def test_quotas_are_enforced_set_by_the_admin_and_persisted(api: Wsgi, db_path: Path) -> None:
    for i in range(3):
        api.ok("POST", "/v1/tenants/blue/networks", network(f"n{i}", f"10.{i}.0.0/24", vni=5000 + i), token=BLUE)
    refused(
        api,
        "POST",
        "/v1/tenants/blue/networks",
        network("n3", "10.3.0.0/24", vni=6000),
        token=BLUE,
        status=409,
        field="quota.networks",
        words="tenant 'blue' is at its quota of 3 networks",
    )
    # A tenant cannot raise its own quota.
    refused(
        api,
        "PUT",
        "/v1/tenants/blue",
        {"quota": {"networks": 9}},
        token=BLUE,
        status=403,
        field=None,
        words="needs the cluster-admin token",
    )
    refused(
        api,
        "PUT",
        "/v1/tenants/blue",
        {"quota": {"networks": -1}},
        token="admin-token",
        status=400,
        field="tenant.quota.networks",
        words="non-negative integer",
    )
    doc = api.ok("PUT", "/v1/tenants/blue", {"quota": {"networks": 4, "endpoints": 2}})
    assert doc["quota"] == {"networks": 4, "endpoints": 2} and doc["usage"] == {"networks": 3, "endpoints": 0}
    api.ok("POST", "/v1/tenants/blue/networks", network("n3", "10.3.0.0/24", vni=6000), token=BLUE)
    for i in range(2):
        api.ok("POST", "/v1/endpoints", {"id": f"e{i}", "network": "blue/n0", "node": "node1"}, token=BLUE)
    refused(
        api,
        "POST",
        "/v1/endpoints",
        {"id": "e2", "network": "blue/n1", "node": "node1"},
        token=BLUE,
        status=409,
        field="quota.endpoints",
        words="tenant 'blue' is at its quota of 2 endpoints",
    )
    # The admin is not held to a tenant's quota; red keeps the default.
    api.ok("POST", "/v1/endpoints", {"id": "e2", "network": "blue/n1", "node": "node1"})
    assert api.ok("GET", "/v1/tenants/red", token=RED)["quota"] == {"networks": 3, "endpoints": None}

    # After a restart from the store: the same quotas, still enforced.
    again, service, store = open_api(db_path)
    try:
        assert again.ok("GET", "/v1/tenants/blue") == api.ok("GET", "/v1/tenants/blue")
        assert again.ok("GET", "/v1/tenants/blue")["quota"] == {"networks": 4, "endpoints": 2}
        answer = again.post("/v1/endpoints", {"id": "e3", "network": "blue/n1", "node": "node1"}, token=BLUE)
        assert answer.status == 409 and answer.error["field"] == "quota.endpoints"
        answer = again.post("/v1/tenants/red/networks", network("r", "10.0.0.0/24", vni=7000), token=RED)
        assert answer.status == 400 and answer.error["field"] == "network.vni"  # the pools hold after a restart
        # Deleting the tenant deletes its quota: made again, it starts from the default.
        for key in ("e0", "e1", "e2"):
            again.ok("DELETE", f"/v1/endpoints/{key}")
        for i in range(4):
            again.ok("DELETE", f"/v1/tenants/blue/networks/n{i}")
        again.ok("DELETE", "/v1/tenants/blue")
        assert store.get(records.key(records.QUOTAS, "blue")) is None
        assert again.ok("POST", "/v1/tenants", {"name": "blue"})["quota"] == {"networks": 3, "endpoints": None}
        assert service.quota_of("blue") == POLICY.quota
    finally:
        store.close()


@pytest.mark.parametrize("port", ["tenet-tun", "tenet-gw0", "tenet-anything", "br-int", "br-phy", "eth1"])
def test_infrastructure_port_names_are_reserved(api: Wsgi, port: str) -> None:
    api.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=5000))
    body = {"id": "x", "network": "blue/web", "node": "node1", "port_name": port}
    refused(
        api,
        "POST",
        "/v1/endpoints",
        body,
        token="admin-token",
        status=400,
        field="endpoint.port_name",
        words=port if not port.startswith("tenet-") else "reserved for infrastructure ports",
    )


def test_tenant_may_not_set_the_port_name(api: Wsgi) -> None:
    api.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=5000))
    body = {"id": "x", "network": "blue/web", "node": "node1", "port_name": "mine0"}
    refused(
        api,
        "POST",
        "/v1/endpoints",
        body,
        token=BLUE,
        status=403,
        field="endpoint.port_name",
        words="needs a node or the cluster-admin token",
    )
    assert api.ok("POST", "/v1/endpoints", body)["port_name"] == "mine0"  # the admin may


def test_the_uplink_may_not_be_an_infrastructure_name(api: Wsgi) -> None:
    for uplink in ("tenet-tun", "br-int"):
        refused(
            api,
            "PUT",
            "/v1/nodes/node2",
            {"tunnel_ip": "192.168.50.2", "uplink": uplink},
            token="admin-token",
            status=400,
            field="node.uplink",
            words="reserved infrastructure name",
        )


def test_tenant_cannot_remove_or_escape_the_admins_qos_cap(api: Wsgi) -> None:
    api.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=5000), token=BLUE)
    api.ok("POST", "/v1/tenants/blue/networks", network("db", "10.1.0.0/24", vni=5001), token=BLUE)
    api.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"}, token=BLUE)
    api.ok("POST", "/v1/endpoints", {"id": "b2", "network": "blue/db", "node": "node1"}, token=BLUE)
    capped = api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/web"})
    assert capped["attached_by"] == "admin"
    words = "attached by the cluster admin"
    before = state(api)
    answer = api.call("DELETE", "/v1/qos-attachments", token=BLUE, query="target=blue/web")
    assert answer.status == 403 and words in answer.error["message"]
    refused(
        api, "POST", "/v1/qos/fast/attachments", {"target": "blue/web"}, token=BLUE, status=403, field=None, words=words
    )
    refused(
        api,
        "POST",
        "/v1/qos/fast/attachments",
        {"target": "b1"},
        token=BLUE,
        status=403,
        field=None,
        words="has a QoS cap set by the cluster admin",
    )
    assert state(api) == before
    assert api.ok("GET", "/v1/endpoints/b1", token=BLUE)["qos"] == "gold"
    # What the tenant attached itself, it may change and detach.
    assert api.ok("POST", "/v1/qos/fast/attachments", {"target": "blue/db"}, token=BLUE)["attached_by"] == "tenant"
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/db"}, token=BLUE)
    api.ok("DELETE", "/v1/qos-attachments", token=BLUE, query="target=blue/db")
    # The admin may detach its own cap, and may take over a tenant's attachment.
    api.ok("POST", "/v1/qos/fast/attachments", {"target": "b2"}, token=BLUE)
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "b2"})
    answer = api.call("DELETE", "/v1/qos-attachments", token=BLUE, query="target=b2")
    assert answer.status == 403
    # An endpoint's own profile the tenant attached before the admin capped the network: the tenant may
    # detach it (the network's cap then applies), not attach another.
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/db"})
    assert api.ok("GET", "/v1/endpoints/b2", token=BLUE)["qos"] == "gold"  # b2's own, the admin's
    api.ok("DELETE", "/v1/qos-attachments", query="target=b2")
    api.ok("DELETE", "/v1/qos-attachments", query="target=blue/db")
    api.ok("POST", "/v1/qos/fast/attachments", {"target": "b2"}, token=BLUE)
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/db"})
    refused(
        api,
        "POST",
        "/v1/qos/gold/attachments",
        {"target": "b2"},
        token=BLUE,
        status=403,
        field=None,
        words="has a QoS cap set by the cluster admin",
    )
    api.ok("DELETE", "/v1/qos-attachments", token=BLUE, query="target=b2")
    assert api.ok("GET", "/v1/endpoints/b2", token=BLUE)["qos"] == "gold"  # the network's cap holds
    api.ok("DELETE", "/v1/qos-attachments", query="target=blue/web")
    api.ok("POST", "/v1/qos/fast/attachments", {"target": "b1"}, token=BLUE)


def test_who_attached_is_persisted(api: Wsgi, db_path: Path) -> None:
    api.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=5000), token=BLUE)
    api.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/web"})
    again, _service, store = open_api(db_path)
    try:
        assert again.ok("GET", "/v1/qos-attachments")[0]["attached_by"] == "admin"
        assert again.call("DELETE", "/v1/qos-attachments", token=BLUE, query="target=blue/web").status == 403
    finally:
        store.close()
