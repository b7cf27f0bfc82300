"""The embedded store: one SQLite file, for a controller on one machine.

Layout: table `kv` (key, JSON value, mod_revision) and table `meta` holding the store revision in its row
`revision`. The database runs in WAL mode with `synchronous=FULL`, so a commit is fsynced before `commit`
returns: an acknowledged write survives kill -9 of the process and, as far as SQLite promises, power loss.
Each commit is one `BEGIN IMMEDIATE` transaction that checks `expect` before writing anything.

Semantics shared with the etcd store (see `prepare_commit`):
- `list(prefix)` is a plain string prefix: "/a" matches "/a", "/a/1" and "/ab". Results are sorted by key
  in code point order (which is also the byte order of the UTF-8 keys).
- A commit that changes nothing (no operations, or only deletes of missing keys) succeeds without a new
  revision and returns the current one, as etcd does.
- A commit may not name the same key twice (etcd refuses that too).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.store.base import Conflict, Delete, Document, Operation, Put, Record, StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 10.0

# One encoded operation: the key and its JSON text, or None for a delete.
EncodedOperation = tuple[str, str | None]


def encode_value(value: Document) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"a store value is a JSON object (dict), not {type(value).__name__}")
    # allow_nan=False: NaN and Infinity are not JSON and etcd tools would choke on them.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def decode_value(key: str, text: str | bytes) -> Document:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise StoreError(f"the value of {key!r} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise StoreError(f"the value of {key!r} is not a JSON object")
    return value


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a store key is a str, not {type(key).__name__}")
    if not key:
        raise ValueError("a store key must not be empty")
    return key


def prepare_commit(
    operations: Sequence[Operation], expect: Mapping[str, int] | None
) -> tuple[list[EncodedOperation], dict[str, int]]:
    """Validate and encode a commit before any I/O, so a bad commit never half-happens in either store."""
    if isinstance(operations, str | bytes) or not isinstance(operations, Sequence):
        raise TypeError("operations must be a sequence of Put and Delete")
    encoded: list[EncodedOperation] = []
    seen: set[str] = set()
    for operation in operations:
        if isinstance(operation, Put):
            item: EncodedOperation = (check_key(operation.key), encode_value(operation.value))
        elif isinstance(operation, Delete):
            item = (check_key(operation.key), None)
        else:
            raise TypeError(f"not a store operation: {operation!r}")
        if item[0] in seen:
            raise ValueError(f"a commit may change a key only once; {item[0]!r} appears twice")
        seen.add(item[0])
        encoded.append(item)
    expected: dict[str, int] = {}
    for key, revision in (expect or {}).items():
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"expect[{key!r}] must be a revision >= 0 (0: must not exist), not {revision!r}")
        expected[check_key(key)] = revision
    return encoded, expected


def conflict_message(mismatches: Mapping[str, tuple[int, int]]) -> str:
    """`mismatches`: key -> (expected, actual) mod_revision; 0 means absent."""
    parts = [
        f"{key!r} expected at revision {expected}{' (absent)' if expected == 0 else ''}, "
        f"actual {actual}{' (absent)' if actual == 0 else ''}"
        for key, (expected, actual) in sorted(mismatches.items())
    ]
    return "commit refused, nothing written: " + "; ".join(parts)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates cannot be stored as UTF-8; the next real code point follows them
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


class SqliteStore:
    """The `Store` protocol on one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the directory for the sqlite store {self.path}: {error}") from error
        connection: sqlite3.Connection | None = None
        try:
            # isolation_level=None: no implicit transactions; commit() spells out BEGIN IMMEDIATE ... COMMIT.
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot open sqlite store {self.path}: WAL mode refused (journal mode {mode})")
            connection.execute("PRAGMA synchronous=FULL")
            self._create_schema(connection)
        except sqlite3.Error as error:
            if connection is not None:
                connection.close()
            raise StoreError(f"cannot open sqlite store {self.path}: {error}") from error
        except StoreError:
            if connection is not None:
                connection.close()
            raise
        self._connection: sqlite3.Connection | None = connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"cannot open sqlite store {self.path}: schema version {version} is newer than {SCHEMA_VERSION}"
                )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS kv"
                " (key TEXT PRIMARY KEY, value TEXT NOT NULL, mod_revision INTEGER NOT NULL) WITHOUT ROWID"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID"
            )
            connection.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0)")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"sqlite store {self.path} is closed")
        return self._connection

    def _failed(self, error: sqlite3.Error) -> StoreError:
        return StoreError(f"sqlite store {self.path} failed: {error}")

    def get(self, key: str) -> Record | None:
        check_key(key)
        with self._lock:
            connection = self._open_connection()
            try:
                row = connection.execute("SELECT value, mod_revision FROM kv WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as error:
                raise self._failed(error) from error
        if row is None:
            return None
        return Record(key, decode_value(key, row[0]), row[1])

    def list(self, prefix: str) -> list[Record]:
        if not isinstance(prefix, str):
            raise TypeError(f"a key prefix is a str, not {type(prefix).__name__}")
        upper = prefix_upper_bound(prefix)
        # A range on the primary key, not LIKE/GLOB: those treat %, _, * and ? in keys as wildcards.
        # SQLite's BINARY collation compares the UTF-8 bytes, which orders like Python's str comparison.
        parameters: tuple[str, ...]
        if upper is None:
            query, parameters = "SELECT key, value, mod_revision FROM kv WHERE key >= ? ORDER BY key", (prefix,)
        else:
            query = "SELECT key, value, mod_revision FROM kv WHERE key >= ? AND key < ? ORDER BY key"
            parameters = (prefix, upper)
        with self._lock:
            connection = self._open_connection()
            try:
                rows = connection.execute(query, parameters).fetchall()
            except sqlite3.Error as error:
                raise self._failed(error) from error
        return [Record(key, decode_value(key, value), revision) for key, value, revision in rows]

    def revision(self) -> int:
        with self._lock:
            connection = self._open_connection()
            try:
                return self._current_revision(connection)
            except sqlite3.Error as error:
                raise self._failed(error) from error

    @staticmethod
    def _current_revision(connection: sqlite3.Connection) -> int:
        return int(connection.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0])

    def commit(self, operations: Sequence[Operation], *, expect: Mapping[str, int] | None = None) -> int:
        encoded, expected = prepare_commit(operations, expect)
        with self._lock:
            connection = self._open_connection()
            try:
                # IMMEDIATE takes the write lock now, so `expect` is checked against what this commit replaces.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    revision = self._apply(connection, encoded, expected)
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise self._failed(error) from error
        return revision

    def _apply(
        self, connection: sqlite3.Connection, encoded: builtins.list[EncodedOperation], expected: dict[str, int]
    ) -> int:
        mismatches: dict[str, tuple[int, int]] = {}
        for key, want in expected.items():
            row = connection.execute("SELECT mod_revision FROM kv WHERE key = ?", (key,)).fetchone()
            actual = 0 if row is None else int(row[0])
            if actual != want:
                mismatches[key] = (want, actual)
        if mismatches:
            raise Conflict(conflict_message(mismatches))
        current = self._current_revision(connection)
        revision = current + 1
        changed = False
        for key, text in encoded:
            if text is None:
                changed |= connection.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0
            else:
                connection.execute(
                    "INSERT INTO kv (key, value, mod_revision) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision",
                    (key, text, revision),
                )
                changed = True
        if not changed:
            return current  # nothing written: no new revision, like etcd; the caller's COMMIT ends a no-op
        connection.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        return revision

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"
