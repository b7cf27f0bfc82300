"""Golden ovs-ofctl text of every node of examples/cluster.yaml.

Any change to what the compiler emits shows up here as a readable diff. When the change is intended,
regenerate with `TENET_UPDATE_GOLDEN=1 pytest tests/unit/test_golden.py` and review the diff of the files.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

import pytest

from controller.openflow.ofctl import render_state
from controller.pipeline.compile import Compiler
from controller.pipeline.state import NodeState
from topology.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cluster.yaml"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TENET_UPDATE_GOLDEN") == "1"
NODES = sorted(load_file(EXAMPLE).nodes)


@pytest.fixture(scope="module")
def states() -> dict[str, NodeState]:
    return Compiler(load_file(EXAMPLE)).compile_all()


def render(state: NodeState, *, names: bool) -> str:
    return render_state(state.flows(), state.groups().values(), state.meters().values(), names=names)


@pytest.mark.parametrize("node", NODES)
def test_golden_text(states: dict[str, NodeState], node: str) -> None:
    actual = render(states[node], names=True)
    path = GOLDEN / f"{node}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with TENET_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        delta = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"golden/{node}.txt",
            tofile=f"compiled {node}",
        )
        pytest.fail(
            f"compiled state of {node} differs from {path} (TENET_UPDATE_GOLDEN=1 to accept):\n{''.join(delta)}",
            pytrace=False,
        )


def test_every_golden_file_is_a_node() -> None:
    # A renamed or removed node must not leave a stale file that nothing checks.
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == NODES


@pytest.mark.parametrize("node", NODES)
def test_one_node_compile_matches_the_full_compile(states: dict[str, NodeState], node: str) -> None:
    # `tenetctl compile` compiles only the node asked for; it must print what the controller installs.
    alone = Compiler(load_file(EXAMPLE)).compile_node(node)
    assert render(alone, names=True) == render(states[node], names=True)


@pytest.mark.parametrize("node", NODES)
def test_numeric_text_parses_with_ovs_ofctl(states: dict[str, NodeState], node: str, tmp_path: Path) -> None:
    state = states[node]
    lines = render(state, names=False).splitlines()
    # parse-flows takes flows only; meters and groups are add-meter and add-group syntax.
    flows = [line for line in lines if not line.startswith(("meter=", "group_id="))]
    assert len(flows) == state.flow_count()
    assert len(lines) - len(flows) == len(state.groups()) + len(state.meters())
    path = tmp_path / f"{node}.flows"
    path.write_text("".join(f"{line}\n" for line in flows), encoding="utf-8")
    parsed = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "parse-flows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.count("OFPT_FLOW_MOD") == state.flow_count()
