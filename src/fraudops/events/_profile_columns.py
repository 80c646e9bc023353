"""One column of the data profile: its kind, its distribution and its univariate power.

Every query here is an aggregate over the materialised scope (a table with the transaction
columns plus ``_is_fraud``), so the numbers are exact; see ``docs/profile.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import duckdb

from ._profile_model import (
    CategoryCount,
    CategorySummary,
    ColumnKind,
    ColumnProfile,
    ColumnRole,
    EntitySummary,
    Histogram,
    NumericSummary,
    TimeSummary,
)
from ._profile_stats import (
    QUANTILE_LEVELS,
    BinPlan,
    information_value,
    plan_bins,
    quantiles_from,
)
from ._schema import ENTITY_KEYS

#: A string column with more distinct values than this is summarised per entity.
MAX_CATEGORY_VALUES = 1000
#: Entities listed by fraud count in an entity summary.
TOP_ENTITIES = 10
#: A column past either bar is flagged: so much power from one column often means leakage.
SUSPICIOUS_IV, SUSPICIOUS_AUC = 0.5, 0.9
_ROLES: dict[str, ColumnRole] = {"event_id": "key", "event_time": "time", "tenant": "tenant",
                                 "amount_cents": "amount", "currency": "canonical"}
_INTS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
         "UINTEGER", "UBIGINT"}
_DECILES = [i / 10 for i in range(1, 10)]


@dataclass(frozen=True)
class ColumnSpec:
    """A column of the ``transactions`` view: name, types and role."""

    name: str
    duck_type: str
    dtype: str
    role: ColumnRole
    non_finite: int = 0

    @property
    def sql(self) -> str:
        """The name as a quoted SQL identifier."""
        return '"' + self.name.replace('"', '""') + '"'

    def with_non_finite(self, count: int) -> ColumnSpec:
        return dataclasses.replace(self, non_finite=count)


def column_spec(name: str, duck_type: str) -> ColumnSpec:
    """Map a DuckDB column type to the store's type names ('string', 'int', ...)."""
    upper = duck_type.upper()
    if upper == "BOOLEAN":
        dtype = "bool"
    elif upper.startswith("TIMESTAMP") or upper == "DATE":
        dtype = "timestamp"
    elif upper in _INTS:
        dtype = "int"
    elif upper in {"FLOAT", "DOUBLE", "REAL"} or upper.startswith("DECIMAL"):
        dtype = "float"
    elif upper == "VARCHAR":
        dtype = "string"
    else:
        dtype = "other"
    role = _ROLES.get(name) or ("entity key" if name in ENTITY_KEYS else "attribute")
    return ColumnSpec(name, duck_type, dtype, role)


def profile_column(con: duckdb.DuckDBPyConnection, base: str, spec: ColumnSpec, *, rows: int,
                   max_categories: int) -> ColumnProfile:
    """Profile one column of the materialised scope ``base`` (``rows`` rows)."""
    q = spec.sql
    count, distinct, missing_frauds = _one(con, f"""
        SELECT count({q}), count(DISTINCT {q}),
               count(*) FILTER (WHERE {q} IS NULL AND _is_fraud) FROM {base}""")
    missing = rows - count
    kind = _kind(spec, count, distinct, max_categories)
    parts: dict[str, Any] = {}
    iv = auc = None
    extra_flags: list[str] = []
    if count and kind == "numeric":
        parts["numeric"], iv, auc = _numeric(con, base, spec)
    elif count and kind == "categorical":
        parts["categories"], iv = _categories(con, base, q, max_categories)
    elif count and kind == "entity":
        parts["entity"] = _entity(con, base, q)
    elif kind == "timestamp":
        parts["time"] = _time(con, base, q, with_hours=spec.name == "event_time")
    elif kind == "identifier":  # identity is (tenant, event_id): ids may repeat across tenants
        (distinct,) = _one(con, f"SELECT count(DISTINCT (tenant, {q})) FROM {base}")
        if count > distinct:
            extra_flags.append(f"{count - distinct:,} duplicate ids")
    power = None if auc is None else max(auc, 1.0 - auc)
    flags = [*_flags(count, distinct, missing / rows, iv, power), *extra_flags]
    return ColumnProfile(
        name=spec.name, role=spec.role, dtype=spec.dtype, kind=kind, count=count,
        missing=missing, missing_rate=missing / rows, distinct=distinct,
        missing_fraud_rate=missing_frauds / missing if missing else None, iv=iv, auc=power,
        auc_direction=None if auc is None else ("higher" if auc >= 0.5 else "lower"),
        flags=tuple(flags), **parts)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    return con.execute(sql, params or []).fetchall()[0]


def _kind(spec: ColumnSpec, count: int, distinct: int, max_categories: int) -> ColumnKind:
    if spec.role == "key":
        return "identifier"
    if spec.dtype == "timestamp":
        return "timestamp"
    if spec.dtype in ("int", "float"):
        return "numeric"
    if spec.role == "entity key":
        return "entity"
    many = distinct > MAX_CATEGORY_VALUES or (distinct > max_categories and distinct > count / 2)
    return "entity" if spec.dtype == "string" and many else "categorical"


def _flags(count: int, distinct: int, missing_rate: float, iv: float | None,
           auc: float | None) -> list[str]:
    flags = []
    if count == 0:
        flags.append("all missing")
    elif distinct == 1:
        flags.append("constant")
    if count and missing_rate >= 0.5:
        flags.append("mostly missing")
    if (iv or 0.0) > SUSPICIOUS_IV or (auc or 0.0) > SUSPICIOUS_AUC:
        flags.append("suspiciously predictive: check for leakage")
    return flags


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _numeric(con: duckdb.DuckDBPyConnection, base: str,
             spec: ColumnSpec) -> tuple[NumericSummary, float | None, float | None]:
    q = spec.sql
    vmin, vmax, mean, std, skew, levels, cuts, zeros = _one(con, f"""
        SELECT min({q}), max({q}), avg({q}), stddev_samp({q}), skewness({q}),
               quantile_cont({q}, {list(QUANTILE_LEVELS)}), quantile_disc({q}, {_DECILES}),
               count(*) FILTER (WHERE {q} = 0) FROM {base}""")
    skewness = _finite(skew)
    plan = plan_bins(is_integer=spec.dtype == "int", vmin=float(vmin), vmax=float(vmax),
                     skewness=skewness)
    quantiles = quantiles_from(levels)
    if quantiles is None:  # unreachable with count > 0; keeps the type exact
        raise ValueError(f"column {spec.name!r}: no quantiles although values are present")
    summary = NumericSummary(
        min=float(vmin), max=float(vmax), mean=float(mean), std=_finite(std), skewness=skewness,
        quantiles=quantiles, zeros=zeros, non_finite=spec.non_finite,
        histogram=_histogram(con, base, q, plan))
    cases = " ".join(f"WHEN {q} <= ${i + 1} THEN {i}" for i in range(len(set(cuts))))
    bins = con.execute(f"""
        SELECT CASE WHEN {q} IS NULL THEN -1 {cases} ELSE {len(set(cuts))} END AS b,
               count(*), count(*) FILTER (WHERE _is_fraud) FROM {base} GROUP BY b""",
                       sorted(set(cuts))).fetchall()
    return summary, information_value([(n, f) for _, n, f in bins]), _auc(con, base, q)


def _histogram(con: duckdb.DuckDBPyConnection, base: str, q: str, plan: BinPlan) -> Histogram:
    inner = plan.edges[1:-1]
    cases = " ".join(f"WHEN {q} < ${i} THEN {i - 1}" for i in range(1, len(inner) + 1))
    expr = f"CASE {cases} ELSE {plan.bins - 1} END" if inner else "0"
    rows = con.execute(f"""
        SELECT {expr} AS b, count(*), count(*) FILTER (WHERE _is_fraud)
        FROM {base} WHERE {q} IS NOT NULL GROUP BY b""", list(inner)).fetchall()
    counts, frauds = [0] * plan.bins, [0] * plan.bins
    for b, n, f in rows:
        counts[b], frauds[b] = n, f
    return Histogram(plan.scale, plan.edges, tuple(counts), tuple(frauds))


def _auc(con: duckdb.DuckDBPyConnection, base: str, q: str) -> float | None:
    """P(a fraud's value > a non-fraud's value) + P(tie) / 2, exact, from counts per value."""
    twice_wins, frauds, genuine = _one(con, f"""
        WITH per_value AS (
            SELECT {q} AS v, count(*) FILTER (WHERE _is_fraud) AS p,
                   count(*) FILTER (WHERE NOT _is_fraud) AS n
            FROM {base} WHERE {q} IS NOT NULL GROUP BY v),
        below AS (
            SELECT p, n, coalesce(sum(n) OVER (ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING
                                                        AND 1 PRECEDING), 0) AS n_below
            FROM per_value)
        SELECT sum(2 * p * n_below + p * n), sum(p), sum(n) FROM below""")
    if not frauds or not genuine:
        return None
    return float(twice_wins) / (2.0 * float(frauds) * float(genuine))


def _categories(con: duckdb.DuckDBPyConnection, base: str, q: str,
                max_categories: int) -> tuple[CategorySummary, float | None]:
    rows = con.execute(f"""
        SELECT CAST({q} AS VARCHAR) AS v, count(*), count(*) FILTER (WHERE _is_fraud)
        FROM {base} GROUP BY v""").fetchall()
    missing = next((_count(None, n, f) for v, n, f in rows if v is None), None)
    present = sorted(((v, n, f) for v, n, f in rows if v is not None),
                     key=lambda r: (-r[1], r[0]))
    top = tuple(_count(v, n, f) for v, n, f in present[:max_categories])
    rest = present[max_categories:]
    other = _count(None, sum(r[1] for r in rest), sum(r[2] for r in rest)) if rest else None
    groups = [*top, *([other] if other else []), *([missing] if missing else [])]
    summary = CategorySummary(top=top, other=other, other_categories=len(rest), missing=missing)
    return summary, information_value([(g.count, g.frauds) for g in groups])


def _count(value: str | None, n: int, frauds: int, tenant: str | None = None) -> CategoryCount:
    return CategoryCount(value=value, count=n, frauds=frauds, fraud_rate=frauds / n if n else 0.0,
                         tenant=tenant)


def _entity(con: duckdb.DuckDBPyConnection, base: str, q: str) -> EntitySummary:
    """Per entity, a (tenant, value) pair: events, and whether any of them is fraud."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _profile_entity AS
        SELECT tenant, CAST({q} AS VARCHAR) AS v, count(*) AS n,
               count(*) FILTER (WHERE _is_fraud) AS f
        FROM {base} WHERE {q} IS NOT NULL GROUP BY ALL""")
    entities, with_fraud, mean, vmin, vmax, skew, levels = _one(con, f"""
        SELECT count(*), count(*) FILTER (WHERE f > 0), avg(n), min(n), max(n), skewness(n),
               quantile_cont(n, {list(QUANTILE_LEVELS)}) FROM _profile_entity""")
    plan = plan_bins(is_integer=True, vmin=float(vmin), vmax=float(vmax), skewness=_finite(skew))
    histogram = _histogram(con, "(SELECT n, f > 0 AS _is_fraud FROM _profile_entity)", "n", plan)
    top = con.execute(f"""SELECT v, n, f, tenant FROM _profile_entity WHERE f > 0
                          ORDER BY f DESC, n DESC, tenant, v LIMIT {TOP_ENTITIES}""").fetchall()
    con.execute("DROP TABLE _profile_entity")
    quantiles = quantiles_from(levels)
    if quantiles is None:  # unreachable with count > 0; keeps the type exact
        raise ValueError(f"column {q}: no entities although values are present")
    return EntitySummary(
        entities=entities, entities_with_fraud=with_fraud, share_with_fraud=with_fraud / entities,
        events_per_entity=quantiles, mean_events=float(mean), max_events=vmax,
        histogram=histogram, top_by_frauds=tuple(_count(v, n, f, t) for v, n, f, t in top))


def _time(con: duckdb.DuckDBPyConnection, base: str, q: str, *, with_hours: bool) -> TimeSummary:
    first, last = _one(con, f"SELECT min({q}), max({q}) FROM {base}")
    hours = None
    if with_hours and first is not None:
        rows = con.execute(f"""SELECT hour({q}) AS h, count(*), count(*) FILTER (WHERE _is_fraud)
                               FROM {base} WHERE {q} IS NOT NULL GROUP BY h""").fetchall()
        counts, frauds = [0] * 24, [0] * 24
        for h, n, f in rows:
            counts[h], frauds[h] = n, f
        hours = Histogram("integer", tuple(float(h) for h in range(25)), tuple(counts),
                          tuple(frauds))
    return TimeSummary(first=first, last=last, hour_of_day=hours)
