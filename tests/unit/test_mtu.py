"""MTU rules: one MTU per tenant, network MTUs within what every node's underlay and uplink carry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from controller import records
from topology.errors import ValidationError
from topology.model import Model


def jumbo() -> Model:
    """Two nodes on a 9000-byte underlay, one of them with a 9000-byte uplink and one with 4000."""
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1", uplink="eth1", underlay_mtu=9000, uplink_mtu=9000)
    model.add_node("n2", tunnel_ip="192.168.0.2", uplink="eth1", underlay_mtu=9000, uplink_mtu=4000)
    model.add_tenant("blue")
    return model


def refused(call: Callable[[], object], path: str, words: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.path == path and words in caught.value.message, caught.value
    return caught.value


def test_the_default_is_the_same_for_vlan_and_vxlan_and_follows_the_tenant() -> None:
    model = Model()
    model.add_tenant("blue")
    model.add_tenant("red")
    model.add_network("blue", "db", encap="vlan", segment=10, subnet="10.1.1.0/24")
    model.add_network("blue", "web", encap="vxlan", segment=10, subnet="10.1.0.0/24")
    model.add_network("red", "web", encap="vxlan", segment=11, subnet="10.1.0.0/24", mtu=1400)
    model.add_network("red", "db", encap="vlan", segment=11, subnet="10.1.1.0/24")
    assert {k: n.mtu for k, n in model.networks.items()} == {
        "blue/db": 1450,  # no node yet: a 1500-byte underlay less VXLAN's 50
        "blue/web": 1450,
        "red/web": 1400,
        "red/db": 1400,  # the tenant's MTU
    }


def test_the_default_comes_from_the_nodes() -> None:
    model = jumbo()
    model.add_network("blue", "web", encap="vxlan", segment=10, subnet="10.1.1.0/24")
    assert model.networks["blue/web"].mtu == 4000  # n2's uplink: a VLAN network of blue must fit too
    model.add_node("n3", tunnel_ip="192.168.0.3", underlay_mtu=5000)
    model.add_tenant("red")
    model.add_network("red", "web", encap="vxlan", segment=11, subnet="10.1.1.0/24")
    assert model.networks["red/web"].mtu == 4000
    small = Model()
    small.add_node("n1", tunnel_ip="192.168.0.1", uplink="eth1", underlay_mtu=2000, uplink_mtu=9000)
    small.add_tenant("blue")
    small.add_network("blue", "db", encap="vlan", segment=10, subnet="10.1.1.0/24")
    assert small.networks["blue/db"].mtu == 1950  # the underlay less 50, for VLAN too


def test_an_explicit_mtu_must_equal_the_tenants() -> None:
    model = jumbo()
    model.add_network("blue", "web", encap="vxlan", segment=5, subnet="10.1.0.0/24", mtu=3000)
    error = refused(
        lambda: model.add_network("blue", "db", encap="vlan", segment=5, subnet="10.1.1.0/24", mtu=3500),
        "network.mtu",
        "MTU 3500 differs from 3000, the MTU of network 'blue/web'",
    )
    assert error.conflict and list(model.networks) == ["blue/web"]


def test_a_tenants_mtu_too_large_for_vxlan_says_where_it_comes_from() -> None:
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1", underlay_mtu=1500)
    model.add_tenant("blue")
    model.add_network("blue", "web", encap="vlan", segment=5, subnet="10.1.0.0/24", mtu=1500)
    error = refused(
        lambda: model.add_network("blue", "db", encap="vxlan", segment=5, subnet="10.1.1.0/24"),
        "network.mtu",
        "the networks of a tenant share one MTU, 1500, set by its first network 'blue/web'; a vxlan network carries"
        " at most 1450",
    )
    assert error.conflict and "outside" not in str(error) and list(model.networks) == ["blue/web"]


@pytest.mark.parametrize(
    ("encap", "mtu", "words"),
    [
        ("vxlan", 8951, "MTU 8951 is outside 576..8950 (the smallest node underlay MTU is 9000"),
        ("vlan", 4001, "MTU 4001 is outside 576..4000 (the smallest node uplink MTU)"),
        ("vxlan", 575, "MTU 575 is outside 576..8950"),
    ],
)
def test_a_network_mtu_must_fit_every_node(encap: str, mtu: int, words: str) -> None:
    model = jumbo()
    refused(
        lambda: model.add_network("blue", "n", encap=encap, segment=5, subnet="10.1.0.0/24", mtu=mtu),
        "network.mtu",
        words,
    )
    assert model.networks == {}


def test_9000_on_a_1500_fabric_is_refused() -> None:
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.0.1", underlay_mtu=1500)
    model.add_tenant("blue")
    refused(
        lambda: model.add_network("blue", "web", encap="vxlan", segment=5, subnet="10.1.0.0/24", mtu=9000),
        "network.mtu",
        "MTU 9000 is outside 576..1450",
    )
    refused(
        lambda: model.add_network("blue", "db", encap="vlan", segment=5, subnet="10.1.0.0/24", mtu=9000),
        "network.mtu",
        "MTU 9000 is outside 576..1500",
    )


def test_a_node_too_small_for_a_network_is_refused_and_leaves_nothing() -> None:
    model = jumbo()
    model.add_network("blue", "web", encap="vxlan", segment=5, subnet="10.1.0.0/24", mtu=3000)
    before = model.revision
    error = refused(
        lambda: model.add_node("n3", tunnel_ip="192.168.0.3", underlay_mtu=3000),
        "node.underlay_mtu",
        "MTU 3000 is too small for network 'blue/web' (MTU 3000 over VXLAN needs 3050)",
    )
    assert error.conflict and "n3" not in model.nodes and model.revision == before
    refused(
        lambda: model.add_node("n3", tunnel_ip="192.168.0.3", underlay_mtu=100),
        "node.underlay_mtu",
        "MTU 100 is outside 576..65535",
    )
    model.add_node("n3", tunnel_ip="192.168.0.3", underlay_mtu=3050)  # just enough
    model.add_tenant("red")
    model.add_network("red", "db", encap="vlan", segment=7, subnet="10.1.0.0/24", mtu=2000)
    refused(
        lambda: model.add_node("n4", tunnel_ip="192.168.0.4", uplink="eth1", underlay_mtu=9000, uplink_mtu=1999),
        "node.uplink_mtu",
        "MTU 1999 is too small for network 'red/db' (MTU 2000)",
    )


def test_node_mtus_survive_the_store_and_old_records_restore() -> None:
    model = jumbo()
    docs = dict(records.all_records(model))
    assert (docs[records.key("nodes", "n2")]["underlay_mtu"], docs[records.key("nodes", "n2")]["uplink_mtu"]) == (
        9000,
        4000,
    )
    restored = Model()
    for key, doc in records.all_records(model):
        kind = key.split("/")[-2]
        if kind == "nodes":
            records.restore_one(restored, kind, doc, path=key)
    assert restored.nodes == model.nodes
    old = {"name": "n9", "tunnel_ip": "192.168.0.9", "uplink": None, "datapath_id": 9}  # written before MTUs
    records.restore_one(restored, "nodes", old, path="nodes/n9")
    assert (restored.nodes["n9"].underlay_mtu, restored.nodes["n9"].uplink_mtu) == (1500, None)


@pytest.mark.parametrize(("encap", "mtu"), [("vxlan", 8951), ("vlan", 9001)])
def test_no_network_mtu_is_above_the_jumbo_ceiling_however_large_the_nodes(encap: str, mtu: int) -> None:
    model = Model()
    model.add_node("n1", tunnel_ip="192.168.1.1", underlay_mtu=65535, uplink_mtu=65535)
    model.add_tenant("t")
    with pytest.raises(ValidationError, match="jumbo-frame ceiling of 9000 bytes") as caught:
        model.add_network("t", "n", encap=encap, segment=5, subnet="10.0.0.0/24", mtu=mtu)
    assert caught.value.path == "network.mtu"
    model.add_network("t", "n", encap="vxlan", segment=5, subnet="10.0.0.0/24")
    assert model.networks["t/n"].mtu == 8950


@pytest.mark.parametrize("field", ["underlay_mtu", "uplink_mtu"])
def test_a_node_mtu_is_at_most_the_largest_ipv4_datagram(field: str) -> None:
    model = Model()
    mtu = {field: 65536}
    with pytest.raises(ValidationError, match=r"outside 576\.\.65535") as caught:
        model.add_node(
            "n1", tunnel_ip="192.168.1.1", underlay_mtu=mtu.get("underlay_mtu"), uplink_mtu=mtu.get("uplink_mtu")
        )
    assert caught.value.path == f"node.{field}"
