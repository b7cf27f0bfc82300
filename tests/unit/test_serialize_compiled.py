"""Everything the compiler emits serializes through os-ken, for every command, and OVS decodes it.

test_openflow.py covers a representative set of hand-written flows; this covers what the compiler really
produces for whole topologies: the VXLAN/uplink example and a VLAN ring fabric.
"""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_parser import MsgBase

from controller.openflow import messages
from controller.openflow.messages import Command, OfflineDatapath
from controller.pipeline import cookies
from controller.pipeline.compile import Compiler
from controller.pipeline.state import NodeState
from controller.pipeline.tables import PIPELINE
from topology.loader import load_file
from topology.model import Model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cluster.yaml"
RING = [("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s4", "s1")]
COMMANDS: tuple[Command, ...] = ("add", "modify", "delete")
FLOW_COMMANDS = {"add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY_STRICT, "delete": ofp.OFPFC_DELETE_STRICT}
GROUP_COMMANDS = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}
METER_COMMANDS = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}

# Bodies after the 8-byte header (ofproto_v1_3 pack strings without their header and trailing padding).
FLOW_MOD_BODY = "!QQBBHHHIIIH"  # cookie, cookie_mask, table_id, command, idle, hard, priority, buffer, out_port, ...
GROUP_MOD_BODY = "!HBxI"  # command, type, pad, group_id
METER_MOD_BODY = "!HHI"  # command, flags, meter_id


def ring_model() -> Model:
    """Four nodes in a VLAN ring, two tenants with the same subnet, routing within blue, QoS on red."""
    model = Model()
    for i, name in enumerate(("s1", "s2", "s3", "s4"), start=1):
        model.add_node(name, tunnel_ip=f"10.9.0.{i}")
    for a, b in RING:
        model.add_link(a, f"to-{b}", b, f"to-{a}")
    model.add_tenant("blue")
    model.add_tenant("red")
    model.add_network("blue", "web", encap="vlan", segment=101, subnet="10.1.0.0/24")
    model.add_network("blue", "db", encap="vlan", segment=102, subnet="10.1.1.0/24")
    model.add_network("red", "web", encap="vlan", segment=201, subnet="10.1.0.0/24")
    for endpoint_id, network, node in (
        ("b1", "blue/web", "s1"),
        ("b2", "blue/web", "s3"),
        ("b3", "blue/db", "s2"),
        ("r1", "red/web", "s1"),
        ("r2", "red/web", "s4"),
    ):
        model.add_endpoint(endpoint_id, network=network, node=node)
    model.add_qos("gold", rate_kbps=10_000, burst_kb=1_000)
    model.attach_qos("gold", "red/web")
    return model


MODELS = {"example": lambda: load_file(EXAMPLE), "ring": ring_model}


@pytest.fixture(scope="module", params=sorted(MODELS))
def compiled(request: pytest.FixtureRequest) -> dict[str, NodeState]:
    return Compiler(MODELS[request.param]()).compile_all()


def serialized(msg: MsgBase, msg_type: int) -> bytes:
    msg.serialize()
    buf = bytes(msg.buf)
    assert buf, msg
    version, kind, length, _xid = struct.unpack_from("!BBHI", buf)
    assert (version, kind) == (ofp.OFP_VERSION, msg_type)
    assert length == len(buf), (length, len(buf), msg)
    assert length % 8 == 0, msg  # every OpenFlow 1.3 structure is padded to 8 bytes
    return buf


def test_models_cover_flows_groups_and_meters(compiled: dict[str, NodeState]) -> None:
    # Guards the other tests against passing on an empty compile.
    assert all(state.flow_count() > len(PIPELINE.tables) for state in compiled.values())
    assert all(state.groups() for state in compiled.values())
    assert any(state.meters() for state in compiled.values())
    assert any(flow.meter is not None for state in compiled.values() for flow in state.flows())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flow_serializes(compiled: dict[str, NodeState], command: Command) -> None:
    dp = OfflineDatapath()
    for state in compiled.values():
        for flow in state.flows():
            buf = serialized(messages.flow_mod(dp, flow, command=command), ofp.OFPT_FLOW_MOD)
            cookie, mask, table_id, code, _idle, _hard, priority, *_ = struct.unpack_from(FLOW_MOD_BODY, buf, 8)
            assert (cookie, mask, table_id, code, priority) == (
                flow.cookie,
                0,
                PIPELINE.table_id(flow.table),
                FLOW_COMMANDS[command],
                flow.priority,
            )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flow_parses_back(compiled: dict[str, NodeState], command: Command) -> None:
    dp = OfflineDatapath()
    for state in compiled.values():
        for flow in state.flows():
            buf = serialized(messages.flow_mod(dp, flow, command=command), ofp.OFPT_FLOW_MOD)
            version, kind, length, xid = struct.unpack_from("!BBHI", buf)
            back = parser.OFPFlowMod.parser(dp, version, kind, length, xid, buf)
            assert len(back.match.fields) == len(flow.match), flow
            kinds = [type(i) for i in back.instructions]
            if command == "delete":
                assert kinds == []  # a strict delete names the flow, not what it does
                continue
            expected = []
            if flow.meter is not None:
                expected.append(parser.OFPInstructionMeter)
            if flow.actions:
                expected.append(parser.OFPInstructionActions)
            if flow.goto is not None:
                expected.append(parser.OFPInstructionGotoTable)
            assert kinds == expected, flow
            for inst in back.instructions:
                if isinstance(inst, parser.OFPInstructionActions):
                    assert len(inst.actions) == len(flow.actions), flow
                elif isinstance(inst, parser.OFPInstructionGotoTable):
                    assert flow.goto is not None and inst.table_id == PIPELINE.table_id(flow.goto)
                elif isinstance(inst, parser.OFPInstructionMeter):
                    assert inst.meter_id == flow.meter


@pytest.mark.parametrize("command", COMMANDS)
def test_every_group_serializes(compiled: dict[str, NodeState], command: Command) -> None:
    dp = OfflineDatapath()
    for state in compiled.values():
        for group in state.groups().values():
            buf = serialized(messages.group_mod(dp, group, command=command), ofp.OFPT_GROUP_MOD)
            code, type_, group_id = struct.unpack_from(GROUP_MOD_BODY, buf, 8)
            assert (code, type_, group_id) == (GROUP_COMMANDS[command], ofp.OFPGT_ALL, group.group_id)
            if command == "delete":
                assert len(buf) == ofp.OFP_GROUP_MOD_SIZE
            else:
                assert len(buf) >= ofp.OFP_GROUP_MOD_SIZE + len(group.buckets) * ofp.OFP_BUCKET_SIZE


@pytest.mark.parametrize("command", COMMANDS)
def test_every_meter_serializes(compiled: dict[str, NodeState], command: Command) -> None:
    dp = OfflineDatapath()
    for state in compiled.values():
        for meter in state.meters().values():
            buf = serialized(messages.meter_mod(dp, meter, command=command), ofp.OFPT_METER_MOD)
            code, flags, meter_id = struct.unpack_from(METER_MOD_BODY, buf, 8)
            assert (code, flags, meter_id) == (
                METER_COMMANDS[command],
                ofp.OFPMF_KBPS | ofp.OFPMF_BURST,
                meter.meter_id,
            )
            bands = 0 if command == "delete" else 1
            assert len(buf) == ofp.OFP_METER_MOD_SIZE + bands * ofp.OFP_METER_BAND_DROP_SIZE
            if bands:
                _type, _len, rate, burst = struct.unpack_from("!HHII", buf, ofp.OFP_METER_MOD_SIZE)
                assert (rate, burst) == (meter.rate_kbps, meter.burst_kb)


@pytest.mark.parametrize("round_", [1, 0x2A, 0xFF])
@pytest.mark.parametrize("command", COMMANDS)
def test_round_shows_in_the_serialized_cookie(compiled: dict[str, NodeState], round_: int, command: Command) -> None:
    dp = OfflineDatapath()
    for state in compiled.values():
        for flow in state.flows():
            buf = serialized(messages.flow_mod(dp, flow, command=command, round_=round_), ofp.OFPT_FLOW_MOD)
            (cookie,) = struct.unpack_from("!Q", buf, 8)
            assert cookie == cookies.with_round(flow.cookie, round_)
            assert cookie >> cookies.ROUND_SHIFT == round_
            assert cookie & ~cookies.ROUND_MASK == flow.cookie  # feature and object id are untouched
            assert cookies.split(cookie)[1] is not None  # still recognisably ours


def test_compiled_cookies_leave_the_round_to_the_sender(compiled: dict[str, NodeState]) -> None:
    assert all(flow.cookie & cookies.ROUND_MASK == 0 for state in compiled.values() for flow in state.flows())


def test_ovs_decodes_every_compiled_message(compiled: dict[str, NodeState], tmp_path: Path) -> None:
    # ovs-ofctl ofp-parse decodes raw OpenFlow: it catches what os-ken builds but OVS would reject.
    for node, state in compiled.items():
        dp = OfflineDatapath()
        msgs = [messages.meter_mod(dp, m) for m in state.meters().values()]
        msgs += [messages.group_mod(dp, g) for g in state.groups().values()]
        msgs += [messages.flow_mod(dp, f, round_=3) for f in state.flows()]
        path = tmp_path / f"{node}.bin"
        with path.open("wb") as out:
            for msg in msgs:
                dp.send_msg(msg)
                out.write(msg.buf)
        done = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "ofp-parse", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        heads = re.findall(r"^(OFPT_\w+) \(OF1\.3\)", done.stdout, flags=re.MULTILINE)
        assert (
            heads
            == ["OFPT_METER_MOD"] * len(state.meters())
            + ["OFPT_GROUP_MOD"] * len(state.groups())
            + ["OFPT_FLOW_MOD"] * state.flow_count()
        ), node
        assert "***" not in done.stdout and "error" not in done.stdout.lower(), done.stdout
        assert done.stdout.count("cookie:0x3") == state.flow_count()  # round 3 reached OVS in every cookie
