"""The Vagrant VM lab, checked without booting a VM: the Vagrantfile validates, the provisioning scripts parse,
the systemd units load and call only flags the commands have, and the workers run the netns lab's node set-up.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cluster import NODE_SETUP

ROOT = Path(__file__).resolve().parents[2]
VAGRANT = ROOT / "vagrant"
SCRIPTS = sorted((VAGRANT / "provision").glob("*.sh"))
UNITS = {
    "tenet-controller.service": ("tenet-controller", [], "controller.main", "controller.sh"),
    "tenet-agent.service": ("tenet-agent", ["run"], "agent.main", "worker.sh"),
}
VENV_BIN = "/opt/tenet/.venv/bin/"


def test_vagrantfile_validates(tmp_path: Path) -> None:
    assert shutil.which("vagrant"), "vagrant is missing: ./dev installs it"
    env = os.environ | {
        "VAGRANT_HOME": str(tmp_path / "home"),  # no boxes, plugins or keys of the user's
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),  # no .vagrant/ in the repository
        "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check over the network
    }
    before = sorted(VAGRANT.rglob("*"))
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    assert sorted(VAGRANT.rglob("*")) == before, "validating wrote into vagrant/"


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_provisioning_script_parses(script: Path, shell: str) -> None:
    assert script.read_text().startswith("#!/bin/sh\n"), f"{script.name}: want #!/bin/sh"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_provisioning_scripts_exist() -> None:
    assert {path.name for path in SCRIPTS} == {"common.sh", "controller.sh", "worker.sh", "node-setup.sh"}


def test_workers_run_the_lab_node_setup() -> None:
    """The point of the netns lab: it runs the very script that sets up the VM workers."""
    assert NODE_SETUP == VAGRANT / "provision" / "node-setup.sh"
    worker = (VAGRANT / "provision" / "worker.sh").read_text()
    assert 'sh "$TENET_REPO/vagrant/provision/node-setup.sh"' in worker
    assert "DATAPATH_TYPE=system" in worker


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each setting of a unit file, continuation lines joined."""
    settings, section, pending = [], "", ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        settings.append((section, key.strip(), value.strip()))
    return settings


def environment_defaults(settings: list[tuple[str, str, str]]) -> set[str]:
    names = set()
    for section, key, value in settings:
        if (section, key) == ("Service", "Environment"):
            names |= {word.partition("=")[0] for word in shlex.split(value)}
    return names


def help_text(module: str, verb: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *verb, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_runs_the_venv_command_with_flags_it_has(unit: str) -> None:
    command, verb, module, provision = UNITS[unit]
    settings = unit_settings((VAGRANT / "systemd" / unit).read_text())
    sections = {section for section, _, _ in settings}
    assert sections == {"Unit", "Service", "Install"}
    (exec_start,) = [value for section, key, value in settings if (section, key) == ("Service", "ExecStart")]
    words = shlex.split(exec_start)
    assert words[0] == VENV_BIN + command
    assert f"{command} = " in (ROOT / "setup.cfg").read_text(), f"{command} is not a console script"
    assert words[1 : 1 + len(verb)] == verb
    accepted = set(re.findall(r"--[a-z][a-z-]*", help_text(module, verb)))
    pairs = list(zip(words[1 + len(verb) :: 2], words[2 + len(verb) :: 2], strict=True))
    assert pairs, "no flags"
    # What the provisioning script writes into the unit's EnvironmentFile, and the unit's own defaults.
    written = set(re.findall(r"^(TENET_[A-Z_]+)=", (VAGRANT / "provision" / provision).read_text(), re.M))
    defined = environment_defaults(settings) | written
    for flag, value in pairs:
        assert flag in accepted, f"{unit}: {command} {' '.join(verb)} has no {flag}"
        variable = "TENET_" + flag[2:].upper().replace("-", "_")
        assert value == "${" + variable + "}", f"{unit}: {flag} {value}: want ${{{variable}}}, as the command reads"
        assert variable in defined, f"{unit}: nothing sets {variable}"
    name = command.removeprefix("tenet-")
    (environment_file,) = [value for section, key, value in settings if key == "EnvironmentFile"]
    assert environment_file.removeprefix("-") == f"/etc/tenet/{name}.env"
    assert f"/etc/tenet/{name}.env" in (VAGRANT / "provision" / provision).read_text()


def test_units_verify(tmp_path: Path) -> None:
    """systemd's own parser, with the venv path pointed at this test's interpreter so the commands exist."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: ./dev installs systemd"
    bin_dir = Path(sys.executable).parent
    for unit in UNITS:
        text = (VAGRANT / "systemd" / unit).read_text().replace(VENV_BIN, f"{bin_dir}/")
        (tmp_path / unit).write_text(text)
        assert (bin_dir / UNITS[unit][0]).exists(), f"{UNITS[unit][0]} is not installed next to {sys.executable}"
    result = subprocess.run(
        ["systemd-analyze", "verify", *(f"./{unit}" for unit in UNITS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "tenet-" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
