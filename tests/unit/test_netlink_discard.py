"""After a failed step of `make_pair`, `_discard` removes the host end, then its ingress chain, and raises
nothing (the caller's own error is the one to report); a host end that cannot be deleted keeps its chain,
which still shields the node from it (agent/netlink.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agent import netlink
from agent.netlink import NetlinkError, _discard

NAME = "tn0123456789"


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []

    def delete(_host: Any, name: str) -> bool:
        done.append(f"link {name}")
        return True

    def forget(name: str) -> bool:
        done.append(f"chain {name}")
        return True

    monkeypatch.setattr(netlink, "_delete_link", delete)
    monkeypatch.setattr(netlink.nft, "forget", forget)
    return done


def test_the_link_then_its_chain_go(removed: list[str]) -> None:
    _discard(None, NAME, ingress_drop=True)  # type: ignore[arg-type]
    assert removed == [f"link {NAME}", f"chain {NAME}"]


def test_no_chain_is_removed_where_none_was_made(removed: list[str]) -> None:
    _discard(None, NAME, ingress_drop=False)  # type: ignore[arg-type]
    assert removed == [f"link {NAME}"]


def test_a_link_that_cannot_be_deleted_keeps_its_chain(monkeypatch: pytest.MonkeyPatch, removed: list[str]) -> None:
    def refuse(_host: Any, name: str) -> bool:
        raise NetlinkError(f"deleting {name}: Operation not permitted")

    monkeypatch.setattr(netlink, "_delete_link", refuse)
    _discard(None, NAME, ingress_drop=True)  # type: ignore[arg-type]
    assert removed == []


@pytest.mark.parametrize("error", [netlink.nft.NftError("removing the chain: Operation not permitted"), OSError(97)])
def test_a_chain_that_cannot_be_removed_raises_nothing(
    monkeypatch: pytest.MonkeyPatch, removed: list[str], error: OSError
) -> None:
    def refuse(name: str) -> bool:
        raise error

    monkeypatch.setattr(netlink.nft, "forget", refuse)
    _discard(None, NAME, ingress_drop=True)  # type: ignore[arg-type]
    assert removed == [f"link {NAME}"]
