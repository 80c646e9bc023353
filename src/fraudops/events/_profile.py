"""The data profile: what an event store holds, computed with DuckDB SQL over the store.

One pass materialises the transactions in scope joined with their current label; every figure
is then an aggregate over that table, exact over all rows. Only the rank correlations read a
seeded sample (they need the rows themselves). Definitions are in ``docs/profile.md``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from fraudops.core import InputError, Progress, null_progress

from ._profile_columns import ColumnSpec, column_spec, profile_column
from ._profile_model import (
    CategoryCount,
    ColumnProfile,
    Correlations,
    DayCounts,
    LabelSummary,
    Profile,
    TenantCounts,
    TenantDays,
    Totals,
)
from ._profile_stats import QUANTILE_LEVELS, quantiles_from, spearman_matrix
from ._store import EventStore

#: The materialised scope: transactions joined with their current label.
BASE = "_profile_base"
#: At most this many columns enter the correlation matrix (the cost grows with the square).
MAX_CORRELATION_COLUMNS = 30
#: Label sources and fraud types listed, the most frequent first.
MAX_LABEL_GROUPS = 20
#: Days without events inside the range are filled with zeros up to this span.
MAX_FILLED_DAYS = 3660


def profile_events(store: EventStore, *, tenant: str | None = None, sample_rows: int = 200_000,
                   seed: int = 0, max_categories: int = 20,
                   progress: Progress = null_progress) -> Profile:
    """Profile the transactions of an event store: columns, labels, days and tenants.

    A transaction's label is its current label (the latest label event; on a tie a fraud label
    wins); a transaction without a label counts as **not fraud**, so fraud rates are rates of
    *known* fraud. Everything is exact over all rows in scope except the rank correlations,
    which use a seeded sample of at most ``sample_rows`` rows.

    Parameters
    ----------
    store : EventStore
        The store to profile.
    tenant : str, optional
        Profile this tenant only. The per-tenant table always covers every tenant.
    sample_rows : int, default 200_000
        Rows sampled for the correlations; a smaller scope is used whole.
    seed : int, default 0
        Seed of the sample: the same seed and data give the same sample.
    max_categories : int, default 20
        Categories listed per categorical column; the rarer ones are grouped as "other".
    progress : Progress
        Called as ``progress("profile", done, total)`` after every step.

    Returns
    -------
    Profile
        Write it with :func:`write_profile`, render it with :func:`render_profile_html`.

    Raises
    ------
    InputError
        The store (or the tenant) holds no transactions.

    Examples
    --------
    >>> import tempfile, pyarrow as pa
    >>> from datetime import datetime, UTC
    >>> store = EventStore(tempfile.mkdtemp())
    >>> _ = store.append_transactions(pa.table({
    ...     "event_id": ["a", "b", "c"], "tenant": ["acme"] * 3, "amount_cents": [100, 250, 9000],
    ...     "event_time": [datetime(2024, 5, d, tzinfo=UTC) for d in (1, 1, 2)]}), batch_id="1")
    >>> profile = profile_events(store)
    >>> profile.totals.transactions, profile.column("amount_cents").numeric.max
    (3, 9000.0)
    """
    _check_int("sample_rows", sample_rows, minimum=1)
    _check_int("max_categories", max_categories, minimum=1)
    _check_int("seed", seed, minimum=0)
    started, generated_at = time.perf_counter(), datetime.now(UTC)
    with store.connect() as con:
        columns = _materialise(con, tenant)
        tenants = _tenant_counts(con)
        _restrict(con, tenant, tenants)
        total = 5 + len(columns)
        progress("profile", 1, total)
        rows, frauds, labelled = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE _is_fraud),"
            f" count(*) FILTER (WHERE _labelled) FROM {BASE}").fetchall()[0]
        profiles = []
        for done, spec in enumerate(columns, start=2):
            profiles.append(profile_column(con, BASE, spec, rows=rows,
                                           max_categories=max_categories))
            progress("profile", done, total)
        daily, by_tenant = _daily(con)
        progress("profile", total - 3, total)
        labels = _labels(con, tenant)
        progress("profile", total - 2, total)
        correlations = _correlations(con, columns, profiles, rows, sample_rows=sample_rows,
                                     seed=seed)
        progress("profile", total - 1, total)
        first, last = con.execute(f"SELECT min(event_time), max(event_time) FROM {BASE}"
                                  ).fetchall()[0]
    totals = Totals(
        transactions=rows, frauds=frauds, fraud_rate=frauds / rows, labelled=labelled,
        labelled_genuine=labelled - frauds, unlabelled=rows - labelled,
        tenants=len(by_tenant), first_event=first, last_event=last,
        days_with_events=sum(1 for d in daily if d.events), columns=len(columns))
    profile = Profile(
        store=str(store.root), tenant=tenant, generated_at=generated_at,
        elapsed_seconds=round(time.perf_counter() - started, 3), sample_rows=sample_rows,
        seed=seed, max_categories=max_categories, totals=totals, tenants=tuple(tenants),
        daily=daily, daily_by_tenant=by_tenant, labels=labels, columns=tuple(profiles),
        correlations=correlations,
        notes=_notes(totals, labels, correlations, tenant=tenant, tenants=len(tenants)))
    progress("profile", total, total)
    return profile


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"The {name!r} parameter of profile_events must be an int >= {minimum};"
                         f" got {value!r} instead")


def _materialise(con: duckdb.DuckDBPyConnection, tenant: str | None) -> list[ColumnSpec]:
    """Join every transaction with its current label; NaN and ±inf floats become NULL."""
    described = con.execute("SELECT column_name, column_type FROM"
                            " (DESCRIBE transactions)").fetchall()
    specs = [column_spec(name, duck_type) for name, duck_type in described]
    floats = [s for s in specs if s.dtype == "float"]
    non_finite: dict[str, int] = {}
    if floats:
        counts = con.execute(
            "SELECT " + ", ".join(f"count(*) FILTER (WHERE NOT isfinite({s.sql}))" for s in floats)
            + " FROM transactions WHERE $1::VARCHAR IS NULL OR tenant = $1", [tenant]
        ).fetchall()[0]
        non_finite = {s.name: int(n) for s, n in zip(floats, counts, strict=True)}
    replace = ", ".join(f"CASE WHEN isfinite(t.{s.sql}) THEN t.{s.sql} END AS {s.sql}"
                        for s in floats)
    con.execute(f"""
        CREATE TEMP TABLE _profile_all AS
        SELECT t.* {f"REPLACE ({replace})" if replace else ""},
               coalesce(l.is_fraud, false) AS _is_fraud,
               l.is_fraud IS NOT NULL AS _labelled,
               l.label_time AS _label_time, l.source AS _label_source,
               l.fraud_type AS _fraud_type
        FROM transactions t
        LEFT JOIN current_labels l ON t.tenant = l.tenant AND t.event_id = l.event_id""")
    return [s.with_non_finite(non_finite.get(s.name, 0)) for s in specs]


def _tenant_counts(con: duckdb.DuckDBPyConnection) -> list[TenantCounts]:
    rows = con.execute("""
        SELECT tenant, count(*), count(*) FILTER (WHERE _is_fraud),
               count(*) FILTER (WHERE _labelled), min(event_time), max(event_time)
        FROM _profile_all GROUP BY tenant ORDER BY tenant""").fetchall()
    return [TenantCounts(tenant=t, transactions=n, frauds=f, fraud_rate=f / n, labelled=lab,
                         first_event=first, last_event=last)
            for t, n, f, lab, first, last in rows]


def _restrict(con: duckdb.DuckDBPyConnection, tenant: str | None,
              tenants: Sequence[TenantCounts]) -> None:
    if not tenants:
        raise InputError(
            "the workspace holds no transactions, so there is nothing to profile; add some with"
            " 'fraudops ingest' (or EventStore.append_transactions) and run the profile again")
    if tenant is None:
        con.execute(f"ALTER TABLE _profile_all RENAME TO {BASE}")
        return
    names = [t.tenant for t in tenants]
    if tenant not in names:
        raise InputError(f"tenant = {tenant!r}: the workspace holds no transactions of this"
                         f" tenant; tenants with transactions: {names}")
    con.execute(f"CREATE TEMP TABLE {BASE} AS SELECT * FROM _profile_all WHERE tenant = $1",
                [tenant])
    con.execute("DROP TABLE _profile_all")


def _daily(con: duckdb.DuckDBPyConnection
           ) -> tuple[tuple[DayCounts, ...], tuple[TenantDays, ...]]:
    """Events, frauds and labelled events per UTC day, overall and per tenant."""
    rows = con.execute(f"""
        SELECT tenant, CAST(event_time AS DATE) AS day, count(*),
               count(*) FILTER (WHERE _is_fraud), count(*) FILTER (WHERE _labelled)
        FROM {BASE} GROUP BY ALL ORDER BY 1, 2""").fetchall()
    per_tenant: dict[str, dict[date, tuple[int, int, int]]] = defaultdict(dict)
    overall: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0])
    for tenant, day, events, frauds, labelled in rows:
        per_tenant[tenant][day] = (events, frauds, labelled)
        total = overall[day]
        total[0], total[1], total[2] = total[0] + events, total[1] + frauds, total[2] + labelled
    span = _day_span(sorted(overall))

    def series(counts: dict[date, Any]) -> tuple[DayCounts, ...]:
        days = span if span is not None else sorted(counts)
        return tuple(DayCounts(d, *counts.get(d, (0, 0, 0))) for d in days)

    return series(overall), tuple(TenantDays(t, series(c)) for t, c in per_tenant.items())


def _day_span(days: Sequence[date]) -> list[date] | None:
    if not days:
        return []
    length = (days[-1] - days[0]).days + 1
    if length > MAX_FILLED_DAYS:
        return None
    return [days[0] + timedelta(days=i) for i in range(length)]


def _labels(con: duckdb.DuckDBPyConnection, tenant: str | None) -> LabelSummary:
    scope = "($1::VARCHAR IS NULL OR tenant = $1)"
    label_events, relabelled, orphans = con.execute(f"""
        SELECT (SELECT count(*) FROM labels WHERE {scope}),
               (SELECT count(*) FROM (SELECT 1 FROM labels WHERE {scope}
                                      GROUP BY tenant, event_id HAVING count(*) > 1)),
               (SELECT count(*) FROM current_labels l ANTI JOIN {BASE} b
                    ON l.tenant = b.tenant AND l.event_id = b.event_id
                WHERE ($1::VARCHAR IS NULL OR l.tenant = $1))""", [tenant]).fetchall()[0]
    levels = list(QUANTILE_LEVELS)
    before, delays = con.execute(f"""
        SELECT count(*) FILTER (WHERE _labelled AND _label_time < event_time),
               quantile_cont((epoch(_label_time) - epoch(event_time)) / 86400.0, {levels})
                   FILTER (WHERE _is_fraud)
        FROM {BASE}""").fetchall()[0]
    return LabelSummary(label_events=label_events, relabelled=relabelled, orphans=orphans,
                        before_event=before, fraud_delay_days=quantiles_from(delays),
                        sources=_label_groups(con, "_label_source"),
                        fraud_types=_label_groups(con, "_fraud_type"))


def _label_groups(con: duckdb.DuckDBPyConnection, column: str) -> tuple[CategoryCount, ...]:
    """Labelled transactions per value of a label column, with the frauds among them."""
    rows = con.execute(f"""
        SELECT {column}, count(*), count(*) FILTER (WHERE _is_fraud) FROM {BASE}
        WHERE _labelled GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_LABEL_GROUPS}""").fetchall()
    return tuple(CategoryCount(value=v, count=n, frauds=f, fraud_rate=f / n) for v, n, f in rows)


def _correlations(con: duckdb.DuckDBPyConnection, columns: Sequence[ColumnSpec],
                  profiles: Sequence[ColumnProfile], rows: int, *, sample_rows: int,
                  seed: int) -> Correlations | None:
    """Spearman correlations of numeric and boolean columns, on a seeded sample if needed."""
    varying = {p.name for p in profiles if p.distinct > 1}
    chosen = [s for s in columns if s.dtype in ("int", "float", "bool") and s.name in varying]
    chosen = chosen[:MAX_CORRELATION_COLUMNS]
    if not chosen:
        return None
    select = ", ".join(f"CAST({s.sql} AS DOUBLE)" for s in chosen)
    sampled = rows > sample_rows
    order = (f" ORDER BY hash(tenant, event_id, {int(seed)}), tenant, event_id"
             f" LIMIT {int(sample_rows)}") if sampled else ""
    table = con.sql(f"SELECT {select}, CAST(_is_fraud AS DOUBLE) FROM {BASE}{order}"
                    ).to_arrow_table()
    arrays = [table.column(i).to_numpy() for i in range(table.num_columns)]
    matrix = spearman_matrix(arrays)
    k = len(chosen)
    return Correlations(
        method="spearman", columns=tuple(s.name for s in chosen),
        matrix=tuple(tuple(row[:k]) for row in matrix[:k]), with_fraud=tuple(matrix[k][:k]),
        rows=table.num_rows, sampled=sampled, seed=seed)


def _notes(totals: Totals, labels: LabelSummary, correlations: Correlations | None, *,
           tenant: str | None, tenants: int) -> tuple[str, ...]:
    """What a reader must know to read the numbers right, in plain words."""
    notes = [
        f"A transaction's label is its latest label event (on a tie a fraud label wins)."
        f" {totals.unlabelled:,} of {totals.transactions:,} transactions"
        f" ({totals.unlabelled / totals.transactions:.1%}) have no label and count as not fraud:"
        " every fraud rate here is a rate of known fraud.",
    ]
    if totals.frauds == 0:
        notes.append("No transaction is labelled fraud: fraud rates are zero, and information"
                     " values, AUCs and correlations with is_fraud are undefined.")
    if labels.fraud_delay_days is not None:
        notes.append(
            f"Fraud labels arrive a median {labels.fraud_delay_days.p50:.1f} days after the"
            f" transaction (95 % within {labels.fraud_delay_days.p95:.1f} days), so fraud rates"
            " of the most recent days are understated until their labels mature.")
    if correlations is None:
        notes.append("No correlations: the scope has no numeric or boolean column with two values.")
    elif correlations.sampled:
        notes.append(
            f"Correlations use a seeded sample of {correlations.rows:,} of"
            f" {totals.transactions:,} rows (seed {correlations.seed}); every other figure is"
            " exact over all rows.")
    else:
        notes.append("Every figure, correlations included, is computed over all rows.")
    if tenant is not None:
        notes.append(f"Only tenant {tenant!r} is profiled; the tenant table lists all"
                     f" {tenants} tenants of the store.")
    notes.append("Missing values include NaN and infinite values of float columns. Entity keys"
                 " and string columns with many distinct values are summarised per entity (a"
                 " (tenant, value) pair) instead of per category.")
    return tuple(notes)
