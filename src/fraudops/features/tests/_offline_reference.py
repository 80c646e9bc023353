"""A slow, obvious implementation of docs/features.md, to test the offline engine against.

Plain loops over each entity's events; nothing clever, so that it can be read against the
document line by line.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from fraudops.features import (
    Column,
    FeatureSet,
    FeatureSpec,
    HourOfDay,
    IsNight,
    IsWeekend,
    Op,
    Ratio,
    ZScore,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    return (value - _EPOCH).days * 86_400_000_000 + (value - _EPOCH).seconds * 1_000_000 \
        + (value - _EPOCH).microseconds


@dataclass(frozen=True)
class Point:
    """Where features are asked for: a transaction (phase 1) or a spine instant (phase 2)."""

    tenant: str
    t: int
    phase: int
    event_id: str
    row: dict[str, Any]

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.t, self.phase, self.event_id)


class Reference:
    def __init__(self, transactions: pa.Table, labels: pa.Table) -> None:
        self.events = [dict(r, _t=micros(r["event_time"])) for r in transactions.to_pylist()]
        self._groups: dict[tuple[str, ...], dict[tuple[Any, ...], list[dict[str, Any]]]] = {}
        self.labels: dict[tuple[str, str], list[tuple[int, bool]]] = defaultdict(list)
        for label in labels.to_pylist():
            self.labels[(label["tenant"], label["event_id"])].append(
                (micros(label["label_time"]), label["is_fraud"]))

    def _entity_events(self, names: tuple[str, ...], tenant: str,
                       keys: tuple[Any, ...]) -> list[dict[str, Any]]:
        """The tenant's events whose key columns ``names`` equal ``keys`` (a plain filter)."""
        if names not in self._groups:
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
            for e in self.events:
                groups[(e["tenant"], *(e[k] for k in names))].append(e)
            self._groups[names] = groups
        return self._groups[names].get((tenant, *keys), [])

    def known_fraud(self, event: dict[str, Any], t: int) -> bool:
        """The event's label as known at t: the latest label_time <= t, fraud wins a tie."""
        known = [(lt, fraud) for lt, fraud in self.labels[(event["tenant"], event["event_id"])]
                 if lt <= t]
        if not known:
            return False
        latest = max(lt for lt, _ in known)
        return any(fraud for lt, fraud in known if lt == latest)

    def window(self, spec: FeatureSpec, point: Point) -> list[dict[str, Any]]:
        keys = tuple(point.row.get(k) for k in spec.entity.keys)
        lag, length = spec.effective.lag_us, spec.effective.length_us
        out = []
        for e in self._entity_events(spec.entity.keys, point.tenant, keys):
            if not (point.t - lag - length < e["_t"] <= point.t - lag):
                continue
            if lag == 0 and (e["_t"], 1, e["event_id"]) > point.order:
                continue  # a later event of the same microsecond
            if point.phase == 1 and e["event_id"] == point.event_id \
                    and not spec.includes_current:
                continue
            out.append(e)
        return sorted(out, key=lambda e: (e["_t"], e["event_id"]))

    def aggregate(self, spec: FeatureSpec, point: Point) -> float | None:
        if any(point.row.get(k) is None for k in spec.entity.keys):
            return None
        events = self.window(spec, point)
        op = spec.op
        if op is Op.COUNT and spec.column is None:
            return float(len(events))
        if op is Op.TIME_SINCE_PREVIOUS:
            return (point.t - events[-1]["_t"]) / 1e6 if events else None
        if op.reads_labels:
            fraud = sum(self.known_fraud(e, point.t) for e in events)
            if op is Op.FRAUD_COUNT:
                return float(fraud)
            return fraud / len(events) if events else 0.0
        values = [v for v in (value(e, spec.column) for e in events) if v is not None]
        if op is Op.COUNT:
            return float(len(values))
        if op is Op.COUNT_DISTINCT:
            return float(len(set(values)))
        if op is Op.SUM:
            return float(sum(values))
        if not values:
            return None
        if op is Op.MEAN:
            return float(statistics.fmean(values))
        if op is Op.MIN:
            return float(min(values))
        if op is Op.MAX:
            return float(max(values))
        if op is Op.LAST:
            return float(values[-1])
        return float(statistics.stdev(values)) if len(values) >= 2 else None

    def features(self, features: FeatureSet, point: Point) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for spec in features.aggregations:
            out[spec.name] = self.aggregate(spec, point)
        moment = point.row["event_time"]
        for transform in features.transforms:
            def read(name: str) -> float | None:
                return out[name] if name in out else value(point.row, name)
            result: float | None
            if isinstance(transform, Column):
                result = read(transform.column)
            elif isinstance(transform, IsWeekend):
                result = float(moment.weekday() >= 5)
            elif isinstance(transform, IsNight):
                result = float(transform.start_hour <= moment.hour <= transform.end_hour)
            elif isinstance(transform, HourOfDay):
                result = float(moment.hour)
            elif isinstance(transform, Ratio):
                a, b = read(transform.numerator), read(transform.denominator)
                result = None if a is None or not b else a / b
            else:
                assert isinstance(transform, ZScore)
                v, m, s = read(transform.value), read(transform.mean), read(transform.std)
                result = None if v is None or m is None or not s else (v - m) / s
            out[transform.output] = result
        return out

    def backfill(self, features: FeatureSet) -> dict[tuple[str, str], dict[str, float | None]]:
        return {(e["tenant"], e["event_id"]): self.features(
            features, Point(e["tenant"], e["_t"], 1, e["event_id"], e)) for e in self.events}


def value(row: dict[str, Any], column: str | None) -> Any:
    """A column's value; ``amount`` is ``amount_cents / 100``, booleans are 0/1."""
    if column == "amount":
        cents = row.get("amount_cents")
        return None if cents is None else cents / 100
    found = row.get(column) if column is not None else None
    return float(found) if isinstance(found, bool) else found


def assert_same(actual: float | None, expected: float | None, where: str) -> None:
    if expected is None or actual is None or (isinstance(actual, float) and math.isnan(actual)):
        assert actual == expected, f"{where}: got {actual}, expected {expected}"
        return
    scale = max(abs(actual), abs(expected))
    assert abs(actual - expected) <= 1e-9 * scale or abs(actual - expected) <= 1e-12, \
        f"{where}: got {actual!r}, expected {expected!r}"
