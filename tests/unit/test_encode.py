"""The fast flow-mod encoder says exactly what os-ken's messages say: read back by os-ken's own parser."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_parser

from controller.openflow import decode
from controller.openflow.encode import (
    RawMessage,
    _tlv,
    bundle_add_bytes,
    bundled_flow_mod_bytes,
    flow_mod_bytes,
    raw_flow_mod,
)
from controller.openflow.messages import OfflineDatapath
from controller.pipeline.compile import Compiler
from controller.pipeline.tables import PIPELINE
from tests.unit.topologies import SHAPES, example

DP = OfflineDatapath()
OFP = DP.ofproto


def parse(buf: bytes | bytearray) -> ofproto_parser.MsgBase:
    return ofproto_parser.msg(DP, OFP.OFP_VERSION, OFP.OFPT_FLOW_MOD, len(buf), 0, bytes(buf))


@pytest.mark.parametrize("shape", ["example", "vlan-ring", "vlan-uplinks", "vxlan-only"])
def test_adds_and_deletes_read_back_as_the_flow(shape: str) -> None:
    model = example() if shape == "example" else SHAPES[shape](2)
    for state in Compiler(model).compile_all().values():
        for flow in state.flows():
            add = parse(flow_mod_bytes(flow, command="add", round_=9))
            assert add.command == OFP.OFPFC_ADD and decode.decode_flow(add) == (flow, 9)
            delete = parse(flow_mod_bytes(flow, command="delete", round_=9))
            assert (delete.command, delete.table_id, delete.priority) == (
                OFP.OFPFC_DELETE_STRICT,
                PIPELINE.table_id(flow.table),
                flow.priority,
            )
            assert decode.decode_match(delete.match) == flow.match and not delete.instructions
            assert (delete.out_port, delete.out_group) == (OFP.OFPP_ANY, OFP.OFPG_ANY)


def test_a_raw_message_rides_in_a_bundle_with_the_bundle_xid() -> None:
    flow = next(iter(Compiler(example()).compile_all()["node1"].flows()))
    raw = raw_flow_mod(flow, command="add", round_=1)
    add = DP.ofproto_parser.ONFBundleAddMsg(DP, 7, OFP.ONF_BF_ATOMIC, raw, [])
    DP.set_xid(add)
    add.serialize()
    inner = bytes(add.buf[-len(raw.buf) :])
    assert inner == bytes(raw.buf) and ofproto_parser.header(inner)[3] == add.xid  # OF1.3 bundle rule
    assert decode.decode_flow(parse(inner)) == (flow, 1)


def test_set_xid_writes_the_header() -> None:
    flow = next(iter(Compiler(example()).compile_all()["node1"].flows()))
    raw = RawMessage(flow_mod_bytes(flow, command="add", round_=0))
    raw.set_xid(0xABCDEF)
    assert ofproto_parser.header(bytes(raw.buf)) == (OFP.OFP_VERSION, OFP.OFPT_FLOW_MOD, len(raw.buf), 0xABCDEF)


def test_open_vswitch_accepts_every_encoded_flow_mod(tmp_path) -> None:
    """OVS's own decoder, which also checks prerequisites (eth_type before arp_*), reads them all."""
    import subprocess

    flows = [f for state in Compiler(example()).compile_all().values() for f in state.flows()]
    wire = tmp_path / "flow-mods.bin"
    wire.write_bytes(b"".join(bytes(flow_mod_bytes(f, command="add", round_=2)) for f in flows))
    result = subprocess.run(["ovs-ofctl", "ofp-parse", str(wire)], capture_output=True, text=True, check=True)
    assert "***" not in result.stdout and "error" not in result.stdout.lower(), result.stdout[:2000]
    assert result.stdout.count("OFPT_FLOW_MOD") == len(flows)


def test_bundle_adds_are_byte_for_byte_os_kens() -> None:
    for flow in Compiler(example()).compile_all()["node1"].flows():
        raw = RawMessage(flow_mod_bytes(flow, command="add", round_=3))
        add = DP.ofproto_parser.ONFBundleAddMsg(DP, 11, OFP.ONF_BF_ATOMIC | OFP.ONF_BF_ORDERED, raw, [])
        DP.set_xid(add)
        add.serialize()
        mine = bundle_add_bytes(
            11, OFP.ONF_BF_ATOMIC | OFP.ONF_BF_ORDERED, flow_mod_bytes(flow, command="add", round_=3), add.xid
        )
        assert mine == bytes(add.buf)


@pytest.mark.parametrize("command", ["add", "delete"])
def test_a_bundled_flow_mod_is_the_bundle_add_of_the_flow_mod(command: str) -> None:
    flags = OFP.ONF_BF_ATOMIC | OFP.ONF_BF_ORDERED
    for xid, flow in enumerate(Compiler(example()).compile_all()["node1"].flows(), start=70000):
        inner = flow_mod_bytes(flow, command=command, round_=5)
        expected = bundle_add_bytes(12, flags, inner, xid)
        assert bundled_flow_mod_bytes(flow, command=command, round_=5, bundle_id=12, flags=flags, xid=xid) == expected


@pytest.mark.parametrize(
    ("field", "value", "mask", "width"),
    [
        ("in_port", 5, None, 4),
        ("eth_dst", 0x0200AABBCCDD, None, 6),
        ("eth_dst", 0, 1 << 40, 6),
        ("reg0", 7, None, 4),
        ("reg2", 0, 1, 4),
        ("tun_ipv4_dst", 0x0A000001, None, 4),
        ("tunnel_id", 5001, None, 8),
        ("vlan_vid", 0x1065, None, 2),
        ("arp_tpa", 0x0A010002, None, 4),
    ],
)
def test_oxm_tlvs_are_os_kens(field: str, value: int, mask: int | None, width: int) -> None:
    buf = bytearray()
    mask_bytes = mask.to_bytes(width, "big") if mask is not None else None
    OFP.oxm_serialize(OFP.oxm_from_user_header(field), value.to_bytes(width, "big"), mask_bytes, buf, 0)
    assert _tlv(field, value, mask) == bytes(buf)


@pytest.mark.parametrize("shape", ["example", "vlan-ring"])
def test_instructions_are_byte_for_byte_os_kens(shape: str) -> None:
    from controller.openflow.encode import _instructions
    from controller.openflow.messages import instructions

    model = example() if shape == "example" else SHAPES[shape](1)
    for state in Compiler(model).compile_all().values():
        for flow in state.flows():
            buf = bytearray()
            for instruction in instructions(DP, flow):
                instruction.serialize(buf, len(buf))
            assert _instructions(flow.actions, flow.goto, flow.meter) == bytes(buf), flow
