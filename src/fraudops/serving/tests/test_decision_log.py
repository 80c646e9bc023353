"""The decision log keeps every acknowledged answer, once, on SQLite and on real PostgreSQL.

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``) with a schema of their
own, dropped afterwards; they are skipped (with the reason) only when it is unreachable.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from fraudops.core import InputError, StoreError, StoreTimeout
from fraudops.serving import Decision, DecisionLog, Reason, ShadowScore, _decision_log
from fraudops.serving import _sql as sql

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/serving/log.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def log(url: str) -> Iterator[DecisionLog]:
    with DecisionLog.open(url) as opened:
        yield opened


def decision(event_id: str, *, tenant: str = "acme", score: int = 12,
             decided_at: datetime = T0, reasons: tuple[Reason, ...] = ()) -> Decision:
    return Decision(tenant=tenant, event_id=event_id, event_time=decided_at - timedelta(seconds=1),
                    decided_at=decided_at, model_name=f"fraud-{tenant}", model_version=3,
                    role="live", probability=score / 100, score=score, action="ALLOW",
                    latency_us=85, reasons=reasons)


def shadow(event_id: str, *, tenant: str = "acme", scored_at: datetime = T0,
           error: str | None = None) -> ShadowScore:
    failed = error is not None
    return ShadowScore(tenant=tenant, event_id=event_id, model_name=f"fraud-{tenant}",
                       model_version=4, scored_at=scored_at,
                       probability=None if failed else 0.4, score=None if failed else 40,
                       action=None if failed else "REVIEW", latency_us=120, error=error)


def start_together(script: str, *argv: list[str]) -> list[subprocess.Popen[str]]:
    """Start one process per ``argv``, and let them go only once all have imported fraudops."""
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in argv]
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n", p.communicate()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


# -- recording ---------------------------------------------------------------------------------
def test_recorded_decision_reads_back_equal(log: DecisionLog) -> None:
    d = decision("e1", reasons=(Reason("amount_cents_sum_24h_by_card", 125_000.0, 0.75),
                                Reason("card_age_days", None, -0.25)))
    assert log.record(d) == (d, True)
    assert log.get("acme", "e1") == d
    assert log.get("acme", "missing") is None


def test_retry_returns_the_decision_logged_first(log: DecisionLog) -> None:
    first = decision("e1", score=12)
    log.record(first)
    assert log.record(decision("e1", score=97)) == (first, False)
    assert log.get("acme", "e1") == first
    assert log.count() == 1


def test_same_event_id_of_two_tenants_are_two_decisions(log: DecisionLog) -> None:
    assert log.record(decision("e1", tenant="acme"))[1]
    assert log.record(decision("e1", tenant="globex"))[1]
    assert (log.count(), log.count("acme"), log.count("globex"), log.count("nobody")) == (2, 1, 1, 0)


def test_non_finite_reason_numbers_are_stored_as_json_null(log: DecisionLog) -> None:
    log.record(decision("e1", reasons=(Reason("f", math.inf, math.nan),)))
    stored = log.get("acme", "e1")
    assert stored is not None
    assert stored.reasons[0].value is None
    assert math.isnan(stored.reasons[0].contribution)
    assert json.loads(log.decisions().column("reasons")[0].as_py()) == [
        {"feature": "f", "value": None, "contribution": None}]


def test_naive_datetime_is_refused_naming_the_field(log: DecisionLog) -> None:
    naive = decision("e1", decided_at=datetime(2024, 5, 1, 12))
    with pytest.raises(InputError, match=r"'event_time'.*timezone-aware"):
        log.record(naive)


def test_concurrent_threads_log_each_event_once(log: DecisionLog) -> None:
    """Eight threads retry the same 40 events: one insert per event, all see the same answer."""
    results: list[list[tuple[Decision, bool]]] = [[] for _ in range(8)]

    def work(n: int) -> None:
        results[n] = [log.record(decision(f"e{i}", score=n)) for i in range(40)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(40):
        answers = [results[n][i] for n in range(8)]
        assert sum(inserted for _, inserted in answers) == 1
        assert len({d for d, _ in answers}) == 1
        assert log.get("acme", f"e{i}") == answers[0][0]
    assert log.count() == 40


WRITER = """
import sys
from datetime import UTC, datetime
from fraudops.serving import Decision, DecisionLog
url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
log = DecisionLog.open(url)
for i in range(n):
    now = datetime.now(UTC)
    d = Decision("acme", f"e{i}", now, now, "fraud-acme", 1, "live", 0.5, worker, "ALLOW", 10)
    stored, inserted = log.record(d)
    print(d.event_id, int(inserted), stored.score, flush=True)
"""


def test_two_processes_log_each_event_once(url: str) -> None:
    """Two serving workers open the same new database at once and race on the same events."""
    procs = start_together(WRITER, [url, "1", "1000"], [url, "2", "1000"])
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    lines = [line.split() for out, _ in outputs for line in out.splitlines()]
    inserted = [event for event, new, _ in lines if new == "1"]
    assert sorted(inserted) == sorted(f"e{i}" for i in range(1000))
    with DecisionLog.open(url) as log:
        assert log.count() == 1000
        for event, _, score in lines:
            stored = log.get("acme", event)
            assert stored is not None
            assert stored.score == int(score)


def test_acknowledged_decisions_survive_a_killed_process(url: str) -> None:
    """SIGKILL a writer mid-stream: every decision it acknowledged is in the log."""
    (proc,) = start_together(WRITER, [url, "1", "1000000"])
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:  # the same buffered reader before and after the kill
        if not line.endswith("\n"):
            break  # cut by the kill: no whole acknowledgement
        acked.append(line.split()[0])
        if len(acked) == 300:
            os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 300 <= len(acked) < 1_000_000
    with DecisionLog.open(url) as log:
        missing = [event for event in acked if log.get("acme", event) is None]
        assert not missing, f"{len(missing)} acknowledged decisions lost, e.g. {missing[:3]}"
        assert log.count() >= len(acked)


def test_dropped_postgresql_connection_is_replaced_without_failing(postgres_url: str) -> None:
    """A server restart or a dropped idle connection costs no decision: the call reconnects."""
    with DecisionLog.open(postgres_url) as log:
        log.record(decision("e1"))
        backend = log.db.run("find the backend", lambda session: session.raw.info.backend_pid)
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        assert log.record(decision("e2")) == (decision("e2"), True)
        assert log.count() == 2


def test_writer_blocked_past_the_lock_timeout_gets_store_timeout(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing waits forever: another transaction holding the table makes record time out."""
    monkeypatch.setattr(sql, "LOCK_TIMEOUT_SECONDS", 0.2)
    with DecisionLog.open(url) as log:
        if url.startswith("sqlite"):
            holder: Any = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
        else:
            holder = psycopg.connect(url.replace("?schema=", "?options=-csearch_path%3D"))
            holder.execute("LOCK TABLE decisions IN EXCLUSIVE MODE")
        try:
            with pytest.raises(StoreTimeout, match="record a decision: timed out waiting"):
                log.record(decision("e1"))
        finally:
            holder.rollback()
            holder.close()
        assert log.record(decision("e1"))[1]


# -- shadow scores -----------------------------------------------------------------------------
def test_shadow_scores_are_logged_once_with_their_errors(log: DecisionLog) -> None:
    batch = [shadow("e1"), shadow("e2", error="model fraud-acme/v4 failed: bad input")]
    log.record_shadows(batch)
    log.record_shadows(batch[:1])
    log.record_shadows([])
    table = log.shadow_scores()
    assert table.num_rows == 2
    assert table.column("error").to_pylist() == [None, "model fraud-acme/v4 failed: bad input"]
    assert table.column("score").to_pylist() == [40, None]


def test_sqlite_shadow_scores_never_touch_the_decisions_file(tmp_path: Path) -> None:
    """A commit to the decisions' file would make every worker re-read its pages."""
    with DecisionLog.open(f"sqlite:///{tmp_path}/serving.db") as log:
        log.record(decision("e1"))
        watcher = sqlite3.connect(tmp_path / "serving.db")
        before = watcher.execute("PRAGMA data_version").fetchone()
        log.record_shadows([shadow("e1"), shadow("e2")])
        assert watcher.execute("PRAGMA data_version").fetchone() == before
        assert log.shadow_scores().num_rows == 2
    tables = {row[0] for row in watcher.execute("SELECT name FROM sqlite_master")}
    assert "shadow_scores" not in tables
    assert "decisions" in tables
    watcher.close()
    beside = sqlite3.connect(_decision_log.shadow_scores_path(tmp_path / "serving.db"))
    assert beside.execute("SELECT COUNT(*) FROM shadow_scores").fetchone() == (2,)
    beside.close()


def older_log(path: Path, scores: list[ShadowScore]) -> list[tuple[Any, ...]]:
    """A decision log at ``path`` in the layout before the split: its shadow scores in the
    decisions' file, none beside it. Returns the rows of the scores."""
    with DecisionLog.open(f"sqlite:///{path}") as log:
        log.record(decision("e1"))
    _decision_log.shadow_scores_path(path).unlink()
    rows = [_decision_log._shadow_row(s) for s in scores]
    old = sqlite3.connect(path)
    for _, statement in _decision_log._SHADOW_DDL:
        old.execute(statement)
    old.executemany(_decision_log._INSERT_SHADOW, rows)
    old.commit()
    old.close()
    return rows


def test_shadow_scores_of_an_older_log_are_moved_to_their_own_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logs written before the split keep every shadow score, also after a move cut short."""
    path = tmp_path / "serving.db"
    rows = older_log(path, [shadow(f"e{i:03d}", scored_at=T0 + timedelta(seconds=i))
                            for i in range(120)])
    # a move interrupted after copying some rows: the next open finishes it, each row once
    beside = sqlite3.connect(_decision_log.shadow_scores_path(path))
    for _, statement in _decision_log._SHADOW_DDL:
        beside.execute(statement)
    beside.executemany(_decision_log._INSERT_SHADOW, rows[:30])
    beside.commit()
    beside.close()
    monkeypatch.setattr(_decision_log, "CHUNK_ROWS", 50)
    with DecisionLog.open(f"sqlite:///{path}") as log:
        moved = log.shadow_scores()
        assert moved.column("event_id").to_pylist() == [f"e{i:03d}" for i in range(120)]
        assert log.count() == 1
    check = sqlite3.connect(path)
    assert check.execute("SELECT name FROM sqlite_master WHERE name LIKE 'shadow%'").fetchall() == []
    check.close()
    with DecisionLog.open(f"sqlite:///{path}") as log:  # nothing left to move, nothing lost
        assert log.shadow_scores().num_rows == 120


MOVER = """
import sys
from fraudops.serving import DecisionLog
print("ready", flush=True)
sys.stdin.readline()
with DecisionLog.open(sys.argv[1]) as log:
    print(log.shadow_scores().num_rows, flush=True)
"""


def test_workers_opening_an_older_log_at_once_all_start(tmp_path: Path) -> None:
    """An upgraded server's workers (and their shadow processes) open the log together: one
    moves the shadow scores, the others find them moved, at any point of the move."""
    path = tmp_path / "serving.db"
    older_log(path, [shadow(f"e{i:05d}") for i in range(20_000)])
    procs = start_together(MOVER, *[[f"sqlite:///{path}"]] * 4)
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    with DecisionLog.open(f"sqlite:///{path}") as log:
        assert log.shadow_scores().num_rows == 20_000


def test_shadow_scores_moved_by_another_process_after_our_look_are_no_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window the concurrent test rarely hits: the table is seen, then dropped by another
    opener before our read starts."""
    path = tmp_path / "serving.db"
    older_log(path, [shadow(f"e{i}") for i in range(50)])
    stream = sql.Database.stream

    def another_opener_first(self: sql.Database, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(sql.Database, "stream", stream)
        DecisionLog.open(f"sqlite:///{path}").close()   # moves the scores, drops the table
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(sql.Database, "stream", another_opener_first)
    with DecisionLog.open(f"sqlite:///{path}") as log:
        assert log.shadow_scores().num_rows == 50


def test_postgresql_keeps_shadow_scores_in_the_same_database(postgres_url: str) -> None:
    with DecisionLog.open(postgres_url) as log:
        assert log.shadow_db is log.db
        log.record_shadows([shadow("e1")])
        assert log.shadow_scores().num_rows == 1


# -- reading back ------------------------------------------------------------------------------
def test_decisions_filter_like_a_plain_loop(log: DecisionLog) -> None:
    """since ≤ decided_at < until, one tenant, oldest first, then limit: same as a list filter."""
    logged = [decision(f"e{i:02d}", tenant=("acme", "globex")[i % 2],
                       decided_at=T0 + timedelta(minutes=(i * 7) % 30)) for i in range(30)]
    for d in logged:
        log.record(d)
    since, until = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    for tenant, limit in [(None, None), ("acme", None), ("globex", 4), (None, 0)]:
        expected = sorted((d for d in logged if since <= d.decided_at < until
                           and tenant in (None, d.tenant)),
                          key=lambda d: (d.decided_at, d.tenant, d.event_id))[:limit]
        table = log.decisions(tenant=tenant, since=since, until=until, limit=limit)
        assert table.column("event_id").to_pylist() == [d.event_id for d in expected]
        assert table.column("decided_at").to_pylist() == [d.decided_at for d in expected]


def test_tables_have_utc_timestamps_and_json_reasons(log: DecisionLog) -> None:
    d = decision("e1", reasons=(Reason("card_age_days", 3.0, 0.5),))
    log.record(d)
    log.record_shadows([shadow("e1")])
    table = log.decisions()
    assert str(table.schema.field("decided_at").type) == "timestamp[us, tz=UTC]"
    assert table.column("event_time")[0].as_py() == d.event_time
    assert json.loads(table.column("reasons")[0].as_py()) == [r.to_dict() for r in d.reasons]
    assert str(log.shadow_scores().schema.field("scored_at").type) == "timestamp[us, tz=UTC]"


def test_empty_log_reads_as_empty_tables(log: DecisionLog, tmp_path: Path) -> None:
    assert log.decisions().num_rows == 0
    assert log.shadow_scores().num_rows == 0
    paths = log.export_parquet(tmp_path / "export")
    assert [pq.read_table(p).num_rows for p in paths] == [0, 0]


def test_parquet_export_round_trips_in_chunks(log: DecisionLog, tmp_path: Path) -> None:
    for i in range(23):
        tenant = ("acme", "globex")[i % 2]
        log.record(decision(f"e{i}", tenant=tenant, decided_at=T0 + timedelta(seconds=i),
                            reasons=(Reason("card_age_days", float(i), 0.1),)))
        log.record_shadows([shadow(f"e{i}", tenant=tenant)])
    paths = log.export_parquet(tmp_path / "export", chunk_rows=5)
    assert [p.name for p in paths] == ["decisions.parquet", "shadow_scores.parquet"]
    decisions, shadows = (pq.read_table(p) for p in paths)
    assert decisions.num_rows == log.count() == 23
    assert pq.ParquetFile(paths[0]).metadata.num_row_groups == 5
    by_time = decisions.sort_by([("decided_at", "ascending"), ("tenant", "ascending")])
    assert by_time.equals(log.decisions())
    assert shadows.sort_by("event_id").equals(log.shadow_scores().sort_by("event_id"))
    assert sorted(os.listdir(tmp_path / "export")) == ["decisions.parquet", "shadow_scores.parquet"]


def test_parquet_export_of_one_tenant(log: DecisionLog, tmp_path: Path) -> None:
    for i in range(10):
        log.record(decision(f"e{i}", tenant=("acme", "globex")[i % 3 == 0]))
    decisions, _ = (pq.read_table(p) for p in log.export_parquet(tmp_path, tenant="globex"))
    assert decisions.num_rows == log.count("globex") == 4
    assert set(decisions.column("tenant").to_pylist()) == {"globex"}


# -- opening -----------------------------------------------------------------------------------
def test_unknown_url_scheme_names_the_expected_ones() -> None:
    with pytest.raises(StoreError, match=r"scheme must be 'sqlite' or 'postgresql'.*sqlite:///<path>"):
        DecisionLog.open("mysql://root@localhost/fraud")


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://log.db", "must be 'sqlite:///<path>'"),
    ("sqlite:///", "must name a file"),
    ("sqlite:///:memory:", "must name a file"),
    ("sqlite:///log.db?synchronus=full", r"unknown parameter\(s\) \['synchronus'\]"),
    ("sqlite:///log.db?synchronous=off", "'synchronous' must be 'normal' or 'full'"),
    ("postgresql://postgres@127.0.0.1/test?schema=a;b", "'schema' must be an identifier"),
])
def test_malformed_url_says_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        DecisionLog.open(url)


def test_unreachable_postgresql_is_named_without_its_password() -> None:
    with pytest.raises(StoreError, match=r"decision log at postgresql://fraud:\*\*\*@127.0.0.1:1/"
                                         r"fraud: connect") as caught:
        DecisionLog.open("postgresql://fraud:s3cret@127.0.0.1:1/fraud")
    assert "s3cret" not in str(caught.value)


def test_sqlite_full_synchronous_is_accepted(tmp_path: Path) -> None:
    with DecisionLog.open(f"sqlite:///{tmp_path}/log.db?synchronous=full") as log:
        assert log.record(decision("e1"))[1]
        assert log.db.target.synchronous == "FULL"


def test_closed_log_refuses_work(url: str) -> None:
    log = DecisionLog.open(url)
    log.close()
    with pytest.raises(StoreError, match="used after close"):
        log.record(decision("e1"))
    with pytest.raises(StoreError, match="used after close"):
        log.record_shadows([shadow("e1")])
