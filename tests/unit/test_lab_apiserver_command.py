"""The lab starts the stand-in API server with a command line its own parser reads back, whatever the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import k8s
from lab.apiserver.__main__ import build_parser, main
from lab.cluster import Lab


class _Spawned(Exception):
    pass


@pytest.mark.parametrize("token", ["-8Xq2vT", "--help", "plain_Token-1"])
def test_the_api_server_command_carries_any_random_token_as_its_value(tmp_path: Path, token: str) -> None:
    lab = Lab(tmp_path / "lab")
    lab.state.etcd_url, lab.state.apiserver_port, lab.state.apiserver_token = "http://127.0.0.1:2379", 6443, token
    commands: list[list[str]] = []

    def spawn(command: list[str], log: Path) -> int:
        commands.append(command)
        raise _Spawned  # the command is all this test wants

    with pytest.raises(_Spawned):
        k8s.start_apiserver(lab, spawn, lambda pid: False)
    (command,) = commands
    assert command[1:3] == ["-m", "lab.apiserver"]
    args = build_parser().parse_args(command[3:])
    assert (args.token, args.port, args.etcd) == (token, 6443, "http://127.0.0.1:2379")
    assert (args.kubeconfig_out, args.cert_dir) == (str(k8s.kubeconfig(lab)), str(lab.dir / "apiserver"))
    assert args.bookmark_interval == 10


def test_a_relative_state_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's processes start in the repository, and a relative path beginning with "-" would read as an
    option on their command lines."""
    monkeypatch.chdir(tmp_path)
    lab = Lab(Path("-lab"))
    assert lab.dir == tmp_path / "-lab" and lab.file == tmp_path / "-lab" / "lab.json"
    lab.state.etcd_url, lab.state.apiserver_port, lab.state.apiserver_token = "http://127.0.0.1:2379", 6443, "t"
    commands: list[list[str]] = []

    def spawn(command: list[str], log: Path) -> int:
        commands.append(command)
        raise _Spawned

    with pytest.raises(_Spawned):
        k8s.start_apiserver(lab, spawn, lambda pid: False)
    args = build_parser().parse_args(commands[0][3:])
    assert args.kubeconfig_out == str(tmp_path / "-lab" / "kubeconfig")


@pytest.mark.parametrize("token", ["", " "])
def test_an_empty_token_is_refused_not_replaced_by_a_random_one(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--etcd", "http://127.0.0.1:2379", f"--token={token}"])
    assert exit_.value.code == 2
    assert "--token: empty" in capsys.readouterr().err
