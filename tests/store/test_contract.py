"""The store contract: the same tests against SQLite and a real etcd (the `store` fixture runs both).

Decisions both stores share, pinned here:
- `list(prefix)` is a plain string prefix ("/a" matches "/ab"), sorted by code point;
- a commit that changes nothing (only deletes of missing keys, or no operations) succeeds, returns the
  current revision and does not create a new one;
- a commit may not change one key twice; bad operations are refused before anything is written.
Revisions are compared relative to the store's start: etcd's are cluster-wide and begin at 1.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import sqlite3
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from controller.store.base import Conflict, Delete, Put, Record, Store, StoreError
from controller.store.etcd import EtcdStore
from controller.store.open import ACCEPTED_FORMS, open_store
from controller.store.sqlite import SqliteStore, prefix_upper_bound
from tests.etcd_server import EtcdServer, free_port
from tests.store.conftest import sqlite_url


def keys(records: list[Record]) -> list[str]:
    return [record.key for record in records]


# --- put, get, list, delete, revisions ---------------------------------------------------------------


def test_missing_key_and_empty_list(store: Store) -> None:
    assert store.get("/nothing") is None
    assert store.list("") == []
    assert store.list("/nothing") == []


def test_put_then_get_and_list(store: Store) -> None:
    before = store.revision()
    revision = store.commit([Put("/networks/blue", {"vni": 5001})])
    assert revision == before + 1
    assert store.revision() == revision
    assert store.get("/networks/blue") == Record("/networks/blue", {"vni": 5001}, revision)
    assert store.list("/networks/") == [Record("/networks/blue", {"vni": 5001}, revision)]


def test_revision_increases_by_one_per_commit_and_mod_revision_is_the_last_write(store: Store) -> None:
    start = store.revision()
    first = store.commit([Put("/a", {"n": 1}), Put("/b", {"n": 1})])  # one commit, one revision, two keys
    second = store.commit([Put("/a", {"n": 2})])
    third = store.commit([Put("/c", {"n": 1}), Delete("/b")])
    assert (first, second, third) == (start + 1, start + 2, start + 3)
    assert store.get("/a") == Record("/a", {"n": 2}, second)
    assert store.get("/b") is None
    assert store.get("/c") == Record("/c", {"n": 1}, third)
    assert store.revision() == third


def test_put_of_an_unchanged_value_is_still_a_write(store: Store) -> None:
    first = store.commit([Put("/same", {"v": 1})])
    second = store.commit([Put("/same", {"v": 1})])
    assert second == first + 1
    assert store.get("/same") == Record("/same", {"v": 1}, second)


def test_delete_removes_the_key(store: Store) -> None:
    store.commit([Put("/k", {"v": 1}), Put("/k2", {"v": 2})])
    revision = store.commit([Delete("/k")])
    assert store.revision() == revision
    assert store.get("/k") is None
    assert keys(store.list("/")) == ["/k2"]


def test_delete_of_a_missing_key_succeeds_without_a_new_revision(store: Store) -> None:
    store.commit([Put("/present", {"v": 1})])
    before = store.revision()
    assert store.commit([Delete("/absent")]) == before
    assert store.commit([]) == before
    assert store.revision() == before
    # Mixed with a real change, the commit gets exactly one new revision.
    assert store.commit([Delete("/absent"), Put("/other", {"v": 1})]) == before + 1


def test_list_is_a_plain_string_prefix_sorted_by_key(store: Store) -> None:
    names = ["/b", "/a/2", "/ab", "/a", "/a/1", "/a_", "/a%", "/aa", "/c/x"]
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    for name in shuffled:  # one commit per key, in random order, so sorting is the store's job
        store.commit([Put(name, {"name": name})])
    assert keys(store.list("")) == sorted(names)
    assert keys(store.list("/a")) == ["/a", "/a%", "/a/1", "/a/2", "/a_", "/aa", "/ab"]
    assert keys(store.list("/a/")) == ["/a/1", "/a/2"]
    # SQL wildcards in a prefix are plain characters.
    assert keys(store.list("/a_")) == ["/a_"]
    assert keys(store.list("/a%")) == ["/a%"]
    assert keys(store.list("/c/x")) == ["/c/x"]
    assert store.list("/c/x/") == []
    assert store.list("/d") == []
    assert all(record.value == {"name": record.key} for record in store.list(""))


def test_list_sorts_by_code_point_with_unicode_keys(store: Store) -> None:
    # U+E000 sorts before U+10000 by code point (and UTF-8 bytes), after it in UTF-16: a real difference.
    names = ["/z", "/é", "/日本", "/\U0001f680", "/\ue000", "/\U00010000", "/\uffff", "/A"]
    store.commit([Put(name, {}) for name in names])
    assert keys(store.list("/")) == sorted(names)
    assert [record.key for record in store.list("/日")] == ["/日本"]


def test_list_prefixes_at_the_edges_of_unicode(store: Store) -> None:
    names = ["/x\U0010ffff", "/x\U0010ffff\U0010ffffa", "/y", "/p\ud7ffq", "/p\ue000"]
    store.commit([Put(name, {}) for name in names])
    assert keys(store.list("/x\U0010ffff")) == ["/x\U0010ffff", "/x\U0010ffff\U0010ffffa"]
    assert keys(store.list("/p\ud7ff")) == ["/p\ud7ffq"]


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound("/a") == "/b"
    assert prefix_upper_bound("") is None
    assert prefix_upper_bound("\U0010ffff") is None
    assert prefix_upper_bound("/\U0010ffff") == "0"
    assert prefix_upper_bound("\ud7ff") == "\ue000"


# --- expect: compare and swap --------------------------------------------------------------------------


def test_failed_expect_changes_nothing(store: Store) -> None:
    first = store.commit([Put("/a", {"v": 1}), Put("/c", {"v": 1})])
    second = store.commit([Put("/a", {"v": 2})])
    with pytest.raises(Conflict) as raised:
        store.commit([Put("/a", {"v": 3}), Put("/b", {"v": 3}), Delete("/c")], expect={"/a": first, "/c": first})
    message = str(raised.value)
    assert "'/a'" in message and f"expected at revision {first}" in message and f"actual {second}" in message
    assert "'/c'" not in message  # it was where the commit expected it; only the culprit is named
    assert store.revision() == second
    assert store.get("/a") == Record("/a", {"v": 2}, second)
    assert store.get("/b") is None
    assert store.get("/c") == Record("/c", {"v": 1}, first)


def test_matching_expect_applies_the_commit(store: Store) -> None:
    first = store.commit([Put("/a", {"v": 1}), Put("/guard", {"v": 1})])
    # The guarded key need not be among the operations.
    second = store.commit([Put("/a", {"v": 2}), Delete("/missing")], expect={"/a": first, "/guard": first})
    assert second == first + 1
    assert store.get("/a") == Record("/a", {"v": 2}, second)


def test_expect_zero_means_the_key_must_not_exist(store: Store) -> None:
    created = store.commit([Put("/ip/10.0.0.5", {"owner": "pod-1"})], expect={"/ip/10.0.0.5": 0})
    with pytest.raises(Conflict) as raised:
        store.commit([Put("/ip/10.0.0.5", {"owner": "pod-2"})], expect={"/ip/10.0.0.5": 0})
    assert "(absent)" in str(raised.value) and f"actual {created}" in str(raised.value)
    assert store.get("/ip/10.0.0.5") == Record("/ip/10.0.0.5", {"owner": "pod-1"}, created)
    deleted = store.commit([Delete("/ip/10.0.0.5")], expect={"/ip/10.0.0.5": created})
    # Deleted keys count as absent again.
    again = store.commit([Put("/ip/10.0.0.5", {"owner": "pod-2"})], expect={"/ip/10.0.0.5": 0})
    assert again == deleted + 1


def test_expecting_a_revision_of_a_missing_key_conflicts(store: Store) -> None:
    revision = store.commit([Put("/x", {"v": 1})])
    with pytest.raises(Conflict, match=r"'/y' expected at revision .*actual 0 \(absent\)"):
        store.commit([Put("/x", {"v": 2})], expect={"/y": revision})
    assert store.revision() == revision


def test_an_empty_commit_with_expect_is_a_consistency_check(store: Store) -> None:
    revision = store.commit([Put("/x", {"v": 1})])
    assert store.commit([], expect={"/x": revision, "/none": 0}) == revision
    with pytest.raises(Conflict):
        store.commit([], expect={"/x": revision - 1})


def test_conflict_is_a_store_error() -> None:
    assert issubclass(Conflict, StoreError)


# --- values and bad input ------------------------------------------------------------------------------


def test_values_round_trip_as_json(store: Store) -> None:
    value: dict[str, Any] = {
        "name": "réseau 日本 🚀",
        "ints": [0, -7, 2**53 + 1, 2**63 - 1, 2**70],
        "float": 1.5,
        "flags": {"on": True, "off": False, "none": None},
        "nested": [1, "two", [3, {"four": [4.25, {"five": "ü"}]}]],
        "empty": {"list": [], "object": {}, "string": ""},
        "escapes": 'quote " backslash \\ newline \n tab \t nul \x00',
        "ключ": "значение",
    }
    key = "/values/ünïcode/😀"
    revision = store.commit([Put(key, value)])
    assert store.get(key) == Record(key, value, revision)
    assert store.list("/values/") == [Record(key, value, revision)]


@pytest.mark.parametrize(
    ("operations", "expect", "error"),
    [
        ([Put("/dup", {}), Delete("/dup")], None, ValueError),
        ([Put("/dup", {}), Put("/dup", {"v": 2})], None, ValueError),
        ([Put("", {})], None, ValueError),
        ([Put("/list", [1, 2])], None, TypeError),  # type: ignore[arg-type]  # a list, on purpose
        ([Put("/nan", {"v": float("nan")})], None, ValueError),
        ([Put("/object", {"v": object()})], None, TypeError),
        ([Put("/ok", {}), "not an operation"], None, TypeError),
        ([Put("/ok", {})], {"/ok": -1}, ValueError),
        ([Put("/ok", {})], {"/ok": True}, ValueError),
        ([Put("/ok", {})], {"/ok": "1"}, ValueError),
    ],
    ids=[
        "put-and-delete-one-key",
        "put-one-key-twice",
        "empty-key",
        "value-not-an-object",
        "nan",
        "unserializable",
        "not-an-operation",
        "negative-expect",
        "bool-expect",
        "str-expect",
    ],
)
def test_bad_commits_are_refused_before_writing(
    store: Store, operations: list[Any], expect: dict[str, Any] | None, error: type[Exception]
) -> None:
    before = store.revision()
    with pytest.raises(error):
        store.commit(operations, expect=expect)
    assert store.revision() == before
    assert store.list("") == []


def test_a_reopened_store_has_the_same_data_and_revision(store_url: str) -> None:
    first = open_store(store_url)
    try:
        revision = first.commit([Put("/keep", {"v": 1}), Put("/keep2", {"v": 2})])
        expected = first.list("")
    finally:
        first.close()
    second = open_store(store_url)
    try:
        assert second.list("") == expected
        assert second.revision() == revision
        assert second.commit([Put("/keep", {"v": 3})]) == revision + 1
    finally:
        second.close()


def test_a_closed_store_raises_store_error(store_url: str) -> None:
    opened = open_store(store_url)
    opened.close()
    opened.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        opened.get("/k")
    with pytest.raises(StoreError, match="closed"):
        opened.commit([Put("/k", {})])


# --- concurrency ---------------------------------------------------------------------------------------

THREADS = 8


def test_compare_and_swap_lets_exactly_one_of_eight_racers_win_each_round(store: Store) -> None:
    store.commit([Put("/counter", {"n": 0})])
    rounds = 5
    read_done = threading.Barrier(THREADS, timeout=30)
    round_done = threading.Barrier(THREADS, timeout=30)

    def racer(_: int) -> list[bool]:
        won: list[bool] = []
        for _round in range(rounds):
            record = store.get("/counter")
            assert record is not None
            read_done.wait()  # everyone has read the same revision before anyone writes
            try:
                store.commit([Put("/counter", {"n": record.value["n"] + 1})], expect={"/counter": record.mod_revision})
                won.append(True)
            except Conflict:
                won.append(False)
            round_done.wait()
        return won

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(racer, range(THREADS)))
    winners_per_round = [sum(result[i] for result in results) for i in range(rounds)]
    assert winners_per_round == [1] * rounds
    counter = store.get("/counter")
    assert counter is not None and counter.value == {"n": rounds}


def test_concurrent_compare_and_swap_increments_lose_no_update(store: Store, store_url: str) -> None:
    start = store.commit([Put("/counter", {"n": 0})])
    # Half the threads use a second handle on the same data, as a second process (or etcd client) would.
    other = open_store(store_url)
    increments_per_thread = 10
    conflicts = 0
    conflicts_lock = threading.Lock()

    def increment_many(index: int) -> list[int]:
        nonlocal conflicts
        handle = store if index % 2 else other
        revisions: list[int] = []
        for _attempt in range(10_000):  # bounded retries: a livelock fails the test instead of hanging it
            if len(revisions) == increments_per_thread:
                return revisions
            record = handle.get("/counter")
            assert record is not None
            try:
                revisions.append(
                    handle.commit(
                        [Put("/counter", {"n": record.value["n"] + 1})], expect={"/counter": record.mod_revision}
                    )
                )
            except Conflict:
                with conflicts_lock:
                    conflicts += 1
        raise AssertionError("too many conflicts")

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            per_thread = list(pool.map(increment_many, range(THREADS)))
    finally:
        other.close()
    successes = sorted(revision for revisions in per_thread for revision in revisions)
    assert len(successes) == THREADS * increments_per_thread
    counter = store.get("/counter")
    assert counter is not None and counter.value == {"n": len(successes)}
    # Every successful commit got its own revision, and failed ones took none.
    assert successes == list(range(start + 1, start + len(successes) + 1))
    assert counter.mod_revision == store.revision() == successes[-1]


# --- errors at open ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "etcd"])
def test_unreachable_etcd_is_a_store_error(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreError) as raised:
        EtcdStore(url)
    assert type(raised.value) is StoreError
    assert f"etcd at {url} is unreachable" in str(raised.value)
    with pytest.raises(StoreError) as raised:
        open_store(url + "/tenet")
    assert type(raised.value) is StoreError
    assert f"etcd at {url} is unreachable" in str(raised.value)


class FakeServer:
    """Answers every HTTP request on a loopback port with one canned reply: something that is not etcd."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                received = b""
                while b"\r\n\r\n" not in received:  # the headers; the small JSON body comes in the same read
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                connection.sendall(self.reply)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.listener.close()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", "something unexpected"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{}", "unreachable"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno", "refused"),
    ],
    ids=["not-json", "truncated", "not-found"],
)
def test_a_server_that_is_not_etcd_is_a_store_error(reply: bytes, why: str) -> None:
    server = FakeServer(reply)
    try:
        with pytest.raises(StoreError) as raised:
            EtcdStore(f"http://127.0.0.1:{server.port}")
    finally:
        server.close()
    assert type(raised.value) is StoreError
    assert f"etcd at http://127.0.0.1:{server.port} " in str(raised.value) and why in str(raised.value)


def test_sqlite_path_that_is_a_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as raised:
        SqliteStore(tmp_path)
    assert type(raised.value) is StoreError
    assert str(tmp_path) in str(raised.value)
    with pytest.raises(StoreError):
        open_store(sqlite_url(tmp_path))


def test_sqlite_path_under_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the directory"):
        SqliteStore(tmp_path / "file" / "tenet.db")


def test_sqlite_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite database" * 200)
    with pytest.raises(StoreError, match="not a database"):
        SqliteStore(path)


# --- open_store ----------------------------------------------------------------------------------------


def test_open_store_sqlite_url_and_bare_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "with space" / "tenet.db"
    by_url = open_store(sqlite_url(path))  # percent-escaped in the URL
    try:
        assert isinstance(by_url, SqliteStore) and by_url.path == path
        by_url.commit([Put("/k", {"v": 1})])
    finally:
        by_url.close()
    by_path = open_store(str(path))
    try:
        assert isinstance(by_path, SqliteStore)
        assert by_path.get("/k") == Record("/k", {"v": 1}, 1)
    finally:
        by_path.close()
    monkeypatch.chdir(tmp_path)
    relative = open_store("state/tenet.db")
    try:
        assert isinstance(relative, SqliteStore)
        assert (tmp_path / "state" / "tenet.db").is_file()
    finally:
        relative.close()


@pytest.mark.parametrize("scheme", ["etcd", "http"])
def test_open_store_etcd_urls(etcd_server: EtcdServer, scheme: str) -> None:
    base = f"{scheme}://127.0.0.1:{etcd_server.client_port}"
    default = open_store(base)
    try:
        assert isinstance(default, EtcdStore) and default.prefix == "/tenet/"
    finally:
        default.close()
    custom = open_store(base + "/cluster-a/")
    try:
        assert isinstance(custom, EtcdStore) and custom.prefix == "/cluster-a/"
    finally:
        custom.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("mysql://db/tenet", "unknown scheme 'mysql'"),
        ("https://127.0.0.1:2379", "unknown scheme 'https'"),
        ("localhost:2379", "unknown scheme 'localhost'"),
        ("sqlite://relative/tenet.db", "host position"),
        ("sqlite:relative.db", "absolute path"),
        ("sqlite:///tmp/tenet.db?mode=ro", "query"),
        ("etcd://", "no etcd host"),
        ("etcd://:2379", "no etcd host"),
        ("etcd://127.0.0.1:notaport", "Port"),
        ("http://127.0.0.1:2379/tenet#x", "fragment"),
    ],
)
def test_open_store_rejects_other_urls(url: str, why: str) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert repr(url) in message and why in message and ACCEPTED_FORMS in message


# --- backend specifics ---------------------------------------------------------------------------------


def test_sqlite_fresh_store_is_at_revision_zero_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "nested" / "dirs" / "tenet.db")
    try:
        assert store.revision() == 0
        # synchronous is per connection: ask the store's own (FULL = 2), the guarantee behind durability.
        assert store._connection is not None
        assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 2
        store.commit([Put("/k", {})])
    finally:
        store.close()
    raw = sqlite3.connect(tmp_path / "nested" / "dirs" / "tenet.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is recorded in the file
        assert raw.execute("SELECT key, value, mod_revision FROM kv").fetchall() == [("/k", "{}", 1)]
        assert raw.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0] == 1
    finally:
        raw.close()


def test_etcd_keys_live_under_the_prefix_and_prefixes_are_isolated(etcd_server: EtcdServer) -> None:
    url = etcd_server.client_url
    short = EtcdStore(url, prefix="/iso")
    longer = EtcdStore(url, prefix="/iso2")
    try:
        short.commit([Put("/k", {"store": "short"})])
        longer.commit([Put("/k", {"store": "longer"})])
        assert [record.value for record in short.list("")] == [{"store": "short"}]
        assert [record.value for record in longer.list("")] == [{"store": "longer"}]
        # Ask etcd directly, without the store's client: the key is the prefix plus the store key.
        request = urllib.request.Request(
            f"{url}/v3/kv/range",
            data=json.dumps({"key": base64.b64encode(b"/iso//k").decode()}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            kvs = json.loads(response.read())["kvs"]
        assert [base64.b64decode(kv["value"]) for kv in kvs] == [b'{"store":"short"}']
    finally:
        short.close()
        longer.close()


def test_etcd_refuses_commits_beyond_max_txn_ops_as_a_whole(etcd_url: str) -> None:
    store = open_store(etcd_url)
    try:
        before = store.revision()
        with pytest.raises(StoreError, match="max-txn-ops") as raised:
            store.commit([Put(f"/many/{i:03d}", {"i": i}) for i in range(129)])
        assert type(raised.value) is StoreError
        assert store.list("") == [] and store.revision() == before
        assert store.commit([Put(f"/many/{i:03d}", {"i": i}) for i in range(128)]) == before + 1
    finally:
        store.close()
