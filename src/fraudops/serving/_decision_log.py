"""The durable decision log: every answer given, and the shadow models' scores beside it.

A decision is committed before :meth:`DecisionLog.record` returns, so an answer that reached
a payment flow is never lost to a crashed server, and ``(tenant, event_id)`` is unique, so a
retried request gets the answer already given. Monitoring and audits read the log back as
Arrow tables or export it to Parquet.

With SQLite, shadow scores live in a file of their own beside the decisions'
(:func:`shadow_scores_path`): a SQLite commit makes every other connection to the same file
drop its page cache, and the shadow thread's commits cost the next decisions those re-reads
(up to ~2 ms of the HTTP p99 with a shadow on 2 cores). Shadow scores are analysis data,
never acknowledged to anyone, so they need no transaction with the decisions.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fraudops.core import StoreError

from ._records import Decision, Reason, ShadowScore
from ._sql import Database, OnDatabase, Row, Session, from_micros, parse_url, to_micros

_DECISION_DDL = (
    ("decisions", """CREATE TABLE IF NOT EXISTS decisions (
        tenant TEXT NOT NULL, event_id TEXT NOT NULL, event_time_us BIGINT NOT NULL,
        decided_at_us BIGINT NOT NULL, model_name TEXT NOT NULL, model_version BIGINT NOT NULL,
        role TEXT NOT NULL, probability DOUBLE PRECISION NOT NULL, score BIGINT NOT NULL,
        action TEXT NOT NULL, latency_us BIGINT NOT NULL, reasons TEXT NOT NULL,
        source TEXT NOT NULL, PRIMARY KEY (tenant, event_id))"""),
    ("decisions_by_time",
     "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at_us)"),
    ("decisions_by_tenant_time",
     "CREATE INDEX IF NOT EXISTS decisions_by_tenant_time ON decisions (tenant, decided_at_us)"),
)
_SHADOW_DDL = (
    ("shadow_scores", """CREATE TABLE IF NOT EXISTS shadow_scores (
        tenant TEXT NOT NULL, event_id TEXT NOT NULL, model_name TEXT NOT NULL,
        model_version BIGINT NOT NULL, scored_at_us BIGINT NOT NULL,
        probability DOUBLE PRECISION, score BIGINT, action TEXT, latency_us BIGINT NOT NULL,
        error TEXT, PRIMARY KEY (tenant, event_id, model_name, model_version))"""),
    ("shadow_scores_by_time",
     "CREATE INDEX IF NOT EXISTS shadow_scores_by_time ON shadow_scores (scored_at_us)"),
)
_DECISION_COLUMNS = ("tenant, event_id, event_time_us, decided_at_us, model_name, model_version,"
                     " role, probability, score, action, latency_us, reasons, source")
_SHADOW_COLUMNS = ("tenant, event_id, model_name, model_version, scored_at_us, probability,"
                   " score, action, latency_us, error")
_INSERT_DECISION = (f"INSERT INTO decisions ({_DECISION_COLUMNS}) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_SELECT_DECISION = f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE tenant = ? AND event_id = ?"
_INSERT_SHADOW = (f"INSERT INTO shadow_scores ({_SHADOW_COLUMNS}) VALUES"
                  " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")

_TIME = pa.timestamp("us", tz="UTC")
DECISION_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event_id", pa.string()), ("event_time", _TIME),
    ("decided_at", _TIME), ("model_name", pa.string()), ("model_version", pa.int64()),
    ("role", pa.string()), ("probability", pa.float64()), ("score", pa.int64()),
    ("action", pa.string()), ("latency_us", pa.int64()), ("reasons", pa.string()),
    ("source", pa.string())])
SHADOW_SCHEMA = pa.schema([
    ("tenant", pa.string()), ("event_id", pa.string()), ("model_name", pa.string()),
    ("model_version", pa.int64()), ("scored_at", _TIME), ("probability", pa.float64()),
    ("score", pa.int64()), ("action", pa.string()), ("latency_us", pa.int64()),
    ("error", pa.string())])
#: Event ids per ``IN (...)`` of :meth:`DecisionLog.get_many` (SQLite's default parameter
#: limit is 999 before 3.32).
_IDS_PER_QUERY = 500
#: Rows per chunk when reading the log back (bounded memory for millions of rows).
CHUNK_ROWS = 50_000

logger = logging.getLogger("fraudops.serving")


class DecisionLog(OnDatabase):
    """Decisions and shadow scores in SQLite or PostgreSQL, shared by every serving process.

    Open with :meth:`open`; one object serves all the threads of a process (a connection per
    thread), and several processes may open the same database. ``shadow_db`` holds the shadow
    scores (the decisions' own database with PostgreSQL). Times come back as UTC; the
    ``reasons`` column of the tables is a JSON list of ``{"feature", "value",
    "contribution"}``, with non-finite numbers as ``null`` (strict JSON, readable by DuckDB
    and Spark).

    Examples
    --------
    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    >>> d = Decision("acme", "e1", when, when, "fraud-acme", 3, "live", 0.12, 12, "ALLOW", 80)
    >>> with DecisionLog.open(f"sqlite:///{tempfile.mkdtemp()}/log.db") as log:
    ...     log.record(d)[1], log.record(d)[1], log.count()
    (True, False, 1)
    """

    def __init__(self, db: Database, shadow_db: Database | None = None) -> None:
        self.db = db
        self.shadow_db = db if shadow_db is None else shadow_db

    @classmethod
    def open(cls, url: str) -> DecisionLog:
        """Connect to the log at ``url`` and create its tables if missing.

        ``url`` is ``sqlite:///<path>`` (``?synchronous=full`` for an fsync per commit, which
        also survives a power loss) or ``postgresql://user:password@host:port/dbname``
        (``?schema=name`` keeps the tables in that schema). :class:`StoreError` names the
        expected forms when the URL is neither.

        A SQLite log keeps its shadow scores in :func:`shadow_scores_path` (with
        ``synchronous=normal``: they were acknowledged to no one); shadow scores of a log
        written before that split are moved there (once, by the first process to open it).
        """
        target = parse_url(url, "decision log")
        if target.path is None:
            return cls(Database.open(url, ddl=_DECISION_DDL + _SHADOW_DDL, what="decision log",
                                     checkpoint_every_s=0.2))
        db = Database.open(url, ddl=_DECISION_DDL, what="decision log", checkpoint_every_s=0.2)
        try:
            shadow_db = Database.open(f"sqlite:///{shadow_scores_path(target.path)}",
                                      ddl=_SHADOW_DDL, what="shadow score log",
                                      checkpoint_every_s=1.0)
        except BaseException:
            db.close()
            raise
        log = cls(db, shadow_db)
        try:
            log._move_shadow_scores_out()
        except BaseException:
            log.close()
            raise
        return log

    def _move_shadow_scores_out(self) -> None:
        """Copy the shadow scores a log kept in the decisions' file, then drop them there.

        Idempotent: a copy interrupted by a crash is finished by the next open (rows already
        copied are kept), and two processes opening the log at once copy the same rows. The
        drop holds the decisions' write lock while SQLite frees the table's pages: once, when
        the first upgraded server starts.
        """
        old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'shadow_scores'"
        if self.db.one("look for shadow scores in the decisions' file", old, ()) is None:
            return
        sql = f"SELECT {_SHADOW_COLUMNS} FROM shadow_scores"
        moved = 0
        try:   # one snapshot: a table dropped by another process meanwhile is read whole
            for rows in self.db.stream(sql, (), doing="read the shadow scores to move",
                                       chunk_rows=CHUNK_ROWS):
                self.shadow_db.run(f"move {len(rows)} shadow scores",
                                   partial(_insert_shadows, rows), write=True)
                moved += len(rows)
        except StoreError as e:
            if "no such table" in str(e):
                return   # another process moved them between our look and our read
            raise
        self.db.run("drop the moved shadow scores",
                    lambda session: session.execute("DROP TABLE IF EXISTS shadow_scores"),
                    write=True)
        logger.info("decision log at %s: moved %d shadow scores to %s", self.db.target.where,
                    moved, self.shadow_db.target.where)

    def close(self) -> None:
        """Close this process's connections."""
        self.db.close()
        if self.shadow_db is not self.db:
            self.shadow_db.close()

    # -- writing ---------------------------------------------------------------------------
    def record(self, decision: Decision) -> tuple[Decision, bool]:
        """Log a decision durably; on a retry, the decision logged first.

        Returns ``(decision, True)`` once committed, or ``(stored, False)`` when ``(tenant,
        event_id)`` is already logged: the answer given first is the answer given again.
        Safe under concurrent calls from threads and processes (the database arbitrates).
        A committed decision survives a killed process; with SQLite's default
        ``synchronous=normal``, an OS crash or power loss may lose the last few commits.
        """
        if self.db.write_one("record a decision", _INSERT_DECISION, _decision_row(decision)) == 1:
            return decision, True
        return self._logged_first(decision), False

    def _logged_first(self, decision: Decision) -> Decision:
        stored = self.db.one("read the decision logged first", _SELECT_DECISION,
                             (decision.tenant, decision.event_id))
        if stored is None:  # only if someone deleted it in between
            raise StoreError(f"decision log at {self.db.target.where}: decision "
                             f"{decision.tenant}/{decision.event_id} was neither new nor found")
        return _decision(stored)

    def record_many(self, decisions: Sequence[Decision]) -> list[tuple[Decision, bool]]:
        """:meth:`record` for each decision, in one transaction (one commit for a server's
        micro-batch); each is durable when this returns. Decisions must have distinct
        ``(tenant, event_id)``."""
        if len(decisions) <= 1:
            return [self.record(d) for d in decisions]
        rows = [_decision_row(d) for d in decisions]

        def insert(session: Session) -> list[bool]:
            return [session.execute(_INSERT_DECISION, row).rowcount == 1 for row in rows]

        inserted = self.db.run(f"record {len(rows)} decisions", insert, write=True)
        # not inserted: a concurrent retry came first, and its decision is the answer
        return [(d, True) if new else (self._logged_first(d), False)
                for d, new in zip(decisions, inserted, strict=True)]

    def record_shadows(self, scores: Sequence[ShadowScore]) -> None:
        """Log a batch of shadow scores in one transaction; a score logged before is kept."""
        if not scores:
            return
        rows = [_shadow_row(s) for s in scores]
        self.shadow_db.run(f"record {len(rows)} shadow scores", partial(_insert_shadows, rows),
                           write=True)

    # -- reading ---------------------------------------------------------------------------
    def get(self, tenant: str, event_id: str) -> Decision | None:
        """The decision logged for an event, or None."""
        row = self.db.one("read a decision", _SELECT_DECISION, (tenant, event_id))
        return None if row is None else _decision(row)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decision]:
        """The decisions logged for ``(tenant, event_id)`` keys, by key (missing ones absent)."""
        if len(keys) <= 1:
            found = [self.get(*key) for key in keys]
            return {key: d for key, d in zip(keys, found, strict=True) if d is not None}
        by_tenant: dict[str, list[str]] = {}
        for tenant, event_id in keys:
            by_tenant.setdefault(tenant, []).append(event_id)

        def read(session: Session) -> list[Row]:
            rows: list[Row] = []
            for tenant, ids in by_tenant.items():
                for i in range(0, len(ids), _IDS_PER_QUERY):
                    part = ids[i:i + _IDS_PER_QUERY]
                    rows += session.all(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE"
                                        f" tenant = ? AND event_id IN ({','.join('?' * len(part))})",
                                        [tenant, *part])
            return rows

        one_query = len(by_tenant) == 1 and len(keys) <= _IDS_PER_QUERY
        rows = self.db.run("read decisions", read, single=one_query)
        return {(row[0], row[1]): _decision(row) for row in rows}

    def count(self, tenant: str | None = None) -> int:
        """How many decisions are logged (for one tenant, or all)."""
        sql, params = "SELECT COUNT(*) FROM decisions", []
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", [tenant]
        row = self.db.run("count decisions", lambda session: session.one(sql, params))
        return int(row[0]) if row is not None else 0

    def decisions(self, *, tenant: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, limit: int | None = None) -> pa.Table:
        """Decisions with ``since <= decided_at < until``, oldest first, as an Arrow table."""
        sql, params = _query("decisions", _DECISION_COLUMNS, "decided_at_us",
                             tenant, since, until, limit)
        return pa.Table.from_batches(self._batches(self.db, sql, params, DECISION_SCHEMA,
                                                   "read decisions"), schema=DECISION_SCHEMA)

    def shadow_scores(self, *, tenant: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, limit: int | None = None) -> pa.Table:
        """Shadow scores with ``since <= scored_at < until``, oldest first, as an Arrow table."""
        sql, params = _query("shadow_scores", _SHADOW_COLUMNS, "scored_at_us",
                             tenant, since, until, limit)
        return pa.Table.from_batches(self._batches(self.shadow_db, sql, params, SHADOW_SCHEMA,
                                                   "read shadow scores"), schema=SHADOW_SCHEMA)

    def export_parquet(self, directory: str | Path, *, tenant: str | None = None,
                       chunk_rows: int = CHUNK_ROWS) -> list[Path]:
        """Write ``decisions.parquet`` and ``shadow_scores.parquet`` into ``directory``.

        Rows are streamed ``chunk_rows`` at a time (one row group each), so memory stays
        bounded for millions of rows. Each file is written under a temporary name and renamed
        when complete: a reader never sees half a file. Each file is one snapshot of its
        table, taken one after the other (shadow scores logged in between may appear).
        """
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"The 'chunk_rows' parameter of export_parquet must be an integer >= 1;"
                             f" got {chunk_rows!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for db, name, columns, time, schema in (
                (self.db, "decisions", _DECISION_COLUMNS, "decided_at_us", DECISION_SCHEMA),
                (self.shadow_db, "shadow_scores", _SHADOW_COLUMNS, "scored_at_us", SHADOW_SCHEMA)):
            sql, params = _query(name, columns, time, tenant, None, None, None)
            path = directory / f"{name}.parquet"
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            try:
                with pq.ParquetWriter(partial, schema) as writer:
                    for batch in self._batches(db, sql, params, schema, f"export {name}",
                                               chunk_rows):
                        writer.write_batch(batch)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
            written.append(path)
        return written

    @staticmethod
    def _batches(db: Database, sql: str, params: Sequence[Any], schema: pa.Schema, doing: str,
                 chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
        for rows in db.stream(sql, params, doing=doing, chunk_rows=chunk_rows):
            columns = list(zip(*rows, strict=True))
            yield pa.record_batch([pa.array(c, type=f.type) for c, f in zip(columns, schema,
                                                                            strict=True)],
                                  schema=schema)


def _insert_shadows(rows: Sequence[Row], session: Session) -> None:
    session.many(_INSERT_SHADOW, rows)


def shadow_scores_path(decisions: Path) -> Path:
    """The SQLite file of the shadow scores of a decision log kept in ``decisions``
    (``serving.db`` → ``serving.shadow-scores.db``): back both up together."""
    return decisions.with_name(f"{decisions.stem}.shadow-scores{decisions.suffix or '.db'}")


def _query(table: str, columns: str, time: str, tenant: str | None, since: datetime | None,
           until: datetime | None, limit: int | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if since is not None:
        where.append(f"{time} >= ?")
        params.append(to_micros(since, "since"))
    if until is not None:
        where.append(f"{time} < ?")
        params.append(to_micros(until, "until"))
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {time}, tenant, event_id"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"The 'limit' parameter must be an integer >= 0 or None; got {limit!r}")
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


# -- records <-> rows --------------------------------------------------------------------------
def _decision_row(d: Decision) -> tuple[Any, ...]:
    where = f"decision {d.tenant}/{d.event_id}: field"
    return (d.tenant, d.event_id, to_micros(d.event_time, f"{where} 'event_time'"),
            to_micros(d.decided_at, f"{where} 'decided_at'"), d.model_name, int(d.model_version),
            d.role, float(d.probability), int(d.score), d.action, int(d.latency_us),
            _reasons_json(d.reasons), d.source)


def _decision(row: Row) -> Decision:
    return Decision(
        tenant=row[0], event_id=row[1], event_time=from_micros(row[2]),
        decided_at=from_micros(row[3]), model_name=row[4], model_version=row[5], role=row[6],
        probability=row[7], score=row[8], action=row[9], latency_us=row[10],
        reasons=tuple(Reason(r["feature"], r["value"],
                             math.nan if r["contribution"] is None else r["contribution"])
                      for r in json.loads(row[11])),
        source=row[12])


def _reasons_json(reasons: Sequence[Reason]) -> str:
    return orjson.dumps([{"feature": r.feature, "value": _finite(r.value),
                          "contribution": _finite(float(r.contribution))}
                         for r in reasons]).decode()


def _finite(value: float | None) -> float | None:
    """``value`` as a JSON number, or None (NaN and infinities are not JSON)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _shadow_row(s: ShadowScore) -> tuple[Any, ...]:
    return (s.tenant, s.event_id, s.model_name, int(s.model_version),
            to_micros(s.scored_at, f"shadow score {s.tenant}/{s.event_id}: field 'scored_at'"),
            None if s.probability is None else float(s.probability),
            None if s.score is None else int(s.score), s.action, int(s.latency_us), s.error)
