"""Label-aware aggregations on Spark: which past events count as fraud at *t*.

The label of an event *e'* as known at *t* is its label event with the latest
``label_time <= t`` (a fraud label wins a tie), so per event the labels make intervals
``[from, to)`` during which *e'* is known fraud (:data:`FRAUD_INTERVALS_SQL`). An interval
counts for a transaction at *t* exactly when ``max(from, t' + L) <= t < min(to, t' + L + W)``
(with L = 0, *t* must also come after *e'* in event order). Each interval becomes a +1 and a
−1 event on the entity's time line; a running sum over transactions and these events, ordered
so that an interval's end comes before and its start (when it is the label's arrival) before
the transactions of the same microsecond, is the count at every transaction — the plan of
:mod:`._offline_labels`, applied to every fraud interval (labels that flip, late labels and the
label-time mode need no separate path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._definitions import Entity
from ._offline_spark_sql import quote, sweep_column

_FOREVER_US = 2**62

#: ``(tenant, event_id, _from, _to)``: the spans during which an event is known fraud
#: (``_to`` null: for ever). Label times with both labels count as fraud (fraud wins a tie);
#: only changes of the known state start or end a span.
FRAUD_INTERVALS_SQL = """
SELECT tenant, event_id, _lt AS _from, _to FROM (
    SELECT *, lead(_lt) OVER (PARTITION BY tenant, event_id ORDER BY _lt) AS _to
    FROM (SELECT *, lag(_fraud) OVER (PARTITION BY tenant, event_id ORDER BY _lt) AS _before
          FROM (SELECT tenant, event_id, unix_micros(label_time) AS _lt,
                       bool_or(is_fraud) AS _fraud
                FROM {labels} GROUP BY tenant, event_id, unix_micros(label_time)) AS per_time
         ) AS states
    WHERE _before IS NULL OR _before <> _fraud) AS changes
WHERE _fraud
"""


@dataclass(frozen=True)
class SweepGroup:
    """One ``(entity, lag)`` of label-aware features and the window lengths it needs."""

    entity: Entity
    entity_id: int
    lag_us: int
    lengths_us: tuple[int, ...]

    def columns(self) -> list[str]:
        return [sweep_column(self.entity_id, self.lag_us, n) for n in self.lengths_us]


def sweep_sql(groups: Sequence[SweepGroup]) -> str:
    """A query over ``{rows}`` and ``{intervals}``: per transaction ``tenant, event_id`` and,
    per group and window length, the number of the entity's earlier events in
    ``(t − L − W, t − L]`` known fraud at *t* (columns :func:`sweep_column`).

    All groups run in one pass: a group's rows are partitioned by ``(tenant, group, key
    values)`` and carry deltas only in their group's columns, so summing a transaction's rows
    over the groups gives each group's count.
    """
    columns = [c for g in groups for c in g.columns()]
    selects = []
    for number, group in enumerate(groups):
        selects += _group_events(number, group, columns)
    sums = ", ".join(f"sum(_d_{c}) OVER _w AS {c}" for c in columns)
    totals = ", ".join(f"sum({c}) AS {c}" for c in columns)
    union = "\n    UNION ALL ".join(selects)
    return f"""
WITH _ev AS (
    {union})
SELECT tenant, event_id, {totals} FROM (
    SELECT tenant, event_id, {sums} FROM _ev
    WINDOW _w AS (PARTITION BY tenant, _g, _k ORDER BY _at, _ph, _id NULLS FIRST, _sub
                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS swept
WHERE event_id IS NOT NULL
GROUP BY tenant, event_id
"""


def _group_events(number: int, group: SweepGroup, columns: Sequence[str]) -> list[str]:
    """The +1/−1 events of one group's fraud intervals and its transactions, as SELECTs of
    ``tenant, _g, _k, _at, _ph, _id, _sub, event_id`` and a delta per sweep column."""
    lag = group.lag_us
    key = "array(" + ", ".join(f"CAST(r.{quote(k)} AS STRING)" for k in group.entity.keys) + ")"
    present = " AND ".join(f"r.{quote(k)} IS NOT NULL" for k in group.entity.keys)
    intervals = (f"(SELECT r.tenant, {key} AS _k, r._t AS _src, r.event_id AS _src_id, i._from,"
                 f" i._to FROM {{rows}} r JOIN {{intervals}} i ON r.tenant = i.tenant"
                 f" AND r.event_id = i.event_id WHERE {present})")
    start = f"greatest(_from, _src + {lag}L)"
    tied = f"({lag} = 0 AND _from <= _src)"  # starts right after e' itself in event order

    def end(length: int) -> str:
        return f"least(coalesce(_to, {_FOREVER_US}L), _src + {lag + length}L)"

    def deltas(value: dict[str, str]) -> str:
        return ", ".join(f"{value.get(c, '0')} AS _d_{c}" for c in columns)

    own = dict(zip(group.columns(), group.lengths_us, strict=True))
    out = [f"SELECT tenant, {number} AS _g, _k, {start} AS _at,"
           f" CASE WHEN {tied} THEN 1 ELSE 0 END AS _ph, CASE WHEN {tied} THEN _src_id END AS _id,"
           f" 1 AS _sub, CAST(NULL AS STRING) AS event_id,"
           f" {deltas({c: f'CAST({start} < {end(n)} AS INT)' for c, n in own.items()})}"
           f" FROM {intervals} AS _iv"]
    for column, length in own.items():
        out.append(f"SELECT tenant, {number}, _k, {end(length)}, 0, CAST(NULL AS STRING), 0,"
                   f" CAST(NULL AS STRING), {deltas({column: '-1'})}"
                   f" FROM {intervals} AS _iv WHERE {start} < {end(length)}")
    out.append(f"SELECT r.tenant, {number}, {key}, r._t, 1, r.event_id, 0, r.event_id,"
               f" {deltas({})} FROM {{rows}} r WHERE {present}")
    return out
