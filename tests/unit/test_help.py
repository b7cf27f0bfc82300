"""What `--help` tells a new user: tenet-agent's flags with their TENET_<NAME> variables and defaults,
install-cni's directories, tenet-lab up's description and config keys, `./dev --help` (exit 0), and
bench.compile refusing sizes it cannot build with an argparse error instead of a traceback."""

from __future__ import annotations

import argparse
import re
import subprocess

import pytest

from agent.main import parser as agent_parser
from bench import compile as bench_compile
from lab import cli as lab_cli
from lab.ovs import ROOT


def verb(top: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (verbs,) = (a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    chosen = verbs.choices[name]
    assert isinstance(chosen, argparse.ArgumentParser)
    return chosen


def help_of(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())  # one line: argparse wraps where it likes


def test_every_flag_of_agent_run_names_its_environment_variable() -> None:
    run = verb(agent_parser(), "run")
    flags = [a for a in run._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 15
    for action in flags:
        assert f"TENET_{action.dest.upper()}" in (action.help or ""), action.option_strings


@pytest.mark.parametrize(
    "needle",
    [
        "--controller CONTROLLER controller API URL, http:// or https:// (env TENET_CONTROLLER; default "
        "http://127.0.0.1:8780)",
        "(env TENET_OPENFLOW; default tcp:127.0.0.1:6653)",
        "(env TENET_OVSDB; default unix:/var/run/openvswitch/db.sock)",
        "(env TENET_TUNNEL_IP; required)",
        "Every flag may come from an environment variable TENET_<NAME>",
    ],
)
def test_agent_run_help_shows_defaults(needle: str) -> None:
    assert needle in help_of(verb(agent_parser(), "run"))


def test_install_cni_directories_have_help_and_defaults() -> None:
    text = help_of(verb(agent_parser(), "install-cni"))
    assert "--bin-dir DIR where the runtime looks for CNI plugins" in text and "(default /opt/cni/bin)" in text
    assert "--conf-dir DIR where the runtime reads CNI network configs" in text and "(default /etc/cni/net.d)" in text


def test_lab_up_help_describes_it_and_every_config_key() -> None:
    text = help_of(verb(lab_cli.parser(), "up"))
    assert "Build the lab in the state dir" in text and "The config is checked whole first" in text
    assert "--config FILE YAML in the format of examples/cluster.yaml: tenants with their networks, qos" in text
    assert "namespaces ({name, tenant, labels}" in text
    assert "cluster_network, cluster_subnet, transit_subnet: the controller's cluster network settings" in text


def test_dev_help_says_what_demo_and_test_do_and_exits_0() -> None:
    done = subprocess.run([str(ROOT / "dev"), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: ./dev demo|test")
    assert re.search(r"^  demo +the main job", done.stdout, re.M) and re.search(
        r"^  test +the whole", done.stdout, re.M
    )
    wrong = subprocess.run([str(ROOT / "dev"), "frobnicate"], capture_output=True, text=True, timeout=30, check=False)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: ./dev demo|test") and wrong.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "argument --nodes: want at least 1, got 0"),
        (["--tenants", "0"], "argument --tenants: want at least 1, got 0"),
        (["--networks", "-3"], "argument --networks: want at least 1, got -3"),
        (["--sample", "0"], "argument --sample: want at least 1, got 0"),
        (["--endpoints", "many"], "argument --endpoints: want an integer, got 'many'"),
    ],
)
def test_bench_compile_refuses_sizes_it_cannot_build(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_compile.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.splitlines()[-1] == f"python -m bench.compile: error: {message}", err
