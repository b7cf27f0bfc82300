"""Open a store from the one string the controller is configured with.

Accepted forms:
- `sqlite:///abs/path/tenet.db` — the SQLite store at that absolute path (percent-escapes decoded);
- a plain file path, e.g. `/var/lib/tenet/tenet.db` or `state/tenet.db` — the SQLite store there;
  a path whose first part looks like a URL scheme (`name:`) must be written `./name:...`;
- `etcd://host[:port][/prefix]` or `http://host[:port][/prefix]` — etcd (port 2379 and prefix /tenet by
  default) through its HTTP gateway.

The store is opened at once: an unreachable etcd or an unopenable file raises StoreError here, not later.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from controller.store.base import Store, StoreError
from controller.store.sqlite import SqliteStore

ACCEPTED_FORMS = (
    "sqlite:///absolute/path/tenet.db, a plain file path, etcd://host:port[/prefix] or http://host:port[/prefix]"
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _bad(url: str, why: str) -> StoreError:
    return StoreError(f"cannot open store {url!r}: {why}; accepted forms: {ACCEPTED_FORMS}")


def open_store(url: str) -> Store:
    if not isinstance(url, str) or not url.strip():
        raise _bad(str(url), "empty store URL")
    match = _SCHEME.match(url)
    if match is None:
        return SqliteStore(url)
    scheme = match.group(1).lower()
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise _bad(url, str(error)) from error
    if parts.query or parts.fragment:
        raise _bad(url, "query strings and fragments are not understood")
    if scheme == "sqlite":
        if parts.netloc:
            raise _bad(url, f"a sqlite URL names an absolute path, but {parts.netloc!r} is in the host position")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise _bad(url, "a sqlite URL names an absolute path")
        return SqliteStore(path)
    if scheme in ("etcd", "http"):
        try:
            parts.port  # noqa: B018 -- urlsplit checks the port only when asked
        except ValueError as error:
            raise _bad(url, str(error)) from error
        if not parts.hostname:
            raise _bad(url, "no etcd host")
        # Imported here so a SQLite-only controller does not load the etcd client and its dependencies.
        from controller.store.etcd import DEFAULT_PREFIX, EtcdStore

        prefix = unquote(parts.path) if parts.path not in ("", "/") else DEFAULT_PREFIX
        return EtcdStore(f"{scheme}://{parts.netloc}", prefix=prefix)
    raise _bad(url, f"unknown scheme {scheme!r}")
