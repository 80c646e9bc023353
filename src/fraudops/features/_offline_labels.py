"""Label-aware aggregations offline: which past events count as fraud at *t*.

The label of an event *e'* as known at *t* is its label event with the latest
``label_time <= t`` (a fraud label wins a tie). Over time that makes, per event, a set of
intervals ``[valid_from, valid_to)`` during which *e'* is known fraud. Two exact plans:

* **simple** events (the common case) have one interval ``[ff, ∞)``: a fraud label and no
  genuine label after it. When ``ff <= t' + L`` (the label arrived within the window's lag L,
  e.g. the handbook's labels at ``t' + 7d`` with a 7-day delay), *e'* counts in every window
  that holds it, so a windowed ``SUM`` of the 0/1 column ``_ff <= _t + L`` is exact.
* every other fraud interval (labels that flip, labels later than the lag, the label-time
  mode) goes through a **sweep**: an interval of *e'* counts at *t* exactly when
  ``max(valid_from, t' + L) <= t < min(valid_to, t' + L + W)`` (with L = 0, *t* must also come
  after *e'* in event order). So each interval becomes a +1 and a −1 event on the entity's time
  line, and a running sum over transactions and these events, ordered with the right tie
  rules, is the count at every transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._definitions import Entity
from ._offline_sql import quote

#: Per event with a fraud label: ``_ff`` when it is simple (fraud from ``_ff`` on, for ever),
#: ``_cx`` when its labels flip back to genuine (it needs the interval sweep).
LABEL_SUMMARY_SQL = """
SELECT tenant, event_id,
       CASE WHEN lg IS NULL OR lg <= ff THEN ff END AS _ff,
       NOT (lg IS NULL OR lg <= ff) AS _cx
FROM (SELECT tenant, event_id,
             min(epoch_us(label_time)) FILTER (WHERE is_fraud) AS ff,
             max(epoch_us(label_time)) FILTER (WHERE NOT is_fraud) AS lg
      FROM labels {where} GROUP BY tenant, event_id)
WHERE ff IS NOT NULL
"""

#: The fraud intervals ``[_from, _to)`` of the events whose labels flip (``_to`` null: for ever).
INTERVALS_SQL = """
SELECT tenant, event_id, lt AS _from, nxt AS _to FROM (
    SELECT tenant, event_id, lt, fraud,
           lead(lt) OVER (PARTITION BY tenant, event_id ORDER BY lt) AS nxt
    FROM (SELECT l.tenant, l.event_id, epoch_us(l.label_time) AS lt, bool_or(l.is_fraud) AS fraud
          FROM labels l SEMI JOIN _label_summary s ON l.tenant = s.tenant
                                                   AND l.event_id = s.event_id AND s._cx
          GROUP BY ALL))
WHERE fraud
"""

_FOREVER_US = 2**62


def sweep_needed_sql(lag_us: int) -> str:
    """Rows of ``_rows`` whose fraud intervals a windowed flag sum cannot count for lag L."""
    return f"SELECT count(*) FROM _rows WHERE _cx OR _ff > _t + {lag_us}"


def sweep_sql(name: str, entity: Entity, lag_us: int, lengths_us: Sequence[int]) -> str:
    """``CREATE TEMP TABLE name`` with ``_row`` and, per window length, the sweep's fraud count.

    Columns are ``{name}_{length}``: the number of the entity's earlier events in
    ``(t − L − W, t − L]`` known fraud at *t* that the simple flag does not count.
    """
    keys = ", ".join(quote(k) for k in entity.keys)
    present = " AND ".join(f"r.{quote(k)} IS NOT NULL" for k in entity.keys)
    r_keys = ", ".join(f"r.{quote(k)}" for k in entity.keys)
    start = f"greatest(_from, _src + {lag_us})"
    # with no lag an interval open at t' starts right after e' itself in event order
    tied = f"({lag_us} = 0 AND _from <= _src)"
    deltas_start, ends = [], []
    for length in lengths_us:
        end = f"least(coalesce(_to, {_FOREVER_US}), _src + {lag_us + length})"
        deltas_start.append(f"CAST({start} < {end} AS INTEGER) AS _d{length}")
        others = ", ".join(f"{-1 if other == length else 0} * CAST({start} < {end} AS INTEGER)"
                           f" AS _d{other}" for other in lengths_us)
        ends.append(f"SELECT tenant, {keys}, {end} AS _at, 0 AS _ph, NULL AS _id, 0 AS _sub,"
                    f" NULL::BIGINT AS _row, {others} FROM _iv")
    zeros = ", ".join(f"0 AS _d{length}" for length in lengths_us)
    sums = ", ".join(f"sum(_d{length}) OVER _w AS {name}_{length}" for length in lengths_us)
    return f"""
CREATE TEMP TABLE {name} AS
WITH _iv AS (
    SELECT r.tenant, {r_keys}, r._t AS _src, r.event_id AS _src_id, i._from, i._to
    FROM _rows r JOIN _intervals i ON r.tenant = i.tenant AND r.event_id = i.event_id
    WHERE {present}
    UNION ALL
    SELECT r.tenant, {r_keys}, r._t, r.event_id, r._ff, NULL FROM _rows r
    WHERE {present} AND r._ff > r._t + {lag_us}),
_ev AS (
    SELECT tenant, {keys}, {start} AS _at, CASE WHEN {tied} THEN 1 ELSE 0 END AS _ph,
           CASE WHEN {tied} THEN _src_id END AS _id, 1 AS _sub, NULL::BIGINT AS _row,
           {", ".join(deltas_start)}
    FROM _iv
    UNION ALL {" UNION ALL ".join(ends)}
    UNION ALL
    SELECT r.tenant, {r_keys}, r._t, r._phase, r.event_id, 0, r._row, {zeros}
    FROM _rows r WHERE {present})
SELECT _row, {", ".join(f"{name}_{length}" for length in lengths_us)} FROM (
    SELECT _row, {sums} FROM _ev
    WINDOW _w AS (PARTITION BY tenant, {keys} ORDER BY _at, _ph, _id NULLS FIRST, _sub
                  ROWS UNBOUNDED PRECEDING))
WHERE _row IS NOT NULL
"""
