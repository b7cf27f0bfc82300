"""Options every verb takes go before or after the verb, for tenet-lab and tenet-agent (tenetctl: test_cli_live).

Each CLI runs for real: tenet-lab reads its state directory, tenet-agent writes the plugin's conflist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import cli as lab_cli

ROOT = Path(__file__).resolve().parents[2]


def test_lab_state_dir_before_or_after_the_verb(  # root, as tenet-lab needs
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for argv, named in (
        (["--state-dir", str(first), "status"], first),
        (["status", "--state-dir", str(first)], first),
        (["pod", "rm", "p1", "--state-dir", str(first)], first),
        (["pod", "--state-dir", str(first), "rm", "p1"], first),
        (["--state-dir", str(second), "matrix", "--state-dir", str(first)], first),  # after the verb wins
    ):
        assert lab_cli.main(argv) == 1, argv
        assert capsys.readouterr().err == f"tenet-lab: no lab in {named}: `tenet-lab up` first\n", argv


def test_lab_state_dir_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENET_LAB_STATE", "/tmp/lab-from-env")
    assert lab_cli.parser().parse_args(["up"]).state_dir == Path("/tmp/lab-from-env")
    assert lab_cli.parser().parse_args(["--state-dir", "/x", "up", "--nodes", "3"]).state_dir == Path("/x")
    assert lab_cli.parser().parse_args(["up", "--state-dir", "/y", "--nodes", "3"]).state_dir == Path("/y")


@pytest.mark.parametrize("before", [True, False])
def test_agent_socket_before_or_after_the_verb(tmp_path: Path, before: bool) -> None:
    install = ["install-cni", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path / "conf")]
    install += ["--tenant", "blue", "--network", "web"]
    socket = ["--socket", "/run/tenet-test/agent.sock"]
    argv = [*socket, *install] if before else [*install, *socket]
    env = {key: value for key, value in os.environ.items() if key != "TENET_SOCKET"}
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    conflist = json.loads((tmp_path / "conf" / "10-tenet.conflist").read_text())
    tenet = next(plugin for plugin in conflist["plugins"] if plugin["type"] == "tenet")
    assert tenet["agentSocket"] == "/run/tenet-test/agent.sock"


def test_agent_run_takes_the_socket_on_either_side() -> None:
    from agent.main import parser

    for argv in (["--socket", "/s", "run"], ["run", "--socket", "/s"], ["--socket", "/t", "run", "--socket", "/s"]):
        assert parser().parse_args(argv).socket == "/s", argv


def _into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m ARGS` with stdout a pipe whose reader is gone, as `| head` leaves it."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT
        )
    finally:
        os.close(write)


def test_every_cli_ends_quietly_when_its_reader_goes(tmp_path: Path) -> None:  # root, as tenet-lab needs
    pods = {
        f"p{i}": {"name": f"p{i}", "node": "node1", "network": "blue/web", "netns": f"tl-x-p{i}", "container_id": "c"}
        for i in range(50)
    }
    (tmp_path / "lab.json").write_text(json.dumps({"nodes": [], "pods": pods}))
    for args in (
        ("lab.cli", "--state-dir", str(tmp_path), "status"),
        ("lab.cli", "--state-dir", str(tmp_path), "status", "--json"),
        ("controller.cli", "compile", "examples/cluster.yaml", "--node", "node1"),
        ("agent.main", "--help"),
    ):
        done = _into_a_closed_pipe(*args)
        assert (done.returncode, done.stderr) == (1, ""), args


def test_lab_status_names_each_pods_namespace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = {"name": "b1", "node": "node1", "network": "blue/web", "netns": "tl-ab12-b1", "container_id": "c"}
    (tmp_path / "lab.json").write_text(json.dumps({"nodes": [], "pods": {"b1": pod}, "server": "http://x:1"}))
    assert lab_cli.main(["--state-dir", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out
    assert "  b1: None on node1, blue/web, namespace tl-ab12-b1\n" in out and "API http://x:1" in out
