"""The fast flow-mod encoder says exactly what os-ken's messages say: read back by os-ken's own parser."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_parser

from controller.openflow import decode
from controller.openflow.encode import RawMessage, flow_mod_bytes, raw_flow_mod
from controller.openflow.messages import OfflineDatapath
from controller.pipeline.compile import Compiler
from controller.pipeline.tables import PIPELINE
from tests.unit.topologies import SHAPES, example

DP = OfflineDatapath()
OFP = DP.ofproto


def parse(buf: bytes):
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
