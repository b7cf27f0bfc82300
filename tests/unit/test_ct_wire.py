"""Conntrack, NAT, conjunction and masked register writes on the wire: the fast encoder against os-ken's
serializer, OVS's decoder, and both reading paths back to the same IR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from os_ken.ofproto import nicira_ext, ofproto_parser
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.openflow import decode, messages
from controller.openflow.encode import _action, _instructions, _tlv, flow_mod_bytes
from controller.openflow.messages import OfflineDatapath
from controller.pipeline.fields import CT_ZONE, NETWORK, SNAT_NEEDED_MARK
from controller.pipeline.ir import Conjunction, Ct, CtClear, Flow, Nat, SetField, ct_state, match
from tests.unit.ct_flows import ct_flows
from tests.unit.test_flow_stats import entry, entry_of, fast, slow

DP = OfflineDatapath()
OFP = DP.ofproto
FLOWS = ct_flows()


def osken_bytes(os_ken_action) -> bytes:
    buf = bytearray()
    os_ken_action.serialize(buf, 0)
    return bytes(buf)


def test_every_flow_reads_back_through_os_kens_parser() -> None:
    for flow in FLOWS:
        mod = flow_mod_bytes(flow, command="add", round_=4)
        back = ofproto_parser.msg(DP, OFP.OFP_VERSION, OFP.OFPT_FLOW_MOD, len(mod), 0, bytes(mod))
        assert decode.decode_flow(back) == (flow, 4), flow


def test_instructions_are_byte_for_byte_the_os_ken_messages() -> None:
    for flow in FLOWS:
        buf = bytearray()
        for instruction in messages.instructions(DP, flow):
            instruction.serialize(buf, len(buf))
        assert _instructions(flow.actions, flow.goto, flow.meter) == bytes(buf), flow


@pytest.mark.parametrize(
    ("action", "os_ken_action"),
    [
        (Conjunction(10, 1, 2), parser.NXActionConjunction(clause=0, n_clauses=2, id_=10)),
        (Conjunction(0xFFFFFFFF, 64, 64), parser.NXActionConjunction(clause=63, n_clauses=64, id_=0xFFFFFFFF)),
        (SetField("reg2", 0x10, 0x30), parser.NXActionRegLoad(nicira_ext.ofs_nbits(4, 5), "reg2", 1)),
        (SNAT_NEEDED_MARK.set(), parser.NXActionRegLoad(nicira_ext.ofs_nbits(3, 3), "reg2", 1)),
        (CtClear(), parser.NXActionCTClear()),
        (Ct(), parser.NXActionCT(0, "", 0, 255, 0, [])),
        (Ct(commit=True, zone=9, table="output"), parser.NXActionCT(1, "", 9, 9, 0, [])),
        (
            Ct(zone=CT_ZONE, table="l3_gateway"),
            parser.NXActionCT(0, "reg0", nicira_ext.ofs_nbits(0, 15), 5, 0, []),
        ),
        (
            Ct(commit=True, nat=Nat("src", 0x0A000001, 0x0A000002), exec_=(SetField("ct_mark", 3),)),
            parser.NXActionCT(
                1,
                "",
                0,
                255,
                0,
                [
                    parser.NXActionNAT(1, range_ipv4_min="10.0.0.1", range_ipv4_max="10.0.0.2"),
                    parser.OFPActionSetField(ct_mark=3),
                ],
            ),
        ),
        (Ct(nat=Nat()), parser.NXActionCT(0, "", 0, 255, 0, [parser.NXActionNAT(0)])),
    ],
)
def test_actions_are_os_kens_bytes(action, os_ken_action) -> None:
    assert _action(action) == osken_bytes(os_ken_action) == osken_bytes(messages.action(DP, action))


def test_nat_with_ports_is_padded_where_os_ken_is_not() -> None:
    """os-ken writes length 32 and 28 bytes for a NAT with an address and a port range; ours pads."""
    nat = Nat("src", 0x0A000001, 0x0A000002, 1024, 2047)
    ours = _action(Ct(commit=True, nat=nat))
    plain = osken_bytes(
        parser.NXActionNAT(
            1, range_ipv4_min="10.0.0.1", range_ipv4_max="10.0.0.2", range_proto_min=1024, range_proto_max=2047
        )
    )
    padded = osken_bytes(messages.action(DP, Ct(commit=True, nat=nat)).actions[0])
    assert int.from_bytes(plain[2:4], "big") == 32 and len(plain) == 28  # the os-ken defect
    assert len(padded) == 32 and padded[:28] == plain and padded[28:] == bytes(4)
    assert padded in ours and len(ours) == int.from_bytes(ours[2:4], "big")


@pytest.mark.parametrize(
    ("field", "value", "mask", "width"),
    [
        ("ct_state", 0x21, 0x21, 4),
        ("ct_zone", 5, None, 2),
        ("ct_mark", 1, 1, 4),
        ("ct_label", 5, 0xFF, 16),
        ("conj_id", 10, None, 4),
        ("tcp_src", 80, None, 2),
        ("udp_src", 53, 0xFFF0, 2),
        ("sctp_dst", 0x100, 0xFF00, 2),
        ("sctp_src", 9, None, 2),
    ],
)
def test_new_match_fields_are_os_kens_tlvs(field: str, value: int, mask: int | None, width: int) -> None:
    buf = bytearray()
    mask_bytes = mask.to_bytes(width, "big") if mask is not None else None
    OFP.oxm_serialize(OFP.oxm_from_user_header(field), value.to_bytes(width, "big"), mask_bytes, buf, 0)
    assert _tlv(field, value, mask) == bytes(buf)


def test_open_vswitch_decodes_every_flow(tmp_path: Path) -> None:
    wire = tmp_path / "ct.bin"
    wire.write_bytes(b"".join(bytes(flow_mod_bytes(f, command="add", round_=1)) for f in FLOWS))
    out = subprocess.run(["ovs-ofctl", "ofp-parse", str(wire)], capture_output=True, text=True, check=True).stdout
    assert "***" not in out and "error" not in out.lower(), out
    assert out.count("OFPT_FLOW_MOD") == len(FLOWS)
    for text in (
        "ct(commit,zone=NXM_NX_REG0[0..15],nat(src=192.168.10.1-192.168.10.4:1024-2047,persistent,random)",
        "exec(set_field:0x1->ct_mark,set_field:0x5->ct_label)",
        "conjunction(11,2/3)",
        "ct_clear",
        "load:0x1->NXM_NX_REG2[4..5]",
        "ct(table=9,zone=NXM_NX_REG0[0..15],nat)",
        "ct_state=+new-inv+trk",
    ):
        assert text in out, text


def test_both_reading_paths_agree_on_every_shape() -> None:
    body = b"".join(entry_of(flow, 6) for flow in FLOWS)
    assert fast(body) == [(flow, 6) for flow in FLOWS] == slow(body)


def test_what_the_ir_cannot_say_is_foreign_on_both_paths() -> None:
    plain = bytes(flow_mod_bytes(Flow("egress_policy", 1, match(eth_type=0x800)), command="add", round_=0))[48:]
    odd = [
        parser.NXActionCT(2, "", 0, 255, 0, []),  # force
        parser.NXActionCT(1, "", 0, 255, 21, []),  # an ALG
        parser.NXActionCT(0, "", 0, 200, 0, []),  # a table beyond the pipeline
        parser.NXActionCT(1, "", 0, 255, 0, [parser.OFPActionOutput(1)]),  # exec output
        parser.NXActionConjunction(clause=0, n_clauses=1, id_=1),  # OVS refuses 1 clause
        parser.NXActionCT(1, "", 0, 255, 0, [parser.NXActionNAT(8, range_ipv4_min="10.0.0.1")]),  # hash
    ]
    body = b""
    for i, action in enumerate(odd):
        inst = bytearray()
        parser.OFPInstructionActions(OFP.OFPIT_APPLY_ACTIONS, [action]).serialize(inst, 0)
        match_part = plain[: len(plain) - len(_instructions((), None, None))]
        body += entry(4, 10 + i, 0, match_part + bytes(inst))
    assert fast(body) == slow(body) == [("foreign", 4, 10 + i) for i in range(len(odd))]


def test_a_zone_field_reads_back_equal_under_either_name() -> None:
    assert Ct(zone=NETWORK) == Ct(zone=CT_ZONE) and hash(Ct(zone=NETWORK)) == hash(Ct(zone=CT_ZONE))
    flow = Flow("egress_policy", 5, match(eth_type=0x800), (Ct(zone=NETWORK, table="l3_gateway"),))
    body = entry_of(flow, 0)
    assert fast(body) == slow(body) == [(flow, 0)]


def test_ct_state_names_its_bits() -> None:
    assert ct_state(trk=True, new=True, est=False) == (0x21, 0x23)
    with pytest.raises(ValueError, match="unknown bit 'old'"):
        ct_state(old=True)


def test_ovs_ofctl_text_of_the_new_actions() -> None:
    from controller.openflow import ofctl

    assert ofctl.action_text(Ct(commit=True, zone=CT_ZONE, nat=Nat("src", 0x0A000001, None, 5000))) == (
        "ct(commit,zone=NXM_NX_REG0[0..15],nat(src=10.0.0.1:5000))"
    )
    assert ofctl.action_text(Ct(zone=3, table="output"), names=True) == "ct(table=output,zone=3)"
    assert ofctl.action_text(Ct(zone=3, table="output")) == "ct(table=9,zone=3)"
    assert ofctl.action_text(Ct(commit=True, exec_=(SetField("ct_mark", 2, 3),))) == (
        "ct(commit,exec(set_field:0x2/0x3->ct_mark))"
    )
    assert ofctl.action_text(Conjunction(5, 2, 3)) == "conjunction(5,2/3)"
    assert ofctl.action_text(CtClear()) == "ct_clear"
    assert ofctl.action_text(SNAT_NEEDED_MARK.set()) == "set_field:0x8/0x8->reg2"
    assert ofctl.match_text(match(ct_state=ct_state(trk=True, inv=False), conj_id=4, ct_zone=2)) == (
        "conj_id=4,ct_state=-inv+trk,ct_zone=2"
    )


@pytest.mark.parametrize(
    ("low", "high", "blocks"),
    [
        (80, 80, [(80, 0xFFFF)]),
        (0, 65535, [(0, 0)]),
        (1024, 2047, [(1024, 0xFC00)]),
        (1000, 1003, [(1000, 0xFFFC)]),
        (1, 6, [(1, 0xFFFF), (2, 0xFFFE), (4, 0xFFFE), (6, 0xFFFF)]),
    ],
)
def test_port_ranges_become_the_fewest_masked_matches(low: int, high: int, blocks: list) -> None:
    from controller.pipeline.ir import port_range

    assert port_range(low, high) == blocks
    covered = {p for value, mask in blocks for p in range(65536) if p & mask == value}
    assert covered == set(range(low, high + 1))
