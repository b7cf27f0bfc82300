"""The agent's pod interfaces have IPv6 off (pods are IPv4 only): how `_ipv6_off` meets a kernel without
IPv6, an interface gone, and a refusal. The setting itself, on a real pod: tests/functional/test_agent_adapters."""

from __future__ import annotations

from typing import Any

import pytest

from agent import netlink
from agent.netlink import NetlinkError, _ipv6_off


def refusing(error: OSError) -> Any:
    def fake_open(path: str, mode: str = "r") -> Any:
        assert path == "/proc/sys/net/ipv6/conf/eth0/disable_ipv6" and mode == "w"
        raise error

    return fake_open


def test_a_kernel_without_ipv6_has_nothing_to_turn_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "open", refusing(FileNotFoundError(2, "No such file")), raising=False)
    monkeypatch.setattr(netlink.os.path, "exists", lambda path: path != "/proc/sys/net/ipv6")
    _ipv6_off("eth0", "pod:eth0")  # no error


def test_an_interface_gone_and_a_refusal_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink, "open", refusing(FileNotFoundError(2, "No such file")), raising=False)
    monkeypatch.setattr(netlink.os.path, "exists", lambda path: True)
    with pytest.raises(NetlinkError, match=r"pod:eth0 vanished right after it was created \(no /proc/sys/net/ipv6"):
        _ipv6_off("eth0", "pod:eth0")
    monkeypatch.setattr(netlink, "open", refusing(PermissionError(13, "Permission denied")), raising=False)
    with pytest.raises(NetlinkError, match=r"turning IPv6 off on pod:eth0: Permission denied"):
        _ipv6_off("eth0", "pod:eth0")
