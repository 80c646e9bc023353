"""Shared SQLite files: short waits for another writer, checkpoints off the request path."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fraudops.core import WalCheckpointer, connect_shared, is_busy, retry_busy


def _holding_the_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection takes the write lock, keeps it ``seconds``, then commits."""
    taken = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (0)")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    return thread


@pytest.fixture
def db(tmp_path: Path) -> sqlite3.Connection:
    db = connect_shared(tmp_path / "x.db", timeout_s=1.0)
    db.execute("CREATE TABLE t (v INTEGER)")
    return db


def test_a_busy_writer_is_waited_for_then_the_action_runs(tmp_path: Path,
                                                         db: sqlite3.Connection) -> None:
    holder = _holding_the_write_lock(tmp_path / "x.db", 0.05)
    attempts = []

    def begin() -> None:
        attempts.append(1)
        db.execute("BEGIN IMMEDIATE")

    retry_busy(begin, timeout_s=5.0)
    db.execute("INSERT INTO t VALUES (1)")
    db.execute("COMMIT")
    holder.join()
    assert len(attempts) > 1, "the first attempt found the lock taken"
    assert sorted(v for (v,) in db.execute("SELECT v FROM t")) == [0, 1]


def test_a_lock_held_past_the_timeout_raises_the_busy_error(tmp_path: Path,
                                                            db: sqlite3.Connection) -> None:
    holder = _holding_the_write_lock(tmp_path / "x.db", 0.5)
    rolled_back = []
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            retry_busy(lambda: db.execute("BEGIN IMMEDIATE"), timeout_s=0.05,
                       on_busy=lambda: rolled_back.append(1))
        assert is_busy(raised.value)
        assert rolled_back, "on_busy ran after each busy attempt"
    finally:
        holder.join()


def test_other_errors_are_not_retried(db: sqlite3.Connection) -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        db.execute("SELECT * FROM missing_table")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_busy(broken, timeout_s=5.0)
    assert calls == [1]


def _rows_in_the_file_alone(path: Path, scratch: Path) -> int:
    """Rows readable from the database file without its WAL (what a checkpoint copied)."""
    shutil.copyfile(path, scratch)
    con = sqlite3.connect(scratch)
    try:
        found = con.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone()
        return 0 if found is None else int(con.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        con.close()


def test_the_checkpointer_copies_committed_rows_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    db = connect_shared(path, timeout_s=1.0, wal_autocheckpoint=0)   # commits never checkpoint
    db.execute("CREATE TABLE t (v INTEGER)")
    for i in range(100):
        db.execute("INSERT INTO t VALUES (?)", (i,))
    assert _rows_in_the_file_alone(path, tmp_path / "before.db") == 0, "all in the WAL so far"
    checkpointer = WalCheckpointer(path, interval_s=0.01)
    try:
        deadline = time.monotonic() + 10
        while checkpointer.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy, frames, copied = checkpointer.last or (1, -1, -2)
        assert (busy, copied) == (0, frames)
        assert frames > 0
        assert checkpointer.error is None
    finally:
        checkpointer.close()
        db.close()
    assert _rows_in_the_file_alone(path, tmp_path / "after.db") == 100
