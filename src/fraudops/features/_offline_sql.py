"""Compile a :class:`FeatureSet` into one DuckDB query over the ``_rows`` relation.

``_rows`` holds, per row: ``_row`` (an id), ``tenant``, ``event_id``, ``event_time``, ``_t``
(``event_time`` in integer microseconds), ``_phase`` (1 for a transaction, 2 for a spine point
of :meth:`OfflineEngine.training_set`, which sorts after every transaction of its instant),
``_real`` (1 for a transaction, null for a spine point), the entity keys, the columns the
aggregations read (null on spine points, so they add nothing) and, when labels are read, ``_ff``
(the time since which a "simple" event is known fraud, see :mod:`._offline_labels`).

Windows are exact in integer microseconds (``docs/features.md``):

* lag 0, ``(t − W, t]`` cut at the current row in ``(event_time, event_id)`` order:
  ``_rn`` (the row number in the entity) and ``_lo`` (the number of rows at or before
  ``t − W``) give a per-row ``ROWS BETWEEN _rn − _lo − 1 PRECEDING AND CURRENT ROW`` frame
  (``AND 1 PRECEDING`` when the current event is excluded); later events of the same
  microsecond are outside it.
* lag L > 0, ``(t − L − W, t − L]``: ``RANGE BETWEEN L + W − 1 PRECEDING AND L PRECEDING`` on
  ``_t``; every event of the current microsecond is after ``t − L``, so RANGE is exact.

Money (``amount``) and other integer columns are aggregated as exact integers and converted
to float64 at the end; the standard deviation of integers comes from exact ``n, Σx, Σx²``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from fraudops.core import DefinitionError

from ._definitions import (
    Entity,
    FeatureSet,
    FeatureSpec,
    Op,
)
from ._transforms import (
    Column,
    HourOfDay,
    IsNight,
    IsWeekend,
    Ratio,
    Transform,
    references,
)
from ._windows import Window

#: Ops whose value is numeric: the column they read must be a number or a boolean.
_NUMERIC_OPS = frozenset({Op.SUM, Op.MEAN, Op.MIN, Op.MAX, Op.STD, Op.LAST})
#: Spine points carry the columns transforms read under this prefix (they aggregate nothing).
SPINE_PREFIX = "_sv_"


def quote(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ColumnValue:
    """How a transaction column enters an aggregation: SQL, scale and exactness."""

    sql: str
    scale: float = 1.0
    integral: bool = False
    #: never missing (the contract says so): counting it is counting events
    required: bool = False


def column_value(column: str, types: Mapping[str, pa.DataType], where: str,
                 *, numeric: bool, prefix: str = "") -> ColumnValue:
    """The SQL value of ``column`` (``amount`` is ``amount_cents`` scaled by 1/100).

    ``prefix`` reads the copy of the column named ``prefix + column`` instead.
    """
    if column == "amount":
        return ColumnValue(quote(prefix + "amount_cents"), 0.01, True, required=not prefix)
    dtype, name = types[column], quote(prefix + column)
    if pa.types.is_boolean(dtype):
        return ColumnValue(f"CAST({name} AS INTEGER)", 1.0, True)
    if pa.types.is_integer(dtype):
        return ColumnValue(name, 1.0, True)
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return ColumnValue(f"CAST({name} AS DOUBLE)")
    if numeric:
        raise DefinitionError(f"{where}: column {column!r} is {dtype}, not a number; only"
                              " count and count_distinct read non-numeric columns")
    return ColumnValue(quote(column))


def feature_columns(features: FeatureSet) -> set[str]:
    """The stored columns the aggregations and transforms read (``amount`` as ``amount_cents``)."""
    out = {k for e in features.entities for k in e.keys} | transform_columns(features)
    for spec in features.aggregations:
        if spec.column is not None:
            out.add("amount_cents" if spec.column == "amount" else spec.column)
    return out


def transform_columns(features: FeatureSet) -> set[str]:
    """The stored columns transforms read: inputs that are not earlier features."""
    known = {spec.name for spec in features.aggregations}
    out: set[str] = set()
    for transform in features.transforms:
        out.update(r for r in references(transform) if r not in known)
        known.add(transform.output)
    return {"amount_cents" if c == "amount" else c for c in out}


def label_lags(features: FeatureSet) -> list[tuple[Entity, int]]:
    """Distinct ``(entity, lag in µs)`` of the label-aware features, in definition order."""
    found = [(s.entity, s.effective.lag_us) for s in features.aggregations if s.op.reads_labels]
    return list(dict.fromkeys(found))


@dataclass
class _Query:
    """What one compile accumulates: level-1 helpers, level-2 window partials."""

    spine: bool
    sweeps: frozenset[tuple[Entity, int]]
    entities: dict[Entity, int] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)  # alias -> level-1 SQL
    partials: dict[str, str] = field(default_factory=dict)  # level-2 SQL -> alias

    def entity_id(self, entity: Entity) -> int:
        return self.entities[entity]

    def partition(self, entity: Entity) -> str:
        return "PARTITION BY tenant, " + ", ".join(quote(k) for k in entity.keys)

    def order(self) -> str:
        return "ORDER BY _t, _phase, event_id" if self.spine else "ORDER BY _t, event_id"

    def row_number(self, entity: Entity) -> str:
        alias = f"_rn{self.entity_id(entity)}"
        self.helpers[alias] = f"row_number() OVER ({self.partition(entity)} {self.order()})"
        return alias

    def at_or_before(self, entity: Entity, length_us: int) -> str:
        """Rows of the entity at or before ``t − length``: the frame's lower cut."""
        alias = f"_lo{self.entity_id(entity)}_{length_us}"
        self.helpers[alias] = (f"count(*) OVER ({self.partition(entity)} ORDER BY _t RANGE"
                               f" BETWEEN UNBOUNDED PRECEDING AND {length_us} PRECEDING)")
        return alias

    def frame(self, entity: Entity, window: Window, current: bool, *, ordered: bool = False) -> str:
        """The OVER clause of ``window`` at each row (see the module docstring).

        ``ordered`` (for ``LAST``): a lagged window as rows in event order too, so that the
        last of several events in one microsecond is the one with the largest event id.
        """
        partition, order = self.partition(entity), self.order()
        if window.lag_us > 0 and not ordered:
            return (f"{partition} ORDER BY _t RANGE BETWEEN"
                    f" {window.horizon_us - 1} PRECEDING AND {window.lag_us} PRECEDING")
        rn, lo = self.row_number(entity), self.at_or_before(entity, window.horizon_us)
        if window.lag_us > 0:
            hi = self.at_or_before(entity, window.lag_us)
            return f"{partition} {order} ROWS BETWEEN {rn} - {lo} - 1 PRECEDING AND {rn} - {hi} PRECEDING"
        end = "CURRENT ROW" if current else "1 PRECEDING"
        return f"{partition} {order} ROWS BETWEEN {rn} - {lo} - 1 PRECEDING AND {end}"

    def partial(self, function: str, frame: str) -> str:
        sql = f"{function} OVER ({frame})"
        return self.partials.setdefault(sql, f"_p{len(self.partials)}")

    def window_sum(self, entity: Entity, window: Window, current: bool,
                   value: str | None, *, count: bool = False) -> str:
        """The exact windowed sum (or count, with ``count``) of an integral ``value``.

        ``value=None`` counts events (transactions, never spine points). With no lag, the
        RANGE frame ``(t − W, t]`` also holds the later events of the current microsecond;
        their share is the cumulative total through all peers minus the cumulative total
        through the current row, both exact integers, and is subtracted.
        """
        if value is None:
            value, count = ("*" if not self.spine else "_real"), True
        function = f"count({value})" if count else f"sum({value})"
        partition = self.partition(entity)
        if window.lag_us > 0:
            return f"coalesce({self.partial(function, self.frame(entity, window, False))}, 0)"
        in_range = self.partial(function, f"{partition} ORDER BY _t RANGE BETWEEN"
                                          f" {window.length_us - 1} PRECEDING AND CURRENT ROW")
        through_peers = self.partial(function, f"{partition} ORDER BY _t RANGE UNBOUNDED PRECEDING")
        through_row = self.partial(function, f"{partition} {self.order()} ROWS UNBOUNDED PRECEDING")
        sql = (f"coalesce({in_range}, 0) - (coalesce({through_peers}, 0)"
               f" - coalesce({through_row}, 0))")
        if not current:
            own = ("1" if value == "*" else f"CAST({value} IS NOT NULL AS INTEGER)") if count \
                else f"coalesce({value}, 0)"
            sql += f" - {own}"
        return f"({sql})"


def compile_features(features: FeatureSet, types: Mapping[str, pa.DataType], *, spine: bool,
                     sweeps: frozenset[tuple[Entity, int]] = frozenset()) -> str:
    """The SELECT computing every feature of ``features`` for every row of ``_rows``.

    ``sweeps`` names the ``(entity, lag)`` whose label counts also need the interval sweep of
    :func:`._offline_labels.sweep_sql` (joined in as ``_sw{entity}_{lag}_{length}``).
    """
    query = _Query(spine=spine, sweeps=sweeps,
                   entities={e: i for i, e in enumerate(features.entities)})
    expressions: dict[str, str] = {}
    for spec in features.aggregations:
        expressions[spec.name] = _masked(spec.entity, _aggregation(spec, types, query))
    for transform in features.transforms:
        expressions[transform.output] = _transform(transform, expressions, types, spine)
    helpers = "".join(f",\n  {sql} AS {alias}" for alias, sql in query.helpers.items())
    partials = "".join(f",\n  {sql} AS {alias}" for sql, alias in query.partials.items())
    selected = ",\n  ".join(f"CAST({sql} AS DOUBLE) AS {quote(name)}"
                            for name, sql in expressions.items())
    joins = "".join(f"\n  LEFT JOIN {sweep_name(features, e, lag)} USING (_row)"
                    for e, lag in sorted(sweeps, key=lambda s: (query.entity_id(s[0]), s[1])))
    level1 = f"SELECT *{helpers}\n FROM _rows{joins}" if helpers or joins else "SELECT * FROM _rows"
    return (f"WITH _l1 AS (\n {level1}),\n"
            f"_l2 AS (\n SELECT *{partials}\n FROM _l1)\n"
            f"SELECT _row, _spine, tenant, event_id, event_time, _t,\n  {selected}\nFROM _l2")


def _masked(entity: Entity, sql: str) -> str:
    nulls = " OR ".join(f"{quote(k)} IS NULL" for k in entity.keys)
    return f"CASE WHEN {nulls} THEN NULL ELSE {sql} END"


def _aggregation(spec: FeatureSpec, types: Mapping[str, pa.DataType], query: _Query) -> str:
    entity, window, current, op = spec.entity, spec.effective, spec.includes_current, spec.op
    where = f"feature {spec.name!r} ({op.value})"
    if op is Op.COUNT and spec.column is None:
        return query.window_sum(entity, window, current, None)
    if op is Op.TIME_SINCE_PREVIOUS:
        return _time_since_previous(entity, window, query)
    if op.reads_labels:
        return _fraud(spec, query)
    if spec.column is None:
        raise DefinitionError(f"{where}: {op.value} needs a column")
    value = column_value(spec.column, types, where, numeric=op in _NUMERIC_OPS)
    x, scale = value.sql, "" if value.scale == 1.0 else f" * {value.scale!r}"
    counted = None if value.required else x
    if op is Op.COUNT:
        return query.window_sum(entity, window, current, counted, count=True)
    if value.integral and op in (Op.SUM, Op.MEAN, Op.STD):
        n = query.window_sum(entity, window, current, counted, count=True)
        total = query.window_sum(entity, window, current, x)
        squares = f"CAST({x} AS HUGEINT) * {x}"
        if op is Op.STD:
            squares = query.window_sum(entity, window, current, squares)
    elif op in (Op.SUM, Op.MEAN):  # float sums are not exactly invertible: the exact frame
        frame = query.frame(entity, window, current)
        n = query.partial(f"count({x})", frame)
        total = f"coalesce({query.partial(f'sum({x})', frame)}, 0)"
    if op is Op.SUM:
        return f"CAST({total} AS DOUBLE){scale}"
    if op is Op.MEAN:
        return f"CASE WHEN {n} = 0 THEN NULL ELSE CAST({total} AS DOUBLE) / {n}{scale} END"
    if op is Op.STD and value.integral:
        numerator = f"CAST({n} * {squares} - {total} * {total} AS DOUBLE)"
        return (f"CASE WHEN {n} < 2 THEN NULL ELSE sqrt(greatest({numerator}, 0)"
                f" / ({n} * ({n} - 1))){scale} END")
    frame = query.frame(entity, window, current)
    if op is Op.STD:
        return f"{query.partial(f'stddev_samp({x})', frame)}{scale}"
    if op is Op.COUNT_DISTINCT:
        return query.partial(f"count(DISTINCT {x})", frame)
    if op in (Op.MIN, Op.MAX):
        return f"CAST({query.partial(f'{op.value}({x})', frame)} AS DOUBLE){scale}"
    last = query.partial(f"last_value({x} IGNORE NULLS)", query.frame(entity, window, current,
                                                                       ordered=True))
    return f"CAST({last} AS DOUBLE){scale}"


def _time_since_previous(entity: Entity, window: Window, query: _Query) -> str:
    """Seconds since the entity's latest earlier event in the window (a cumulative max)."""
    if window.lag_us > 0:
        latest = query.partial("max(_t * _real)", query.frame(entity, window, False))
        return f"(_t - {latest}) / 1e6"
    latest = query.partial("max(_t * _real)", f"{query.partition(entity)} {query.order()}"
                                              " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING")
    return f"CASE WHEN _t - {latest} < {window.length_us} THEN (_t - {latest}) / 1e6 END"


def _fraud(spec: FeatureSpec, query: _Query) -> str:
    entity, window = spec.entity, spec.effective
    flag = f"CAST(_ff <= _t + {window.lag_us} AS INTEGER)"
    fraud = query.window_sum(entity, window, False, flag)
    if (entity, window.lag_us) in query.sweeps:
        sweep = f"_sw{query.entity_id(entity)}_{window.lag_us}_{window.length_us}"
        fraud = f"({fraud} + coalesce({sweep}, 0))"
    if spec.op is Op.FRAUD_COUNT:
        return fraud
    events = query.window_sum(entity, window, False, None)
    return f"CASE WHEN {events} = 0 THEN 0 ELSE CAST({fraud} AS DOUBLE) / {events} END"


def _transform(transform: Transform, known: Mapping[str, str],
               types: Mapping[str, pa.DataType], spine: bool) -> str:
    where = f"transform {transform.output!r}"

    def value(name: str) -> str:
        if name in known:
            return f"({known[name]})"
        # a spine point reads its own copy of the column (``_sv_<column>``), see OfflineEngine
        column = column_value(name, types, where, numeric=True, prefix=SPINE_PREFIX if spine else "")
        scale = "" if column.scale == 1.0 else f" * {column.scale!r}"
        return f"(CAST({column.sql} AS DOUBLE){scale})"

    if isinstance(transform, Column):
        return value(transform.column)
    if isinstance(transform, IsWeekend):
        return "CAST(isodow(event_time) >= 6 AS INTEGER)"
    if isinstance(transform, IsNight):
        return (f"CAST(hour(event_time) BETWEEN {transform.start_hour} AND {transform.end_hour}"
                " AS INTEGER)")
    if isinstance(transform, HourOfDay):
        return "hour(event_time)"
    if isinstance(transform, Ratio):
        a, b = value(transform.numerator), value(transform.denominator)
        return f"CASE WHEN {b} = 0 OR {b} IS NULL THEN NULL ELSE {a} / {b} END"
    v, m, s = value(transform.value), value(transform.mean), value(transform.std)
    return f"CASE WHEN {s} = 0 OR {s} IS NULL THEN NULL ELSE ({v} - {m}) / {s} END"


def sweep_name(features: FeatureSet, entity: Entity, lag_us: int) -> str:
    """The table of the label sweep of ``(entity, lag)``; columns ``<name>_<length µs>``."""
    return f"_sw{features.entities.index(entity)}_{lag_us}"
