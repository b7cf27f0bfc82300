"""tenet-agent's TLS flags: the OVS SSL files go with an ssl: OpenFlow target, all three, as absolute paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.main import StartupError, ovs_ssl_files, parser


def args(*extra: str):
    return parser().parse_args(["run", *extra])


def test_ssl_target_takes_the_three_files_as_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("sw-privkey.pem", "sw-cert.pem", "cacert.pem"):
        (tmp_path / name).write_text("PEM\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENET_OVS_SSL_CA", "cacert.pem")
    parsed = args("--openflow", "ssl:10.0.0.1:6653", "--ovs-ssl-key", "sw-privkey.pem", "--ovs-ssl-cert", "sw-cert.pem")
    assert ovs_ssl_files(parsed) == tuple(str(tmp_path / n) for n in ("sw-privkey.pem", "sw-cert.pem", "cacert.pem"))


def test_files_missing_or_without_ssl_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENET_OVS_SSL_CA", raising=False)
    assert ovs_ssl_files(args("--openflow", "tcp:10.0.0.1:6653")) is None
    with pytest.raises(StartupError, match=r"--openflow ssl:10\.0\.0\.1:6653 needs --ovs-ssl-key, --ovs-ssl-ca"):
        ovs_ssl_files(args("--openflow", "ssl:10.0.0.1:6653", "--ovs-ssl-cert", "c.pem"))
    with pytest.raises(StartupError, match="--ovs-ssl-cert: only for an ssl:IP:PORT --openflow target"):
        ovs_ssl_files(args("--openflow", "tcp:10.0.0.1:6653", "--ovs-ssl-cert", "c.pem"))
    missing = ["--ovs-ssl-key", str(tmp_path / "k.pem"), "--ovs-ssl-cert", "c.pem", "--ovs-ssl-ca", "ca.pem"]
    with pytest.raises(StartupError, match=r"--ovs-ssl-key .*/k\.pem: no such file"):
        ovs_ssl_files(args("--openflow", "ssl:10.0.0.1:6653", *missing))
