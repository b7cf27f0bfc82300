"""Bearer tokens: one cluster-admin list, per-tenant lists and per-node lists, loaded from a JSON token file.

    {"admin": ["admin-token"], "tenants": {"blue": ["blue-token"], "red": ["red-token"]},
     "nodes": {"node1": ["node1-token"]}}

The admin sees and changes everything; a tenant token sees and changes only its own tenant's networks and
endpoints; a node token (the node agent's) registers only its own node and creates, reads and deletes only
the endpoints on it, of any tenant, and reads no tenant or network.

Tokens are compared with `hmac.compare_digest`, each against every known token, so the time a lookup takes
does not depend on how much of a guess was right.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TokenFileError(ValueError):
    """The token file is missing, not JSON, or not of the documented shape; the message names the file."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the cluster admin, the tenant(s) a token belongs to, or the node(s) of a node token."""

    admin: bool = False
    tenants: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()

    def sees(self, tenant: str) -> bool:
        return self.admin or tenant in self.tenants

    def manages(self, node: str) -> bool:
        """May register `node` and manage the endpoints on it (the admin, or that node's token)."""
        return self.admin or node in self.nodes

    @property
    def node_only(self) -> bool:
        return bool(self.nodes) and not self.admin and not self.tenants


ADMIN = Principal(admin=True)


@dataclass(frozen=True)
class Tokens:
    admin: tuple[bytes, ...] = ()
    tenants: tuple[tuple[bytes, str], ...] = ()  # (token, tenant) pairs
    nodes: tuple[tuple[bytes, str], ...] = ()  # (token, node) pairs
    _all: tuple[tuple[bytes, Principal], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pairs = [(t, ADMIN) for t in self.admin]
        by_token: dict[bytes, set[str]] = {}
        for token, tenant in self.tenants:
            by_token.setdefault(token, set()).add(tenant)
        pairs += [(t, Principal(tenants=frozenset(names))) for t, names in by_token.items()]
        by_node: dict[bytes, set[str]] = {}
        for token, node in self.nodes:
            by_node.setdefault(token, set()).add(node)
        pairs += [(t, Principal(nodes=frozenset(names))) for t, names in by_node.items()]
        object.__setattr__(self, "_all", tuple(pairs))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "token file") -> Tokens:
        if not isinstance(data, dict) or set(data) - {"admin", "tenants", "nodes"}:
            raise TokenFileError(f'{source}: want an object with "admin", "tenants" and "nodes" only')
        admin = _token_list(data.get("admin", []), f"{source}: admin")
        tenants = data.get("tenants", {})
        if not isinstance(tenants, dict):
            raise TokenFileError(f"{source}: tenants: want an object of tenant name -> list of tokens")
        pairs = [(t, name) for name, tokens in tenants.items() for t in _token_list(tokens, f"{source}: {name}")]
        overlap = set(admin) & {t for t, _ in pairs}
        if overlap:
            raise TokenFileError(f"{source}: a token is listed both as admin and as a tenant's")
        nodes = data.get("nodes", {})
        if not isinstance(nodes, dict):
            raise TokenFileError(f"{source}: nodes: want an object of node name -> list of tokens")
        node_pairs = [(t, name) for name, tokens in nodes.items() for t in _token_list(tokens, f"{source}: {name}")]
        if {t for t, _ in node_pairs} & (set(admin) | {t for t, _ in pairs}):
            raise TokenFileError(f"{source}: a node's token is also listed as admin or as a tenant's")
        return cls(admin=tuple(admin), tenants=tuple(pairs), nodes=tuple(node_pairs))

    def lookup(self, token: bytes) -> Principal | None:
        found = None
        for known, principal in self._all:
            if hmac.compare_digest(known, token):  # no early exit: every token is compared
                found = principal
        return found


def _token_list(value: Any, where: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() == t and t for t in value):
        raise TokenFileError(f"{where}: want a list of non-empty tokens without surrounding whitespace")
    return [t.encode() for t in value]


def load_tokens(path: str | Path) -> Tokens:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise TokenFileError(f"cannot read token file {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise TokenFileError(f"token file {path} is not JSON: {error}") from None
    return Tokens.from_dict(data, source=f"token file {path}")


def bearer(header: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer TOKEN` header, as the bytes that came over the wire."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return token.strip().encode("latin-1")  # WSGI headers are latin-1 decoded bytes (PEP 3333)
    except UnicodeEncodeError:
        return None
