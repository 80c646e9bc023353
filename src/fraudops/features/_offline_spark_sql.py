"""Compile a :class:`FeatureSet` into Spark SQL window expressions (the twin of :mod:`._offline_sql`).

The rows the expressions read have ``tenant``, ``event_id``, ``event_time``, ``_t``
(``event_time`` in integer microseconds), the entity keys, the columns the aggregations read
and, for label-aware features, the fraud counts of the label sweep (:mod:`._offline_spark_labels`)
as ``_sw{entity}_{lag}_{length}``.

Windows are exact in integer microseconds (``docs/features.md``). Spark has no per-row ROWS
frame, so a window with no lag, ``(t − W, t]`` cut at the current row in ``(event_time,
event_id)`` order, is computed as the union of two disjoint frames:

* the **range part** ``(t − W, t − 1µs]``: ``RANGE BETWEEN W − 1 PRECEDING AND 1 PRECEDING``
  over ``_t``, which holds no event of the current microsecond;
* the **tie part**, the events of exactly ``t`` up to the current one: partitioned by the entity
  *and* ``_t``, ordered by ``event_id``, ``ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW``
  (``AND 1 PRECEDING`` when the current event is excluded).

Counts and sums add, minima and maxima combine, distinct counts take the size of the union of
both parts' value sets, ``LAST`` prefers the tie part (its events are all later), and the
standard deviation comes from exact integer ``n, Σx, Σx²`` (float columns: the two parts'
moments merged). A lagged window ``(t − L − W, t − L]`` is one frame,
``RANGE BETWEEN L + W − 1 PRECEDING AND L PRECEDING``: every event of the current microsecond
is after ``t − L``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from ._definitions import (
    Entity,
    FeatureSet,
    FeatureSpec,
    Op,
)
from ._offline_sql import column_value
from ._transforms import (
    Column,
    HourOfDay,
    IsNight,
    IsWeekend,
    Ratio,
    Transform,
    ZScore,
)
from ._windows import Window

_NUMERIC_OPS = frozenset({Op.SUM, Op.MEAN, Op.MIN, Op.MAX, Op.STD, Op.LAST})


def quote(name: str) -> str:
    """A Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def sweep_column(entity_id: int, lag_us: int, length_us: int) -> str:
    """The column holding the sweep's fraud count of one entity, lag and window length."""
    return f"_sw{entity_id}_{lag_us}_{length_us}"


@dataclass(frozen=True)
class SparkValue:
    """How a transaction column enters an aggregation in Spark SQL."""

    sql: str
    scale: float
    integral: bool
    required: bool


def spark_value(column: str, types: Mapping[str, pa.DataType], where: str,
                *, numeric: bool) -> SparkValue:
    """The Spark SQL value of ``column``; ``amount`` is ``amount_cents`` scaled by 1/100.

    Classification and the errors for unusable columns are those of the DuckDB compiler.
    """
    shared = column_value(column, types, where, numeric=numeric)
    if column == "amount":
        sql = quote("amount_cents")
    elif pa.types.is_boolean(types[column]):
        sql = f"CAST({quote(column)} AS INT)"
    elif pa.types.is_floating(types[column]) or pa.types.is_decimal(types[column]):
        sql = f"CAST({quote(column)} AS DOUBLE)"
    else:
        sql = quote(column)
    return SparkValue(sql, shared.scale, shared.integral, shared.required)


@dataclass
class SparkQuery:
    """What one compile accumulates: the window partials (SQL -> alias) of the middle level."""

    entities: dict[Entity, int]
    partials: dict[str, str] = field(default_factory=dict)

    def entity_id(self, entity: Entity) -> int:
        return self.entities[entity]

    def partition(self, entity: Entity, *, same_time: bool = False) -> str:
        """``PARTITION BY`` the entity; an event with a missing key is a partition of its own
        (its features are masked anyway, and one big keyless group would make every frame
        over it huge)."""
        keys = ", ".join(quote(k) for k in entity.keys)
        missing = " OR ".join(f"{quote(k)} IS NULL" for k in entity.keys)
        clause = f"PARTITION BY tenant, {keys}, CASE WHEN {missing} THEN event_id END"
        return clause + (", _t" if same_time else "")

    def frames(self, entity: Entity, window: Window, current: bool) -> list[str]:
        """Disjoint OVER clauses whose union is ``window`` at each row (module docstring)."""
        partition = self.partition(entity)
        if window.lag_us > 0:
            return [f"{partition} ORDER BY _t RANGE BETWEEN {window.horizon_us - 1}L PRECEDING"
                    f" AND {window.lag_us}L PRECEDING"]
        out = []
        if window.length_us > 1:  # (t − 1µs, t − 1µs] is empty
            out.append(f"{partition} ORDER BY _t RANGE BETWEEN {window.length_us - 1}L"
                       " PRECEDING AND 1L PRECEDING")
        end = "CURRENT ROW" if current else "1 PRECEDING"
        out.append(f"{self.partition(entity, same_time=True)} ORDER BY event_id"
                   f" ROWS BETWEEN UNBOUNDED PRECEDING AND {end}")
        return out

    def partial(self, function: str, over: str) -> str:
        sql = f"{function} OVER ({over})"
        return self.partials.setdefault(sql, f"_p{len(self.partials)}")

    def each(self, function: str, entity: Entity, window: Window, current: bool) -> list[str]:
        """``function`` over each part of the window (range part first)."""
        return [self.partial(function, over) for over in self.frames(entity, window, current)]

    def total(self, function: str, entity: Entity, window: Window, current: bool) -> str:
        """The sum over the parts of a count or a sum (an empty part adds 0)."""
        return "(" + " + ".join(f"coalesce({p}, 0)" for p in
                                self.each(function, entity, window, current)) + ")"


def compile_features(features: FeatureSet,
                     types: Mapping[str, pa.DataType]) -> tuple[dict[str, str], dict[str, str]]:
    """The window partials (SQL -> alias) and the feature expressions (name -> SQL over them).

    The engine adds the partials as columns, then selects the features (cast to DOUBLE).
    """
    query = SparkQuery(entities={e: i for i, e in enumerate(features.entities)})
    expressions: dict[str, str] = {}
    for spec in features.aggregations:
        expressions[spec.name] = _masked(spec.entity, _aggregation(spec, types, query))
    for transform in features.transforms:
        expressions[transform.output] = _transform(transform, expressions, types)
    return query.partials, expressions


def _masked(entity: Entity, sql: str) -> str:
    missing = " OR ".join(f"{quote(k)} IS NULL" for k in entity.keys)
    return f"CASE WHEN {missing} THEN NULL ELSE {sql} END"


def _scaled(sql: str, scale: float) -> str:
    return sql if scale == 1.0 else f"{sql} * {scale!r}"


def _aggregation(spec: FeatureSpec, types: Mapping[str, pa.DataType], query: SparkQuery) -> str:
    entity, window, current, op = spec.entity, spec.effective, spec.includes_current, spec.op
    if op is Op.COUNT and spec.column is None:
        return query.total("count(1)", entity, window, current)
    if op is Op.TIME_SINCE_PREVIOUS:
        return _time_since_previous(entity, window, query)
    if op.reads_labels:
        return _fraud(spec, query)
    where = f"feature {spec.name!r} ({op.value})"
    value = spark_value(spec.column or "", types, where, numeric=op in _NUMERIC_OPS)
    x = value.sql
    if op in (Op.COUNT, Op.MEAN) or (op is Op.STD and value.integral):
        count = query.total("count(1)" if value.required else f"count({x})",
                            entity, window, current)
        if op is Op.COUNT:
            return count
    if op in (Op.SUM, Op.MEAN) or (op is Op.STD and value.integral):
        total = query.total(f"sum({x})", entity, window, current)
        if op is Op.SUM:
            return _scaled(f"CAST({total} AS DOUBLE)", value.scale)
        if op is Op.MEAN:
            return (f"CASE WHEN {count} = 0 THEN NULL ELSE"
                    f" {_scaled(f'CAST({total} AS DOUBLE) / {count}', value.scale)} END")
        exact = f"CAST({x} AS DECIMAL(38, 0))"
        squares = query.total(f"sum({exact} * {exact})", entity, window, current)
        wide = f"CAST({total} AS DECIMAL(38, 0))"
        numerator = f"CAST({count} * {squares} - {wide} * {wide} AS DOUBLE)"
        std = f"sqrt(greatest({numerator}, 0D) / ({count} * ({count} - 1)))"
        return f"CASE WHEN {count} < 2 THEN NULL ELSE {_scaled(std, value.scale)} END"
    if op is Op.STD:
        return _scaled(_float_std(x, entity, window, current, query), value.scale)
    if op is Op.COUNT_DISTINCT:
        sets = query.each(f"collect_set({x})", entity, window, current)
        union = sets[0] if len(sets) == 1 else f"array_union({sets[0]}, {sets[1]})"
        return f"size({union})"
    if op in (Op.MIN, Op.MAX):
        parts = query.each(f"{op.value}({x})", entity, window, current)
        combined = parts[0] if len(parts) == 1 else \
            f"{'least' if op is Op.MIN else 'greatest'}({', '.join(parts)})"
        return _scaled(f"CAST({combined} AS DOUBLE)", value.scale)
    # LAST: the latest non-missing value by (event_time, event_id); the tie part is later
    latest = (f"max(CASE WHEN {x} IS NOT NULL THEN named_struct('t', _t, 'id', event_id,"
              f" 'v', {x}) END)")
    parts = [f"{p}.v" for p in query.each(latest, entity, window, current)]
    combined = parts[0] if len(parts) == 1 else f"coalesce({', '.join(reversed(parts))})"
    return _scaled(f"CAST({combined} AS DOUBLE)", value.scale)


def _float_std(x: str, entity: Entity, window: Window, current: bool, query: SparkQuery) -> str:
    """Sample standard deviation of a float column: the parts' moments merged (Chan et al.)."""
    frames = query.frames(entity, window, current)
    if len(frames) == 1:
        return query.partial(f"stddev_samp({x})", frames[0])
    (na, nb), (ma, mb), (va, vb) = ([query.partial(f"{f}({x})", over) for over in frames]
                                    for f in ("count", "avg", "var_samp"))
    m2 = (f"(coalesce({va} * ({na} - 1), 0D) + coalesce({vb} * ({nb} - 1), 0D)"
          f" + CASE WHEN {na} > 0 AND {nb} > 0 THEN ({mb} - {ma}) * ({mb} - {ma})"
          f" * {na} * {nb} / ({na} + {nb}) ELSE 0D END)")
    n = f"({na} + {nb})"
    return f"CASE WHEN {n} < 2 THEN NULL ELSE sqrt(greatest({m2}, 0D) / ({n} - 1)) END"


def _time_since_previous(entity: Entity, window: Window, query: SparkQuery) -> str:
    """Seconds since the entity's latest earlier event in the window."""
    if window.lag_us > 0:
        (latest,) = query.each("max(_t)", entity, window, False)
        return f"(_t - {latest}) / 1e6"
    previous = query.partial("lag(_t)", f"{query.partition(entity)} ORDER BY _t, event_id")
    return f"CASE WHEN _t - {previous} < {window.length_us}L THEN (_t - {previous}) / 1e6 END"


def _fraud(spec: FeatureSpec, query: SparkQuery) -> str:
    entity, window = spec.entity, spec.effective
    column = sweep_column(query.entity_id(entity), window.lag_us, window.length_us)
    fraud = f"coalesce({column}, 0)"
    if spec.op is Op.FRAUD_COUNT:
        return fraud
    events = query.total("count(1)", entity, window, False)
    return f"CASE WHEN {events} = 0 THEN 0D ELSE CAST({fraud} AS DOUBLE) / {events} END"


def _transform(transform: Transform, known: Mapping[str, str],
               types: Mapping[str, pa.DataType]) -> str:
    where = f"transform {transform.output!r}"

    def value(name: str) -> str:
        if name in known:
            return f"({known[name]})"
        column = spark_value(name, types, where, numeric=True)
        return f"({_scaled(f'CAST({column.sql} AS DOUBLE)', column.scale)})"

    if isinstance(transform, Column):
        return value(transform.column)
    if isinstance(transform, IsWeekend):
        return "CAST(dayofweek(event_time) IN (1, 7) AS INT)"  # Spark: 1 = Sunday, 7 = Saturday
    if isinstance(transform, IsNight):
        return (f"CAST(hour(event_time) BETWEEN {transform.start_hour} AND {transform.end_hour}"
                " AS INT)")
    if isinstance(transform, HourOfDay):
        return "hour(event_time)"
    if isinstance(transform, Ratio):
        a, b = value(transform.numerator), value(transform.denominator)
        return f"CASE WHEN {b} = 0 OR {b} IS NULL THEN NULL ELSE {a} / {b} END"
    if not isinstance(transform, ZScore):
        raise TypeError(f"{where}: unknown transform {type(transform).__name__}")
    v, m, s = value(transform.value), value(transform.mean), value(transform.std)
    return f"CASE WHEN {s} = 0 OR {s} IS NULL THEN NULL ELSE ({v} - {m}) / {s} END"
