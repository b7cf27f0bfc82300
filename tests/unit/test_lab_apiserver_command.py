"""The lab starts the stand-in API server with a command line its own parser reads back, whatever the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import k8s
from lab.apiserver.__main__ import build_parser
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
