"""kill -9 between writes loses no acknowledged write.

A child process commits numbered keys in a loop and prints each one only after `commit` returned. The
parent SIGKILLs it (or, for etcd, the etcd server under it) while it is still writing, reopens the store
and checks that every printed write is there, with the revision the child was told.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from controller.store.base import StoreError
from controller.store.open import open_store
from controller.store.sqlite import SqliteStore
from tests.etcd_server import EtcdServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ACKS_BEFORE_KILL = 50
DEADLINE_SECONDS = 30.0

WRITER = textwrap.dedent(
    """
    import sys
    from controller.store.base import Put
    from controller.store.open import open_store

    store = open_store(sys.argv[1])
    number = 0
    while True:
        revision = store.commit([Put(f"/durable/{number:06d}", {"number": number, "pad": "x" * 200})])
        print(number, revision, flush=True)  # only now is the write acknowledged
        number += 1
    """
)


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class Writer:
    """The child process and the acknowledgements it printed, read with deadlines."""

    def __init__(self, url: str, stderr_path: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, stderr=stderr, env=env
            )
        assert self.process.stdout is not None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=_pump, args=(self.process.stdout, self._lines), daemon=True)
        self._reader.start()
        self.acks: dict[int, int] = {}  # number -> revision
        self.eof = False

    def _take(self, line: bytes | None) -> None:
        if line is None:
            self.eof = True
        elif line.endswith(b"\n"):  # a torn last line would not be an acknowledgement
            number, revision = line.split()
            self.acks[int(number)] = int(revision)

    def wait_for_acks(self, count: int) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(self.acks) < count:
            if self.eof:
                pytest.fail(f"the writer stopped after {len(self.acks)} writes:\n{self.stderr()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"only {len(self.acks)} of {count} writes acknowledged in {DEADLINE_SECONDS:.0f} s")
            try:
                self._take(self._lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def drain(self) -> None:
        """Collect what the child printed before it died: those writes were acknowledged too."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail("the writer's output did not end")
            try:
                self._take(self._lines.get(timeout=remaining))
            except queue.Empty:
                continue
        self.process.wait(timeout=DEADLINE_SECONDS)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()


def assert_all_acknowledged_writes_present(url: str, acks: dict[int, int]) -> None:
    store = open_store(url)
    try:
        for number, revision in acks.items():
            record = store.get(f"/durable/{number:06d}")
            assert record is not None, f"acknowledged write {number} (revision {revision}) is lost"
            assert record.value == {"number": number, "pad": "x" * 200}
            assert record.mod_revision == revision
        assert store.revision() >= max(acks.values())
        # The child's writes are numbered in order: everything acknowledged is one unbroken run from 0.
        assert sorted(acks) == list(range(len(acks)))
    finally:
        store.close()


def test_kill_9_of_the_writer_loses_no_acknowledged_write(store_url: str, tmp_path: Path) -> None:
    writer = Writer(store_url, tmp_path / "writer.stderr")
    try:
        writer.wait_for_acks(ACKS_BEFORE_KILL)
        assert writer.process.poll() is None, "the writer must still be writing when it is killed"
        writer.process.send_signal(signal.SIGKILL)
        writer.drain()
        assert writer.process.returncode == -signal.SIGKILL
    finally:
        writer.stop()
    assert len(writer.acks) >= ACKS_BEFORE_KILL
    assert_all_acknowledged_writes_present(store_url, writer.acks)
    if store_url.startswith("sqlite://"):
        store = open_store(store_url)
        assert isinstance(store, SqliteStore)
        store.close()
        raw = sqlite3.connect(store.path)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            raw.close()


def test_kill_9_of_etcd_loses_no_acknowledged_write(tmp_path: Path) -> None:
    # A private etcd: killing the session's server would disturb the other tests.
    with EtcdServer() as server:
        url = f"etcd://127.0.0.1:{server.client_port}/crash"
        watcher = open_store(url)
        writer = Writer(url, tmp_path / "writer.stderr")
        try:
            writer.wait_for_acks(ACKS_BEFORE_KILL)
            assert writer.process.poll() is None, "the writer must still be writing when etcd is killed"
            server.kill()
            writer.drain()
            # The writer's next commit fails with the store's own error, not a raw HTTP exception.
            assert writer.process.returncode == 1
            assert "controller.store.base.StoreError: etcd at" in writer.stderr()
            with pytest.raises(StoreError, match="unreachable"):
                watcher.get("/durable/000000")
            server.start()  # same member, same data directory
            # A store opened before the crash works again once etcd is back.
            assert watcher.get("/durable/000000") is not None
        finally:
            writer.stop()
            watcher.close()
        assert len(writer.acks) >= ACKS_BEFORE_KILL
        assert_all_acknowledged_writes_present(url, writer.acks)
