"""The store interface: keys with JSON values and revisions, etcd style.

The controller is the only writer. Every write gets the next store-wide revision; a key remembers the
revision of its last change (`mod_revision`). A write acknowledged by `commit` is durable: it survives
`kill -9` of the controller. `commit` applies all of its operations or none, and with `expect` it
applies them only if the named keys are still at the given revisions (0: the key must not exist).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Document = dict[str, Any]


@dataclass(frozen=True)
class Record:
    key: str
    value: Document
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: Document


@dataclass(frozen=True)
class Delete:
    key: str


Operation = Put | Delete


class StoreError(RuntimeError):
    """The store cannot be reached or failed; the message says which store and why."""


class Conflict(StoreError):
    """An `expect` condition did not hold: someone else changed the key first."""


class Store(Protocol):
    def get(self, key: str) -> Record | None: ...

    def list(self, prefix: str) -> list[Record]:
        """Every record whose key starts with `prefix`, sorted by key."""
        ...

    def commit(self, operations: Sequence[Operation], *, expect: Mapping[str, int] | None = None) -> int:
        """Apply all operations atomically and durably; return the new store revision."""
        ...

    def revision(self) -> int:
        """The store-wide revision of the last write (0 for an empty store)."""
        ...

    def close(self) -> None: ...
