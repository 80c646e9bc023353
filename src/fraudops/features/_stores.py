"""Where the online engine keeps entity state: one narrow interface, three implementations.

A :class:`StateStore` maps string keys to opaque bytes. The engine needs four things:

* ``get_many(keys) -> list[bytes | None]``: current values, ``None`` for absent keys;
* ``put_many({key: bytes | None}, ttl_ms=None)``: write several keys at once; ``None``
  deletes;
* ``update(keys, modify, ttl_ms=None) -> result``: an atomic read-modify-write. The store
  reads ``keys``, calls ``modify(values)``, which returns ``(writes, result)``, and applies
  ``writes`` so that no other writer changed any of ``keys`` in between; then it returns
  ``result``. A store may call ``modify`` more than once (optimistic stores retry on
  conflict), so ``modify`` must have no side effect besides its return value. If ``modify``
  raises, nothing is written. ``writes`` may name keys outside ``keys`` (they are written in
  the same transaction).
* ``close()``, and use as a context manager.

Idle keys expire. A key written with ``ttl_ms`` is absent, for every reader, once ``ttl_ms``
milliseconds of wall-clock time have passed without another write of it, and its space is
reclaimed: Redis drops it itself (``PX``), :class:`SQLiteStore` sweeps on a background thread,
:class:`MemoryStore` as it writes. Without it, the state of every card and terminal ever seen
would stay forever: Redis memory and the SQLite file would only grow. ``ttl_ms=None`` keeps
the key until it is overwritten or deleted.

Implementations, all real and supported:

* :class:`MemoryStore`: a dict and a lock, for one process (tests, notebooks, one worker).
* :class:`SQLiteStore`: the embedded default, safe for several processes on one machine:
  WAL journal, optimistic read-modify-writes committed in ``BEGIN IMMEDIATE`` (readers never
  block), short waits for another process's writer (:func:`fraudops.core.retry_busy`).
* :class:`RedisStore`: several serving replicas sharing state; each read-modify-write is an
  optimistic ``MGET`` then a compare-and-set script on the event's keys, retried on conflict.

Timeouts come from one place, :class:`StoreSettings`. Failures raise
:class:`fraudops.core.StoreError`, and :class:`fraudops.core.StoreTimeout` when the store did
not answer (or a lock was not granted) in time.
"""

from __future__ import annotations

import itertools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from fraudops.core import StoreError, StoreTimeout, WalCheckpointer, connect_shared, retry_busy

T = TypeVar("T")
log = logging.getLogger(__name__)
#: What ``modify`` returns: the writes to apply (``None`` deletes) and the caller's result.
Modify = Callable[[list[bytes | None]], tuple[Mapping[str, bytes | None], T]]


@dataclass(frozen=True)
class StoreSettings:
    """Timeouts and retry bounds of the state stores, in one visible place.

    Parameters
    ----------
    sqlite_timeout : float
        Seconds a SQLite writer waits for another process's transaction (busy timeout)
        before :class:`StoreTimeout`.
    redis_socket_timeout : float
        Seconds a Redis command may take before :class:`StoreTimeout`.
    redis_connect_timeout : float
        Seconds to connect to Redis before :class:`StoreError` ("unreachable").
    sqlite_synchronous : str
        ``"NORMAL"`` (default): a commit survives a crash of the process, and the fsyncs of
        WAL checkpoints keep the file consistent through a power loss; on a VM disk they put
        the p99 of a scoring call at a few ms. ``"OFF"``: no fsync at all (p99 ≈ 0.2 ms here);
        an OS crash or power loss may corrupt the file, which is then deleted and rebuilt
        from the event store. ``"FULL"``: an fsync per commit.
    sqlite_wal_autocheckpoint : int
        WAL pages (4 KiB) after which a SQLite commit copies the WAL into the database
        file, with an fsync. SQLite's default, 1000, puts that fsync (5-15 ms on a VM disk)
        on about one event in 200, above the p99; 10,000 (a WAL of up to ~40 MB) moves it
        past the p99.9.
    redis_max_attempts : int
        Attempts of one optimistic read-modify-write under contention before
        :class:`StoreTimeout`.
    sqlite_sweep_interval : float
        Seconds between two sweeps of expired keys by a :class:`SQLiteStore` (0: none; reads
        skip expired keys either way, a sweep only reclaims their space).
    """

    sqlite_timeout: float = 5.0
    sqlite_synchronous: str = "NORMAL"
    sqlite_wal_autocheckpoint: int = 10_000
    sqlite_sweep_interval: float = 600.0
    redis_socket_timeout: float = 1.0
    redis_connect_timeout: float = 1.0
    redis_max_attempts: int = 50


DEFAULT_STORE_SETTINGS = StoreSettings()


class StateStore(Protocol):
    """The interface every state store implements (see the module docstring)."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def put_many(self, items: Mapping[str, bytes | None], *, ttl_ms: int | None = None) -> None:
        ...

    def update(self, keys: Sequence[str], modify: Modify[T], *, ttl_ms: int | None = None) -> T:
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None: ...


class _Closing:
    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class MemoryStore(_Closing):
    """State in a dict of this process; thread-safe.

    ``clock``: seconds, monotonic (``time.monotonic``; tests pass their own). Keys written
    with a ``ttl_ms`` are kept in write order with their deadlines, so each write drops the
    expired ones from the front in amortised O(1).

    Examples
    --------
    >>> with MemoryStore() as store:
    ...     store.put_many({"a": b"1", "b": b"2"})
    ...     store.update(["a"], lambda values: ({"a": values[0] + b"!"}, len(values)))
    ...     store.get_many(["a", "b", "c"])
    1
    [b'1!', b'2', None]
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, bytes] = {}
        self._deadlines: dict[str, float] = {}  # keys with a TTL, oldest write first
        self._clock = clock
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._sweep(self._clock())
            return len(self._data)

    def stored_keys(self) -> list[str]:
        """Every key held (for inspection and tests)."""
        with self._lock:
            self._sweep(self._clock())
            return list(self._data)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        data = self._data
        if not self._deadlines:
            return [data.get(key) for key in keys]
        with self._lock:
            return self._read(keys, self._clock())

    def _read(self, keys: Sequence[str], now: float) -> list[bytes | None]:
        data, deadlines = self._data, self._deadlines
        return [None if deadlines.get(key, now + 1) <= now else data.get(key) for key in keys]

    def put_many(self, items: Mapping[str, bytes | None], *, ttl_ms: int | None = None) -> None:
        with self._lock:
            self._apply(items, ttl_ms, self._clock())

    def update(self, keys: Sequence[str], modify: Modify[T], *, ttl_ms: int | None = None) -> T:
        with self._lock:
            now = self._clock()
            writes, result = modify(self._read(keys, now))
            self._apply(writes, ttl_ms, now)
            return result

    def _apply(self, items: Mapping[str, bytes | None], ttl_ms: int | None, now: float) -> None:
        data, deadlines = self._data, self._deadlines
        for key, value in items.items():
            deadlines.pop(key, None)
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
                if ttl_ms is not None:
                    deadlines[key] = now + ttl_ms / 1000
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop expired keys from the front of the write order (a key written later with a
        shorter TTL waits for those before it; reads already treat it as absent)."""
        deadlines = self._deadlines
        if not deadlines or next(iter(deadlines.values())) > now:
            return
        for key in list(itertools.takewhile(lambda k: deadlines[k] <= now, deadlines)):
            del deadlines[key]
            del self._data[key]

    def close(self) -> None:
        """Nothing to release; the data stays readable."""


class SQLiteStore(_Closing):
    """State in a SQLite file, shared safely by several processes on one machine.

    Each process opens its own ``SQLiteStore`` on the same path (a connection must not cross
    a ``fork``). The file uses the WAL journal with ``synchronous=NORMAL``: a commit survives
    a crash of the process, and the last commits may be lost on power loss (state can be
    rebuilt from the event store; see ``StoreSettings.sqlite_synchronous`` for the latency
    trade-off). Each :meth:`update` computes on a plain read and commits in ``BEGIN
    IMMEDIATE`` after checking its keys did not change (else it computes again under the
    lock), so concurrent read-modify-writes are serialised; a writer waits at most
    ``settings.sqlite_timeout`` seconds for the lock, then raises :class:`StoreTimeout`.

    A key written with ``ttl_ms`` stores its deadline (``expires_ms``, Unix milliseconds of
    ``clock``, default ``time.time``, so it holds across processes and restarts); reads skip
    it once passed, and every ``settings.sqlite_sweep_interval`` seconds a thread of the store
    deletes the expired keys, a page of keys per short transaction (:meth:`sweep`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> with SQLiteStore(path) as store:
    ...     store.put_many({"k": b"v"})
    ...     store.get_many(["k", "x"])
    [b'v', None]
    """

    def __init__(self, path: str | Path, *, settings: StoreSettings = DEFAULT_STORE_SETTINGS,
                 table: str = "entity_state", clock: Callable[[], float] = time.time) -> None:
        if not table.isidentifier():
            raise ValueError(f"The 'table' parameter of SQLiteStore must be an identifier;"
                             f" got {table!r}")
        self.path = Path(path)
        self.settings = settings
        self.table = table
        self._clock = clock
        self._lock = threading.RLock()
        self._select: dict[int, str] = {}
        if settings.sqlite_synchronous not in ("OFF", "NORMAL", "FULL"):
            raise ValueError("The 'sqlite_synchronous' setting must be 'OFF', 'NORMAL' or 'FULL';"
                             f" got {settings.sqlite_synchronous!r}")
        try:
            self._db = connect_shared(self.path, timeout_s=settings.sqlite_timeout,
                                      synchronous=settings.sqlite_synchronous,
                                      wal_autocheckpoint=settings.sqlite_wal_autocheckpoint)
            self._retry(self._create_table)
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None
        # commits only append to the WAL; copying it into the file happens off the request path
        self._checkpointer = WalCheckpointer(self.path)
        self._sweeper = _Periodic(f"state-sweep:{self.path.name}", settings.sqlite_sweep_interval,
                                  self._sweep_in_background) \
            if settings.sqlite_sweep_interval > 0 else None

    def _create_table(self) -> None:
        """The table, with ``expires_ms`` (added to a table made before keys could expire)."""
        db, table = self._db, self.table
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY,"
                       " expires_ms INTEGER, value BLOB NOT NULL) WITHOUT ROWID")
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if "expires_ms" not in columns:
                db.execute(f"ALTER TABLE {table} ADD COLUMN expires_ms INTEGER")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _retry(self, action: Callable[[], T]) -> T:
        return retry_busy(action, timeout_s=self.settings.sqlite_timeout)

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreTimeout(f"SQLite state store {self.path}: {doing}: the database stayed"
                                f" locked by another process for {self.settings.sqlite_timeout}"
                                " s (sqlite_timeout)")
        return StoreError(f"SQLite state store {self.path}: {doing}: {text}")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _read(self, keys: Sequence[str], now_ms: int) -> list[bytes | None]:
        unique = list(dict.fromkeys(keys))
        sql = self._select.get(len(unique))
        if sql is None:
            marks = ",".join("?" * len(unique))
            sql = self._select[len(unique)] = (
                f"SELECT key, value FROM {self.table} WHERE key IN ({marks})"
                " AND (expires_ms IS NULL OR expires_ms > ?)")
        found = dict(self._db.execute(sql, [*unique, now_ms]).fetchall())
        return [found.get(key) for key in keys]

    def _write(self, items: Mapping[str, bytes | None], expires_ms: int | None) -> None:
        puts = [(k, expires_ms, v) for k, v in items.items() if v is not None]
        deletes = [(k,) for k, v in items.items() if v is None]
        if puts:
            self._db.executemany(f"INSERT OR REPLACE INTO {self.table} (key, expires_ms, value)"
                                 " VALUES (?, ?, ?)", puts)
        if deletes:
            self._db.executemany(f"DELETE FROM {self.table} WHERE key = ?", deletes)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._lock:
            try:
                return self._retry(lambda: self._read(keys, self._now_ms()))
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None

    def put_many(self, items: Mapping[str, bytes | None], *, ttl_ms: int | None = None) -> None:
        self.update([], lambda _: (items, None), ttl_ms=ttl_ms)

    def update(self, keys: Sequence[str], modify: Modify[T], *, ttl_ms: int | None = None) -> T:
        """Optimistic, like Redis: ``modify`` runs on a plain read, outside the write lock, and
        again under the lock only if another process changed one of ``keys`` meanwhile. The
        lock is held for a read, a compare and the writes (~50 µs), not for the feature
        computation, so workers rarely wait for one another."""
        with self._lock:
            db = self._db
            now_ms = self._now_ms()
            try:
                seen = self._retry(lambda: self._read(keys, now_ms)) if keys else []
                writes, result = modify(seen)
                self._retry(lambda: db.execute("BEGIN IMMEDIATE"))
            except sqlite3.Error as exc:
                raise self._error(exc, "begin a write transaction") from None
            try:
                if keys:
                    current = self._read(keys, now_ms)
                    if current != seen:
                        writes, result = modify(current)
                self._write(writes, None if ttl_ms is None else now_ms + ttl_ms)
                db.execute("COMMIT")
            except BaseException as exc:
                db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, "read-modify-write") from None
                raise
            return result

    def stored_keys(self) -> list[str]:
        """Every key held (for inspection and tests)."""
        with self._lock:
            return self._retry(lambda: [row[0] for row in self._db.execute(
                f"SELECT key FROM {self.table} WHERE expires_ms IS NULL OR expires_ms > ?",
                [self._now_ms()])])

    def sweep(self, *, page: int = 1000) -> int:
        """Delete the keys whose TTL has passed; returns how many.

        On a connection of its own, so the request path's connection is never held: the
        table is walked in key order, ``page`` keys per read, and each page's expired keys
        are deleted in one short write transaction that checks them again (a key written
        meanwhile is kept)."""
        read = (f"SELECT key, expires_ms FROM {self.table} WHERE key > ? ORDER BY key"
                " LIMIT ?")
        delete = f"DELETE FROM {self.table} WHERE key = ? AND expires_ms <= ?"
        deleted, after = 0, ""
        try:
            db = connect_shared(self.path, timeout_s=self.settings.sqlite_timeout,
                                synchronous=self.settings.sqlite_synchronous)
            try:
                while True:
                    rows = self._retry(partial(_fetch, db, read, (after, page)))
                    now_ms = self._now_ms()
                    expired = [(key, now_ms) for key, expires in rows
                               if expires is not None and expires <= now_ms]
                    if expired:
                        deleted += self._retry(partial(_delete, db, delete, expired))
                    if len(rows) < page:
                        return deleted
                    after = rows[-1][0]
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise self._error(exc, "sweep expired keys") from None

    def _sweep_in_background(self) -> None:
        try:
            self.sweep()
        except StoreError as exc:  # the next turn tries again; reads already skip expired keys
            log.warning("%s", exc)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.close()
        self._checkpointer.close()
        with self._lock:
            self._db.close()


def _fetch(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _delete(db: sqlite3.Connection, sql: str, rows: list[tuple[str, int]]) -> int:
    db.execute("BEGIN IMMEDIATE")
    try:
        count = db.executemany(sql, rows).rowcount
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return count


class _Periodic:
    """Calls ``action`` every ``interval_s`` on a daemon thread until closed."""

    def __init__(self, name: str, interval_s: float, action: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._action = action
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._action()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)


class RedisStore(_Closing):
    """State in Redis, shared by several serving replicas; atomic per event.

    Every :meth:`update` is optimistic, in two round trips: ``MGET`` the event's keys,
    compute, then a compare-and-set script that writes only if every key still holds what was
    read. If another replica wrote one of them in between, the script writes nothing and the
    read-modify-write starts again, after a random pause of up to 1 ms, from a fresh ``MGET`` (at most
    ``settings.redis_max_attempts`` times, then :class:`StoreTimeout`). ``WATCH``/``MULTI``/
    ``EXEC`` did the same in three round trips. The computation itself stays in Python (a
    script could only hold a lock meanwhile, blocking other replicas and left stale by a
    crashed one). Conflicts are rare (two replicas scoring the same card in the same
    millisecond), so optimism is cheap.

    Keys are stored under ``prefix``. A single Redis server (or a primary with replicas) is
    required: the keys of one event (a card and a terminal) fall in different Redis Cluster
    slots, where a multi-key transaction is refused.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db``.
    prefix : str
        Namespace of every key this store writes.
    settings : StoreSettings
        Socket, connect timeouts and the retry bound.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "fraudops:",
                 settings: StoreSettings = DEFAULT_STORE_SETTINGS) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a dependency
            raise ImportError("RedisStore needs redis-py: pip install redis") from exc
        self.url = url
        self.prefix = prefix
        self.settings = settings
        self._redis = redis
        self._where = _redact(url)
        try:
            self._pool = redis.Redis.from_url(
                url, socket_timeout=settings.redis_socket_timeout,
                socket_connect_timeout=settings.redis_connect_timeout, decode_responses=False)
        except ValueError as exc:
            raise StoreError(f"Redis state store: url {self._where!r}: {exc}") from None
        self._cas = self._pool.register_script(_COMPARE_AND_SET)
        self._connection: Any = None
        self._connecting = threading.Lock()

    @property
    def _client(self) -> Any:
        """One connection per store, opened on first use (so a store can be made while Redis
        is still starting). Taking a pooled connection per command cost ~40 µs of each
        read-modify-write (404 -> 322 µs)."""
        client = self._connection
        if client is None:
            with self._connecting:
                if self._connection is None:
                    self._connection = self._redis.Redis(
                        connection_pool=self._pool.connection_pool, single_connection_client=True)
                client = self._connection
        return client

    def _error(self, exc: Exception, doing: str) -> StoreError:
        errors = self._redis.exceptions
        if isinstance(exc, errors.TimeoutError):
            return StoreTimeout(f"Redis at {self._where}: {doing}: no answer within"
                                f" {self.settings.redis_socket_timeout} s (redis_socket_timeout)")
        if isinstance(exc, errors.ConnectionError):
            return StoreError(f"Redis unreachable at {self._where}: {doing}: {exc}")
        return StoreError(f"Redis at {self._where}: {doing}: {exc}")

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        prefix = self.prefix
        try:
            values = cast(list[bytes | None], self._client.mget([prefix + key for key in keys]))
        except self._redis.exceptions.RedisError as exc:
            raise self._error(exc, "read") from None
        return values

    def put_many(self, items: Mapping[str, bytes | None], *, ttl_ms: int | None = None) -> None:
        if not items:
            return
        prefix = self.prefix
        try:
            with self._client.pipeline(transaction=True) as pipe:
                for key, value in items.items():
                    if value is None:
                        pipe.delete(prefix + key)
                    else:
                        pipe.set(prefix + key, value, px=ttl_ms)
                pipe.execute()
        except self._redis.exceptions.RedisError as exc:
            raise self._error(exc, "write") from None

    def update(self, keys: Sequence[str], modify: Modify[T], *, ttl_ms: int | None = None) -> T:
        names = [self.prefix + key for key in keys]
        try:
            current = cast(list[bytes | None], self._client.mget(names)) if names else []
            for attempt in range(self.settings.redis_max_attempts):
                writes, result = modify(current)
                if not writes:
                    return result   # nothing to write: the values read were one snapshot
                if self._compare_and_set(names, current, writes, ttl_ms):
                    return result
                # a random pause before trying again: two writers of one key in lockstep
                # could otherwise collide on every attempt (seen: 50 in a row, in a test)
                time.sleep(random.uniform(0.0, min(1e-3, 50e-6 * 2 ** attempt)))
                current = cast(list[bytes | None], self._client.mget(names))
        except self._redis.exceptions.RedisError as exc:
            raise self._error(exc, "read-modify-write") from None
        raise StoreTimeout(f"Redis at {self._where}: keys {list(keys)[:4]} changed under"
                           f" {self.settings.redis_max_attempts} attempts in a row"
                           " (redis_max_attempts); too much contention on these entities")

    def _compare_and_set(self, names: list[str], seen: list[bytes | None],
                         writes: Mapping[str, bytes | None], ttl_ms: int | None) -> bool:
        """Apply ``writes`` if every key of ``names`` still holds what was ``seen``, in one
        round trip (a script runs atomically); False if another writer came first."""
        written = [self.prefix + key for key in writes]
        args: list[bytes | str | int] = [len(names), ttl_ms or 0,
                                         "".join("0" if v is None else "1" for v in seen)]
        args += [b"" if v is None else v for v in seen]
        args.append("".join("0" if v is None else "1" for v in writes.values()))
        args += [b"" if v is None else v for v in writes.values()]
        return bool(self._cas(keys=[*names, *written], args=args, client=self._client))

    def clear(self) -> int:
        """Delete every key under this store's prefix (a parity run's scratch state); returns
        how many were deleted."""
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=self.prefix.replace("*", "\\*") + "*",
                                               count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    deleted += int(self._client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.delete(*batch))
        except self._redis.exceptions.RedisError as exc:
            raise self._error(exc, "clear") from None
        return deleted

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._pool.close()


#: KEYS: the n keys read, then the keys to write. ARGV: n, the TTL in ms of the keys set (0:
#: none), a mask of which read keys existed, their values, a mask of which writes are sets
#: (else deletes), the values to set.
_COMPARE_AND_SET = """
local n = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local seen = ARGV[3]
for i = 1, n do
  local value = redis.call('GET', KEYS[i])
  if string.sub(seen, i, i) == '1' then
    if value ~= ARGV[3 + i] then return 0 end
  elseif value then
    return 0
  end
end
local sets = ARGV[4 + n]
for j = 1, #KEYS - n do
  if string.sub(sets, j, j) == '1' then
    if ttl > 0 then
      redis.call('SET', KEYS[n + j], ARGV[4 + n + j], 'PX', ttl)
    else
      redis.call('SET', KEYS[n + j], ARGV[4 + n + j])
    end
  else
    redis.call('DEL', KEYS[n + j])
  end
end
return 1
"""


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
