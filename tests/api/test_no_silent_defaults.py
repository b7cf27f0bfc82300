"""An empty or zero value is a value: refused naming its field, never read as "absent" and defaulted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import BLUE, Wsgi, network


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/endpoints", {"id": "e9", "network": "blue/web", "node": "node1", "port_name": ""}, "endpoint.port_name"),
        ("/v1/qos", {"name": "q9", "rate_kbps": 1000, "direction": ""}, "qos.direction"),
    ],
)
def test_an_empty_string_is_refused_not_defaulted(cluster: Wsgi, path: str, body: dict[str, Any], field: str) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    answer = cluster.post(path, body)
    assert answer.status == 400 and answer.error["field"] == field
    assert cluster.get("/v1/endpoints/e9").status == 404 and cluster.get("/v1/qos/q9").status == 404


@pytest.mark.parametrize("field", ["underlay_mtu", "uplink_mtu", "datapath_id"])
def test_a_zero_on_registering_again_is_refused_not_read_as_absent(cluster: Wsgi, field: str) -> None:
    before = cluster.ok("GET", "/v1/nodes/node1")
    answer = cluster.put("/v1/nodes/node1", {"tunnel_ip": "192.168.50.1", field: 0})
    assert answer.status == 400 and answer.error["field"] == f"node.{field}"
    assert cluster.ok("GET", "/v1/nodes/node1") == before


@pytest.mark.parametrize("wait", ["1_0", "nan", "inf", "1e1", "0x10", " 5", "-0", "+1", "\uff15"])
def test_a_wait_is_plain_decimal_seconds(cluster: Wsgi, wait: str) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    answer = cluster.call("GET", "/v1/endpoints/b1/ready", query=f"wait={wait}")
    assert answer.status == 400 and answer.error["field"] == "wait"
    assert cluster.call("GET", "/v1/endpoints/b1/ready", query="wait=0.5").status == 200


def test_an_endpoint_id_another_tenant_holds_is_taken_without_naming_it(cluster: Wsgi) -> None:
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/tenants/red/networks", network("db", "10.9.0.0/24", vni=200))
    cluster.ok("POST", "/v1/endpoints", {"id": "r1", "network": "red/db", "node": "node2"})
    answer = cluster.post("/v1/endpoints", {"id": "r1", "network": "blue/web", "node": "node1"}, token=BLUE)
    assert answer.status == 409 and answer.error["field"] == "endpoint.id"
    assert "is taken" in answer.error["message"]
    assert not any(word in answer.error["message"] for word in ("red", "node2", "10.9.", "already exists"))
    assert cluster.get("/v1/endpoints/r1", token=BLUE).status == 404
