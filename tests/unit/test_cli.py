"""tenetctl, in-process and as a real process: output, exit statuses and one-line errors.

ovs-ofctl is part of the test environment on purpose: the numeric compile output must be real ovs-ofctl
input, and a test that skipped without it would prove nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import main
from controller.pipeline.compile import Compiler
from controller.pipeline.tables import PIPELINE
from topology.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "cluster.yaml")
CLI = [sys.executable, "-m", "controller.cli"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def run_exit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """For argparse paths, which leave by SystemExit."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int), code  # argparse exits with a number
    return code, out, err


def process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_error(status: int, out: str, err: str, *needles: str) -> None:
    assert status == 1
    assert out == ""
    assert err.startswith("tenetctl: ")
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def bad_vlan_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "nodes:\n"
        "  - {name: node1, tunnel_ip: 192.168.50.1}\n"
        "tenants:\n"
        "  - name: blue\n"
        "    networks:\n"
        "      - {name: db, encap: vlan, vlan: 5000, subnet: 10.1.1.0/24}\n",
        encoding="utf-8",
    )
    return path


# --- check -----------------------------------------------------------------------------------------


def test_check_good_file_prints_ok_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "check", EXAMPLE)
    assert (status, err) == (0, "")
    assert out == f"{EXAMPLE}: ok: 2 nodes, 2 tenants, 3 networks, 6 endpoints, 1 QoS profiles\n"


def test_check_bad_file_names_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = bad_vlan_file(tmp_path)
    status, out, err = run(capsys, "check", str(path))
    assert_one_line_error(status, out, err, str(path), "tenants[0].networks[0].vlan", "5000")


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    status, out, err = run(capsys, "check", str(path))
    assert_one_line_error(status, out, err, str(path), "cannot read")


def test_check_bad_yaml_syntax(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("nodes: [\n", encoding="utf-8")
    status, out, err = run(capsys, "check", str(path))
    assert_one_line_error(status, out, err, str(path))


# --- compile ---------------------------------------------------------------------------------------


def test_compile_prints_meters_groups_then_named_flows(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "compile", EXAMPLE, "--node", "node1")
    assert (status, err) == (0, "")
    lines = [line for line in out.splitlines() if line]
    kinds = ["meter" if x.startswith("meter=") else "group" if x.startswith("group_id=") else "flow" for x in lines]
    assert kinds == sorted(kinds, key=["meter", "group", "flow"].index), "meters, then groups, then flows"
    assert kinds.count("meter") == 2  # the example's QoS profile on blue/web's node1 endpoint: egress and ingress
    assert kinds.count("group") > 0
    flows = [line for line, kind in zip(lines, kinds, strict=True) if kind == "flow"]
    state = Compiler(load_file(EXAMPLE)).compile_node("node1")
    assert len(flows) == state.flow_count()
    tables = {line.split("table=", 1)[1].split(",", 1)[0] for line in flows}
    assert tables == {t.name for t in PIPELINE.tables}  # every table has at least its miss flow
    assert "goto_table:l2" in out


def test_compile_numeric_output_is_accepted_by_ovs_ofctl(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "compile", EXAMPLE, "--node", "node2", "--numeric")
    assert (status, err) == (0, "")
    # parse-flows reads flows only; meters and groups are add-meter / add-group input.
    flows = [line for line in out.splitlines() if line and not line.startswith(("meter=", "group_id="))]
    assert flows and all("table=" in line for line in flows)
    assert not any(f"table={t.name}," in line for t in PIPELINE.tables for line in flows)
    path = tmp_path / "flows.txt"
    path.write_text("\n".join(flows) + "\n", encoding="utf-8")
    parsed = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "parse-flows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.count("OFPT_FLOW_MOD") == len(flows)


def test_compile_unknown_node(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "compile", EXAMPLE, "--node", "node9")
    assert_one_line_error(status, out, err, "node9", "node1, node2")


def test_compile_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "compile", str(bad_vlan_file(tmp_path)), "--node", "node1")
    assert_one_line_error(status, out, err, "tenants[0].networks[0].vlan")


# --- trace -----------------------------------------------------------------------------------------


def test_trace_delivered(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", "tcp", "--dport", "80")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "trace b1 -> b2 (tcp dport 80)"
    assert lines[-1] == "delivered to b2"
    # b1 is on node1 and b2 on node2: the path crosses the tunnel.
    assert lines[1].split()[:2] == ["node1", "classify"]
    assert any(line.split()[:2] == ["node1", "wire"] for line in lines)
    assert any(line.split()[:2] == ["node2", "output"] for line in lines)


def test_trace_across_tenants_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    # r1 has b1's own IP in another tenant: never reachable from blue.
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "r1")
    assert (status, err) == (0, "")
    last = out.splitlines()[-1]
    assert last.startswith("dropped: ")
    assert len(last) > len("dropped: ")
    assert "delivered" not in out


def test_a_trace_dropped_by_a_policy_names_the_isolation_in_its_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    netpol_example = str(ROOT / "examples" / "netpol.yaml")
    args = ("trace", netpol_example, "--src", "y-b", "--dst", "x-a", "--proto", "tcp", "--dport", "81")
    status, out, err = run(capsys, *args)
    assert (status, err) == (0, "")
    isolated = "x-a is isolated for ingress by x/allow-from-y and none of their rules allows it"
    assert out.splitlines()[-3:] == [
        f"dropped: NetworkPolicy: {isolated}",
        "policy: egress: allowed by y/egress-not-z rule 0",
        f"policy: ingress: dropped: {isolated}",
    ]
    status, out, err = run(capsys, *args, "--json")
    assert json.loads(out)["reason"] == f"NetworkPolicy: {isolated}"


def test_trace_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--json")
    assert (status, err) == (0, "")
    result = json.loads(out)
    assert {"verdict", "delivered_to", "path"} <= result.keys()
    assert result["verdict"] == "delivered"
    assert result["delivered_to"] == ["b2"]
    assert isinstance(result["path"], list) and result["path"]
    assert all(isinstance(hop, dict) and {"node", "table"} <= hop.keys() for hop in result["path"])
    assert (result["path"][0]["node"], result["path"][0]["table"]) == ("node1", "classify")
    assert result["path"][-1]["node"] == "node2"

    status, out, _ = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "r1", "--json")
    dropped = json.loads(out)
    assert status == 0
    assert (dropped["verdict"], dropped["delivered_to"]) == ("dropped", [])
    assert dropped["reason"]


def test_trace_arp_is_answered_to_the_sender(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", "arp")
    assert (status, err) == (0, "")
    assert out.splitlines()[-1] == "answered by the switch's ARP responder: reply delivered to b1"
    # Answered by node1's ARP responder: the request never crosses to node2.
    assert "node2" not in out


@pytest.mark.parametrize(
    "spoof",
    [("--spoof-ip", "10.1.0.99"), ("--spoof-mac", "02:00:00:00:09:09")],
    ids=["ip", "mac"],
)
@pytest.mark.parametrize("proto", ["icmp", "arp"])
def test_trace_spoofed_source_is_dropped_by_port_security(
    capsys: pytest.CaptureFixture[str], spoof: tuple[str, str], proto: str
) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", proto, *spoof, "--json")
    assert (status, err) == (0, "")
    result = json.loads(out)
    assert result["verdict"] == "dropped"
    assert "port security" in result["reason"]
    assert result["path"][-1]["table"] == "port_security"


def test_trace_spoofed_text_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--spoof-ip", "10.1.0.99")
    assert status == 0
    last = out.splitlines()[-1]
    assert last.startswith("dropped: ") and "port security" in last


@pytest.mark.parametrize("option", ["--src", "--dst"])
def test_trace_unknown_endpoint(capsys: pytest.CaptureFixture[str], option: str) -> None:
    args = {"--src": "b1", "--dst": "b2", option: "nobody"}
    status, out, err = run(capsys, "trace", EXAMPLE, *[x for pair in args.items() for x in pair])
    assert_one_line_error(status, out, err, option, "nobody")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--spoof-ip", "10.1.0.999"),
        ("--spoof-ip", "not-an-ip"),
        ("--spoof-mac", "zz"),
        ("--spoof-mac", "01:00:00:00:00:01"),
    ],
)
def test_trace_bad_spoof_value(capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", option, value)
    assert_one_line_error(status, out, err, option)


@pytest.mark.parametrize(
    "args", [("--dport", "80"), ("--proto", "tcp", "--dport", "0"), ("--proto", "udp", "--dport", "65536")]
)
def test_trace_bad_dport(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    status, out, err = run(capsys, "trace", EXAMPLE, "--src", "b1", "--dst", "b2", *args)
    assert_one_line_error(status, out, err, "--dport")


# --- argparse and help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("check",),
        ("compile", EXAMPLE),
        ("trace", EXAMPLE, "--src", "b1"),
        ("trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", "sctp"),
        ("trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", "tcp", "--dport", "http"),
    ],
    ids=["nothing", "unknown-command", "check-no-file", "compile-no-node", "trace-no-dst", "bad-proto", "bad-dport"],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    status, out, err = run_exit(capsys, *args)
    assert status == 2
    assert out == ""
    assert "usage: tenetctl" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "usage", "extra"),
    [
        (("qos", "detach", "gold", "blue/web"), "usage: tenetctl qos detach ", "blue/web"),  # as `qos attach NAME T`
        (("tenant", "show", "blue", "red"), "usage: tenetctl tenant show ", "red"),
        (("compile", EXAMPLE, "--node", "node1", "more"), "usage: tenetctl compile ", "more"),
        (("flows", "node1", "--bogus"), "usage: tenetctl flows ", "--bogus"),
    ],
)
def test_a_command_given_words_it_does_not_take_prints_its_own_usage(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], usage: str, extra: str
) -> None:
    status, out, err = run_exit(capsys, *args)
    assert (status, out) == (2, "")
    assert err.startswith(usage), err  # the command's usage, not tenetctl's COMMAND ...
    prog = usage.removeprefix("usage: ").strip()
    assert err.splitlines()[-1] == f"{prog}: error: unrecognized arguments: {extra}"


def test_lab_verbs_given_words_they_do_not_take_print_their_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from lab import cli as lab_cli

    with pytest.raises(SystemExit) as exit_:
        lab_cli.main(["pod", "rm", "b1", "b2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: tenet-lab pod rm "), err
    assert err.splitlines()[-1] == "tenet-lab pod rm: error: unrecognized arguments: b2"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((), ("check", "compile", "trace")),
        (("check",), ("FILE",)),
        (("compile",), ("FILE", "--node", "--numeric")),
        (("trace",), ("FILE", "--src", "--dst", "--proto", "--dport", "--spoof-ip", "--spoof-mac", "--json")),
    ],
)
def test_help_mentions_the_options(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needles: tuple[str]
) -> None:
    status, out, err = run_exit(capsys, *args, "--help")
    assert (status, err) == (0, "")
    for needle in needles:
        assert needle in out, needle


# --- as a real process ------------------------------------------------------------------------------


def test_console_entry_point_check_and_trace() -> None:
    checked = process("check", EXAMPLE)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout.startswith(f"{EXAMPLE}: ok: 2 nodes")

    traced = process("trace", EXAMPLE, "--src", "b1", "--dst", "b2", "--proto", "tcp", "--dport", "80")
    assert (traced.returncode, traced.stderr) == (0, "")
    assert traced.stdout.splitlines()[-1] == "delivered to b2"


def test_console_entry_point_errors() -> None:
    failed = process("compile", EXAMPLE, "--node", "node9")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr

    usage = process("trace", EXAMPLE)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr

    helped = process("--help")
    assert helped.returncode == 0
    assert "compile" in helped.stdout


def test_compile_into_a_closed_pipe_is_silent() -> None:
    # Like `tenetctl compile ... | head -1`, without the race: the reader is gone before the first write,
    # and the output is larger than a stdout buffer, so the write fails inside print().
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [*CLI, "compile", EXAMPLE, "--node", "node1"],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode != 0
