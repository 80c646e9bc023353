"""The data profile as values: a tree of frozen dataclasses that the JSON and the HTML report read.

Computation lives in ``_profile.py``, rendering in ``_profile_html.py``; this module only says
what a profile holds, so that both faces (and a later UI) agree on one shape. Every count is
over the profiled scope (the whole store, or one tenant) except :attr:`Profile.tenants`, which
always covers every tenant of the store.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

#: Version of the JSON layout written by :func:`write_profile`; bumped on breaking changes.
PROFILE_FORMAT_VERSION = 1

ColumnKind = Literal["identifier", "timestamp", "numeric", "categorical", "entity"]
ColumnRole = Literal["key", "time", "tenant", "amount", "canonical", "entity key", "attribute"]
HistogramScale = Literal["linear", "log", "integer"]


@dataclass(frozen=True)
class Quantiles:
    """Exact quantiles (linear interpolation between order statistics)."""

    p01: float
    p05: float
    p25: float
    p50: float
    p75: float
    p95: float
    p99: float


@dataclass(frozen=True)
class Histogram:
    """Counts per bin, and how many of them are fraud.

    ``edges`` has one more element than ``counts``; bin ``i`` is ``[edges[i], edges[i+1])``,
    the last bin closed. With ``scale='log'`` the edges are equally spaced in ``ln(1 + x)``
    (for heavy-tailed, non-negative values such as amounts); with ``'integer'`` every bin holds
    one integer value. Integer columns always get integer edges. For an entity key, a "row" is
    an entity and ``frauds`` counts the entities with at least one fraud.
    """

    scale: HistogramScale
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    frauds: tuple[int, ...]


@dataclass(frozen=True)
class CategoryCount:
    """One category (or group of categories): rows, frauds among them and the fraud rate.

    ``value`` is ``None`` for the "other" and "missing" groups; ``tenant`` is set for the
    entities of an :class:`EntitySummary` (an entity is a (tenant, value) pair).
    """

    value: str | None
    count: int
    frauds: int
    fraud_rate: float
    tenant: str | None = None


@dataclass(frozen=True)
class NumericSummary:
    """Distribution of a numeric column over its finite, non-missing values."""

    min: float
    max: float
    mean: float
    std: float | None
    skewness: float | None
    quantiles: Quantiles
    zeros: int
    non_finite: int
    histogram: Histogram


@dataclass(frozen=True)
class CategorySummary:
    """The most frequent categories; the rest grouped as ``other``, nulls as ``missing``."""

    top: tuple[CategoryCount, ...]
    other: CategoryCount | None
    other_categories: int
    missing: CategoryCount | None


@dataclass(frozen=True)
class EntitySummary:
    """A high-cardinality key seen per entity; an entity is a (tenant, value) pair."""

    entities: int
    entities_with_fraud: int
    share_with_fraud: float
    events_per_entity: Quantiles
    mean_events: float
    max_events: int
    histogram: Histogram
    top_by_frauds: tuple[CategoryCount, ...]


@dataclass(frozen=True)
class TimeSummary:
    """Range of a timestamp column; for ``event_time`` also events and frauds per UTC hour."""

    first: datetime | None
    last: datetime | None
    hour_of_day: Histogram | None


@dataclass(frozen=True)
class ColumnProfile:
    """Everything the profile knows about one column of the ``transactions`` view.

    ``iv`` (information value) is the common measure of univariate power, defined for numeric
    (over deciles) and categorical columns; ``auc`` is ``max(A, 1 - A)`` for numeric columns,
    where ``A`` is the probability that a fraud has a higher value than a non-fraud (ties count
    half), and ``auc_direction`` says whether ``'higher'`` or ``'lower'`` values are riskier.
    """

    name: str
    role: ColumnRole
    dtype: str
    kind: ColumnKind
    count: int
    missing: int
    missing_rate: float
    distinct: int
    missing_fraud_rate: float | None
    iv: float | None
    auc: float | None
    auc_direction: Literal["higher", "lower"] | None
    flags: tuple[str, ...]
    numeric: NumericSummary | None = None
    categories: CategorySummary | None = None
    entity: EntitySummary | None = None
    time: TimeSummary | None = None


@dataclass(frozen=True)
class Totals:
    """Headline counts of the profiled scope."""

    transactions: int
    frauds: int
    fraud_rate: float
    labelled: int
    labelled_genuine: int
    unlabelled: int
    tenants: int
    first_event: datetime
    last_event: datetime
    days_with_events: int
    columns: int


@dataclass(frozen=True)
class TenantCounts:
    """Transactions, frauds and labels of one tenant (always every tenant of the store)."""

    tenant: str
    transactions: int
    frauds: int
    fraud_rate: float
    labelled: int
    first_event: datetime
    last_event: datetime


@dataclass(frozen=True)
class DayCounts:
    """Events of one UTC day (days without events inside the range are present with zeros)."""

    day: date
    events: int
    frauds: int
    labelled: int

    @property
    def fraud_rate(self) -> float | None:
        return self.frauds / self.events if self.events else None


@dataclass(frozen=True)
class TenantDays:
    """The daily counts of one tenant."""

    tenant: str
    days: tuple[DayCounts, ...]


@dataclass(frozen=True)
class LabelSummary:
    """How labels relate to transactions in scope.

    ``relabelled`` events have more than one label event (the latest wins); ``orphans`` are
    current labels of events the store has no transaction for; ``before_event`` current labels
    are dated before their transaction (a clock or mapping problem); ``fraud_delay_days`` are
    quantiles of ``label_time - event_time`` of current fraud labels, in days. ``sources`` and
    ``fraud_types`` count labelled transactions (and frauds among them) per value of the
    current label's ``source`` and ``fraud_type``, most frequent first.
    """

    label_events: int
    relabelled: int
    orphans: int
    before_event: int
    fraud_delay_days: Quantiles | None
    sources: tuple[CategoryCount, ...] = ()
    fraud_types: tuple[CategoryCount, ...] = ()


@dataclass(frozen=True)
class Correlations:
    """Spearman rank correlations among numeric (and boolean) columns, and with ``is_fraud``.

    ``matrix[i][j]`` is the correlation of ``columns[i]`` and ``columns[j]`` over the rows where
    both are present; ``None`` where it is undefined (a constant column). ``rows`` is the number
    of rows used; ``sampled`` says whether they are a seeded sample of the scope.
    """

    method: Literal["spearman"]
    columns: tuple[str, ...]
    matrix: tuple[tuple[float | None, ...], ...]
    with_fraud: tuple[float | None, ...]
    rows: int
    sampled: bool
    seed: int


@dataclass(frozen=True)
class Profile:
    """A data profile of an event store: what a person reads before building features.

    Produced by :func:`profile_events`; written as JSON and HTML by :func:`write_profile`.
    ``columns`` keep the store's column order; :meth:`ranked_columns` orders them by power.
    """

    store: str
    tenant: str | None
    generated_at: datetime
    elapsed_seconds: float
    sample_rows: int
    seed: int
    max_categories: int
    totals: Totals
    tenants: tuple[TenantCounts, ...]
    daily: tuple[DayCounts, ...]
    daily_by_tenant: tuple[TenantDays, ...]
    labels: LabelSummary
    columns: tuple[ColumnProfile, ...]
    correlations: Correlations | None
    notes: tuple[str, ...]
    format_version: int = PROFILE_FORMAT_VERSION

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"column {name!r} is not in the profile; columns: "
                       f"{[c.name for c in self.columns]}")

    def ranked_columns(self) -> list[ColumnProfile]:
        """Columns by univariate power: information value, highest first; no power last."""
        return sorted(self.columns, key=lambda c: (c.iv is None, -(c.iv or 0.0), c.name))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (times as ISO-8601 text, NaN as ``None``), ready for ``json``."""
        return cast(dict[str, Any], _plain(self))

    def to_json(self) -> str:
        """The profile as JSON text with sorted keys, so two profiles diff line by line."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False,
                          ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, DayCounts):
            out["fraud_rate"] = value.fraud_rate
        return out
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
