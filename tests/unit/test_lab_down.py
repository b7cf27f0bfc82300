"""Taking down what is not there: `tenet-lab down` and `make demo-down` (python -m lab.demo --down) on a state
dir without a lab say so, naming the directory; a demo up elsewhere is named with the TENET_DEMO_STATE that
takes it down, and the demo's last line names that variable. Root, as both tools need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import cli as lab_cli
from lab import demo


def test_lab_down_without_a_lab_says_there_is_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert lab_cli.main(["--state-dir", str(missing), "down"]) == 0
    assert capsys.readouterr().out == f"tenet-lab: down: no lab in {missing}: nothing to take down\n"
    assert not missing.exists()


def test_demo_down_without_a_demo_names_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "demo"
    status = demo.main(["--down", "--state-dir", str(state)])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"demo: no demo in {state} (no {state}/lab/lab.json): nothing to take down"
    assert "down, nothing left" not in out
    assert status == (1 if "a demo seems to be up in" in out else 0)  # another demo of this machine, if any


def test_demo_down_names_the_state_of_a_demo_up_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process shaped like a demo's controller (`-m controller.main --store sqlite:///DIR/lab/tenet.db`, a
    lab.json beside it) stands for a demo started with TENET_DEMO_STATE=DIR."""
    elsewhere = tmp_path / "other demo"
    (elsewhere / "lab").mkdir(parents=True)
    (elsewhere / "lab" / "lab.json").write_text("{}")
    store = f"sqlite:///{elsewhere}/lab/tenet.db"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "controller.main", store])
    try:
        status = demo.main(["--down", "--state-dir", str(tmp_path / "here")])
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
    out = capsys.readouterr().out
    assert status == 1
    assert (
        f"demo: a demo seems to be up in {elsewhere}: `TENET_DEMO_STATE='{elsewhere}' make demo-down` removes it"
        in (out)
    )
    assert (elsewhere / "lab" / "lab.json").exists()  # nothing of it was touched


def test_the_down_command_names_the_state_unless_it_is_the_default(tmp_path: Path) -> None:
    assert demo.down_command(demo.DEFAULT_STATE) == "make demo-down"
    assert demo.down_command(tmp_path / "d") == f"TENET_DEMO_STATE={tmp_path / 'd'} make demo-down"
