"""SQLite files shared by several processes: WAL, and waits for a busy writer of µs, not ms.

Several serving workers write the same files (online state, decision log) hundreds of times a
second. SQLite's own busy handler sleeps 1, 2, 5, 10, ... ms between attempts to take a lock
that is typically held for 50–300 µs, so every collision between two workers cost at least a
millisecond: at 1,000 decisions a second the scoring engine's p99 was 22 ms while the cores
were a third idle. Connections opened here answer "busy" at once (``busy_timeout = 0`` once
set up) and :func:`retry_busy` tries again after sleeps that start at 50 µs and double up to
1 ms, until the caller's timeout.

The other stall is the WAL checkpoint: by default the commit that crosses the WAL size limit
copies the whole WAL into the database and fsyncs it, up to 35 ms measured on one decision in
about a thousand. :class:`WalCheckpointer` does that work on a thread of its own, a little at
a time, so commits on the request path only append to the WAL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: first and longest sleep between two attempts on a busy database, in seconds
FIRST_PAUSE_S = 50e-6
LONGEST_PAUSE_S = 1e-3


def connect_shared(path: str | Path, *, timeout_s: float, synchronous: str = "NORMAL",
                   wal_autocheckpoint: int = 10_000) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread.

    Opening waits up to ``timeout_s`` for another process switching a fresh file to WAL;
    afterwards every busy answer is immediate and is waited out by :func:`retry_busy`.
    """
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        # switching a fresh file to WAL while another process does can answer "locked" at
        # once, without SQLite's busy handler: waited out here too
        retry_busy(lambda: db.execute("PRAGMA journal_mode = WAL"), timeout_s=timeout_s)
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
        db.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error:
        db.close()
        raise
    return db


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" / "busy" (worth waiting for)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc)
    return "locked" in text or "busy" in text


def retry_busy(action: Callable[[], T], *, timeout_s: float,
               on_busy: Callable[[], None] | None = None) -> T:
    """``action()``, tried again while SQLite answers busy, for at most ``timeout_s``.

    ``on_busy`` runs after each busy attempt (a rollback of the failed transaction). After
    the timeout the last busy error is raised for the caller to translate.
    """
    try:
        return action()
    except sqlite3.OperationalError as exc:
        if not is_busy(exc):
            raise
        if on_busy is not None:
            on_busy()
    deadline = time.monotonic() + timeout_s
    pause = FIRST_PAUSE_S
    while True:
        time.sleep(pause)
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
            if on_busy is not None:
                on_busy()
        pause = min(pause * 2, LONGEST_PAUSE_S)


class WalCheckpointer:
    """Checkpoints a WAL database every ``interval_s`` on a daemon thread of its own.

    ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection: it neither waits for nor blocks
    readers and writers, and when another process's checkpointer holds the checkpoint lock it
    skips that turn. Commits then find the WAL small and never cross ``wal_autocheckpoint``
    (which stays as the safety net when no checkpointer runs). ``last`` is the latest
    ``(busy, wal_frames, checkpointed_frames)``; errors are kept in ``error``, never raised
    into the serving path.
    """

    def __init__(self, path: str | Path, *, interval_s: float = 0.2) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.runs = 0
        self.last: tuple[int, int, int] | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint:{self.path.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 0")
            while not self._stop.wait(self.interval_s):
                try:
                    row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.last = (int(row[0]), int(row[1]), int(row[2]))
                    self.runs += 1
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        self.error = str(exc)
        except sqlite3.Error as exc:
            self.error = str(exc)
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        """Stop the thread (one more checkpoint is not needed: the WAL is durable)."""
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(5.0)
