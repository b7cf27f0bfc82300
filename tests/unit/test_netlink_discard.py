"""After a failed step of `make_pair`, the host end and its ingress chain are removed independently: a link
that cannot be deleted does not leave its chain behind, nor the reverse (agent/netlink.py `_discard`)."""

from __future__ import annotations

from typing import Any

import pytest

from agent import netlink
from agent.netlink import NetlinkError, _discard


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []

    def forget(name: str) -> bool:
        done.append(f"chain {name}")
        return True

    monkeypatch.setattr(netlink.nft, "forget", forget)
    return done


def test_the_chain_goes_even_when_the_link_cannot_be_deleted(
    monkeypatch: pytest.MonkeyPatch, removed: list[str]
) -> None:
    def refuse(_host: Any, name: str) -> bool:
        raise NetlinkError(f"deleting {name}: Operation not permitted")

    monkeypatch.setattr(netlink, "_delete_link", refuse)
    _discard(None, "tn0123456789", ingress_drop=True)  # type: ignore[arg-type]
    assert removed == ["chain tn0123456789"]


def test_the_link_goes_even_when_the_chain_cannot_be_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[str] = []

    def delete(_host: Any, name: str) -> bool:
        deleted.append(name)
        return True

    def refuse(name: str) -> bool:
        raise netlink.nft.NftError(f"removing the ingress chain of {name}: Operation not permitted")

    monkeypatch.setattr(netlink, "_delete_link", delete)
    monkeypatch.setattr(netlink.nft, "forget", refuse)
    _discard(None, "tn0123456789", ingress_drop=True)  # type: ignore[arg-type]
    assert deleted == ["tn0123456789"]


def test_no_chain_is_removed_where_none_was_made(monkeypatch: pytest.MonkeyPatch, removed: list[str]) -> None:
    monkeypatch.setattr(netlink, "_delete_link", lambda _host, _name: True)
    _discard(None, "tn0123456789", ingress_drop=False)  # type: ignore[arg-type]
    assert removed == []
