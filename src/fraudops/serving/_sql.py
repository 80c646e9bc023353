"""A tiny connection layer over ``sqlite3`` and ``psycopg`` for the serving stores, chosen by URL.

The serving stores write on the scoring path, so they use the raw drivers (no SQLAlchemy) and
keep one connection per thread: FastAPI runs ``def`` endpoints in a thread pool, and a
connection serves one thread at a time. Statements are written once, with ``?`` placeholders
and SQL that both databases accept; :class:`Session` translates them for PostgreSQL.

URLs
----
``sqlite:///<path>``
    A file, relative to the working directory (``sqlite:////abs/path.db`` for an absolute
    path, as in SQLAlchemy); parent folders are created. Several processes on one machine may
    share it (WAL journal, 5 s busy timeout). With the default ``synchronous=NORMAL`` a
    committed transaction survives a killed process; only an OS crash or a power loss can lose
    the last commits (never corrupt the file). ``?synchronous=full`` adds an fsync per commit,
    which survives those too, at the cost of the fsync's latency on every commit.
``postgresql://user:password@host:port/dbname[?schema=name&<libpq parameters>]``
    (also ``postgres://`` and SQLAlchemy's ``postgresql+psycopg://``). ``schema`` is ours, not
    libpq's: the tables live in that schema, created if missing (isolation for tests, or
    several deployments in one database). Each connection waits at most 5 s for a lock.

Errors of the drivers become :class:`fraudops.core.StoreError` (:class:`~fraudops.core.
StoreTimeout` for a lock not granted in time), naming the database, password redacted, and
what was being done.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from fraudops.core import (
    InputError,
    StoreError,
    StoreTimeout,
    WalCheckpointer,
    connect_shared,
    retry_busy,
)

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]
T = TypeVar("T")

#: Seconds to wait for a lock held by another connection (and to connect to PostgreSQL).
LOCK_TIMEOUT_SECONDS = 5.0
#: WAL pages (4 KiB) after which a SQLite commit checkpoints (with an fsync). SQLite's 1000
#: puts that fsync on about one decision in 250; 10,000 moves it past the p99.9.
SQLITE_WAL_AUTOCHECKPOINT = 10_000
_URL_FORMS = "'sqlite:///<path>' or 'postgresql://user@host:port/dbname'"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class _Target:
    """A parsed URL: what to connect to, and how to name it in messages."""

    dialect: Dialect
    where: str                      # the URL with its password redacted
    path: Path | None = None        # sqlite
    synchronous: str = "NORMAL"     # sqlite
    conninfo: str = ""              # postgresql, for libpq
    schema: str | None = None       # postgresql


class Session:
    """One thread's connection; ``?`` placeholders in both dialects."""

    __slots__ = ("_sql", "dialect", "raw")

    def __init__(self, raw: Any, dialect: Dialect, sql_cache: dict[str, str]) -> None:
        self.raw = raw
        self.dialect = dialect
        self._sql = sql_cache

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the driver's cursor (``rowcount``, ``fetchone``...)."""
        if self.dialect == "sqlite":
            return self.raw.execute(sql, params)
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = sql.replace("?", "%s")
        return self.raw.execute(translated, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self.execute(sql, params).fetchall()
        return rows

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.dialect == "sqlite":
            self.raw.executemany(sql, rows)
        else:
            with self.raw.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)


class Database:
    """Thread-local connections to one database, with transactions that translate errors.

    Use :meth:`open`; ``what`` names the store in error messages ("decision log").
    """

    def __init__(self, target: _Target, what: str) -> None:
        self.target = target
        self.what = what
        self._local = threading.local()
        self._sql: dict[str, str] = {}
        self._lock = threading.Lock()
        self._write_mutex = threading.Lock()
        self._open: list[tuple[threading.Thread, int, Any]] = []
        self._closed = False
        self._checkpointer: WalCheckpointer | None = None

    @classmethod
    def open(cls, url: str, *, ddl: Sequence[tuple[str, str]], what: str,
             checkpoint_every_s: float | None = None) -> Database:
        """Connect, and create the tables and indexes that are missing.

        ``checkpoint_every_s``: a SQLite database written on the request path (the decision
        log) checkpoints its WAL on a thread of its own at that interval
        (:class:`fraudops.core.WalCheckpointer`), so no commit stalls on it.

        ``ddl`` pairs each statement with the table or index it creates; a statement runs only
        if that object is missing. So opening an existing database takes no lock: a server
        restarting beside busy workers never blocks their writes, and never deadlocks with
        them. Two processes creating a new database at once are serialised (PostgreSQL: an
        advisory lock; SQLite: its write lock) and the second finds everything there.
        """
        db = cls(parse_url(url, what), what)
        names = sorted({name for name, _ in ddl})

        def create(session: Session) -> None:
            if db.dialect == "postgresql":
                session.execute("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK,))
                schema = db.target.schema
                if schema is not None and session.one(
                        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = ?", (schema,)) is None:
                    session.execute(f'CREATE SCHEMA "{schema}"')
            existing = db._existing(session, names)
            for name, statement in ddl:
                if name not in existing:
                    session.execute(statement)

        try:
            # a second process opening a fresh SQLite file while the first switches it to WAL
            # is answered "busy", even without a writer: run() waits that out
            found = db.run("look for the tables", lambda s: db._existing(s, names))
            if found != set(names):
                db.run("create the tables", create, write=True)
            if checkpoint_every_s is not None and db.target.path is not None:
                db._checkpointer = WalCheckpointer(db.target.path, interval_s=checkpoint_every_s)
        except BaseException:
            db.close()
            raise
        return db

    def _existing(self, session: Session, names: Sequence[str]) -> set[str]:
        """Which of the named tables and indexes exist (in the schema tables are created in)."""
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(names))
            rows = session.all(f"SELECT name FROM sqlite_master WHERE name IN ({marks})", names)
        else:
            rows = session.all("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
                               " n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
                               " AND c.relname = ANY(?)", (list(names),))
        return {str(row[0]) for row in rows}

    @property
    def dialect(self) -> Dialect:
        return self.target.dialect

    # -- transactions ----------------------------------------------------------------------
    def run(self, doing: str, work: Callable[[Session], T], *, write: bool = False,
            single: bool = False) -> T:
        """``work(session)`` in one transaction: committed if ``write``, else only read.

        ``single``: ``work`` runs one statement, which SQLite makes its own transaction (no
        BEGIN/COMMIT round: the per-decision retry check and log insert).

        SQLite writers take the write lock up front (``BEGIN IMMEDIATE``: a transaction that
        read first could fail on the upgrade instead of waiting); the threads of one process
        queue on a mutex, other processes are waited for in short sleeps
        (:func:`fraudops.core.retry_busy`), and ``work`` runs again after a busy answer
        (its transaction was rolled back). A PostgreSQL connection found dead before the
        commit (server restarted, idle connection dropped) is replaced and ``work`` run once
        more: the server discarded the unfinished transaction, so nothing is done twice.
        """
        if self.dialect == "sqlite":
            with self._write_mutex if write else nullcontext():
                return self._run_sqlite(doing, work, write, single)
        for attempt in (1, 2):
            session, reused = self._session(doing)
            try:
                result = work(session)
            except BaseException as exc:
                self._end(session, commit=False, doing=doing)
                if attempt == 1 and reused and isinstance(exc, psycopg.OperationalError) \
                        and session.raw.broken:
                    continue
                if isinstance(exc, psycopg.Error):
                    raise self.error(exc, doing) from None
                raise
            self._end(session, commit=write, doing=doing)
            return result
        raise StoreError(f"{self.what} at {self.target.where}: {doing}: no connection")  # unreachable

    def one(self, doing: str, sql: str, params: Sequence[Any]) -> Row | None:
        """The first row of one query."""
        return self.run(doing, lambda session: session.one(sql, params), single=True)

    def write_one(self, doing: str, sql: str, params: Sequence[Any]) -> int:
        """Run one writing statement, committed; its row count."""
        return self.run(doing, lambda session: int(session.execute(sql, params).rowcount),
                        write=True, single=True)

    def _run_sqlite(self, doing: str, work: Callable[[Session], T], write: bool,
                    single: bool) -> T:
        session, _ = self._session(doing)
        raw = session.raw

        def attempt() -> T:
            if single:
                return work(session)
            raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(session)
                raw.execute("COMMIT" if write else "ROLLBACK")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            return result

        try:
            return retry_busy(attempt, timeout_s=LOCK_TIMEOUT_SECONDS)
        except sqlite3.Error as exc:
            raise self.error(exc, doing) from None

    def _end(self, session: Session, *, commit: bool, doing: str) -> None:
        """Commit or roll back (PostgreSQL); a broken connection is dropped so the next call
        reconnects."""
        failure: psycopg.Error | None = None
        try:
            if commit:
                session.raw.commit()
            else:
                session.raw.rollback()
        except psycopg.Error as exc:
            failure = exc
        broken = bool(session.raw.broken or session.raw.closed)
        if broken:
            self._local.session = None
        if failure is not None and commit:
            unknown = " (the connection broke during the commit: it may or may not be saved)"
            raise self.error(failure, doing + (unknown if broken else "")) from None

    def stream(self, sql: str, params: Sequence[Any], *, doing: str,
               chunk_rows: int) -> Iterator[list[Row]]:
        """The rows of one query in chunks, on a connection of its own, without loading them all.

        PostgreSQL reads through a server-side cursor; SQLite steps its cursor (a WAL reader
        does not block writers).
        """
        raw = self._connect(doing)
        try:
            if self.dialect == "sqlite":
                raw.execute("BEGIN")
                cursor = retry_busy(lambda: raw.execute(sql, params), timeout_s=LOCK_TIMEOUT_SECONDS)
            else:
                cursor = raw.cursor(name=f"fraudops_stream_{threading.get_ident()}")
                cursor.itersize = chunk_rows
                cursor.execute(sql.replace("?", "%s"), params)
            while rows := cursor.fetchmany(chunk_rows):
                yield rows
        except (sqlite3.Error, psycopg.Error) as exc:
            raise self.error(exc, doing) from None
        finally:
            raw.close()

    # -- connections -----------------------------------------------------------------------
    def _session(self, doing: str) -> tuple[Session, bool]:
        """This thread's session, and whether it was used before (it may have gone stale)."""
        session: Session | None = getattr(self._local, "session", None)
        if session is not None and self._local.pid == os.getpid():
            return session, True
        if self._closed:
            raise StoreError(f"{self.what} at {self.target.where}: {doing}: used after close()")
        raw = self._connect(doing)
        self._remember(raw, doing)
        self._local.session = session = Session(raw, self.dialect, self._sql)
        self._local.pid = os.getpid()
        return session, False

    def _remember(self, raw: Any, doing: str) -> None:
        """Track connections so :meth:`close` closes them; close those of finished threads."""
        with self._lock:
            if self._closed:
                raw.close()
                raise StoreError(f"{self.what} at {self.target.where}: {doing}: used after close()")
            pid = os.getpid()
            keep = []
            for thread, owner, other in self._open:
                if owner == pid and not thread.is_alive():
                    other.close()
                elif owner == pid:
                    keep.append((thread, owner, other))
            keep.append((threading.current_thread(), pid, raw))
            self._open = keep

    def _connect(self, doing: str) -> Any:
        try:
            if self.dialect == "sqlite":
                return _connect_sqlite(self.target)
            return _connect_postgresql(self.target)
        except (sqlite3.Error, psycopg.Error, OSError) as exc:
            raise self.error(exc, f"connect (to {doing})") from None

    def error(self, exc: BaseException, doing: str) -> StoreError:
        """The driver's error as a :class:`StoreError` naming the store, the database and ``doing``."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"{self.what} at {self.target.where}: {doing}"
        timed_out = isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled) \
            or (isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text))
        if timed_out:
            return StoreTimeout(f"{where}: timed out waiting for another transaction (locks are"
                                f" awaited {LOCK_TIMEOUT_SECONDS:g} s): {text}")
        return StoreError(f"{where}: {text}")

    def close(self) -> None:
        """Close every connection this process opened; the object cannot be used again."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self._closed = True
            opened, self._open = self._open, []
        for _, owner, raw in opened:
            if owner == os.getpid():
                raw.close()
        self._local = threading.local()


_DDL_LOCK = zlib.crc32(b"fraudops.serving schema")


def parse_url(url: str, what: str) -> _Target:
    """Check a store URL; errors say which forms are expected."""
    if not isinstance(url, str):
        raise StoreError(f"{what}: the URL must be a string ({_URL_FORMS}); got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return _parse_sqlite(url, what)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return _parse_postgresql(url, what)
    raise StoreError(f"{what}: unsupported database URL {redact(url)!r}: the scheme must be "
                     f"'sqlite' or 'postgresql' ({_URL_FORMS})")


def _parse_sqlite(url: str, what: str) -> _Target:
    if not url.startswith("sqlite:///"):
        raise StoreError(f"{what}: SQLite URL {url!r} must be 'sqlite:///<path>' "
                         "(three slashes, then the file; four for an absolute path)")
    path, _, query = url[len("sqlite:///"):].partition("?")
    if not path or path == ":memory:":
        raise StoreError(f"{what}: SQLite URL {url!r} must name a file (an in-memory database"
                         " would be a different one in each thread)")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise StoreError(f"{what}: SQLite URL {url!r}: unknown parameter(s) {sorted(unknown)};"
                         " only 'synchronous' (normal or full)")
    synchronous = options.get("synchronous", "normal").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise StoreError(f"{what}: SQLite URL {url!r}: 'synchronous' must be 'normal' or 'full';"
                         f" got {options['synchronous']!r}")
    # absolute now: each thread connects later, and the working directory may change meanwhile
    return _Target("sqlite", url, path=Path(path).absolute(), synchronous=synchronous)


def _parse_postgresql(url: str, what: str) -> _Target:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not _IDENTIFIER.match(schema):
        raise StoreError(f"{what}: PostgreSQL URL {redact(url)!r}: 'schema' must be an identifier"
                         f" (letters, digits, '_'); got {schema!r}")
    rest = [(k, v) for k, v in query if k != "schema"]
    if not any(k == "connect_timeout" for k, _ in rest):
        rest.append(("connect_timeout", str(int(LOCK_TIMEOUT_SECONDS))))
    conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
    return _Target("postgresql", redact(url), conninfo=conninfo, schema=schema)


def _connect_sqlite(target: _Target) -> sqlite3.Connection:
    path = Path(target.path or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    return connect_shared(path, timeout_s=LOCK_TIMEOUT_SECONDS, synchronous=target.synchronous,
                          wal_autocheckpoint=SQLITE_WAL_AUTOCHECKPOINT)


def _connect_postgresql(target: _Target) -> psycopg.Connection[Row]:
    raw = psycopg.connect(target.conninfo, autocommit=False)
    try:
        raw.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_SECONDS * 1000)}")
        if target.schema is not None:
            raw.execute(f'SET search_path TO "{target.schema}"')
        raw.commit()
    except psycopg.Error:
        raw.close()
        raise
    return raw


def redact(url: str) -> str:
    """The URL without its password (in the authority or as a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
        query = "&".join(f"{k}=***" if k == "password" else f"{k}={v}"
                         for k, v in parse_qsl(parts.query, keep_blank_values=True))
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "<unparsable URL>"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime, what: str) -> int:
    """Microseconds since the epoch, exactly (times are stored as integers in both dialects)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"{what} = {moment!r}: not a timezone-aware datetime (use UTC)")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC datetime of :func:`to_micros`."""
    return _EPOCH + timedelta(microseconds=micros)


class OnDatabase:
    """``close()`` and the context manager of a store kept in one :class:`Database`."""

    db: Database

    def close(self) -> None:
        """Close this process's connections."""
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
