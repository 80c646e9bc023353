"""Row transforms: features computed from the event itself and from its other features.

Both engines evaluate them after the aggregations, in definition order, so a transform may read
a column or any earlier feature.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A transaction column as a feature (``Column("amount", name="TX_AMOUNT")``)."""

    column: str
    name: str | None = None

    @property
    def output(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class IsWeekend:
    """1.0 when the event falls on Saturday or Sunday (UTC), else 0.0."""

    name: str = "is_weekend"

    @property
    def output(self) -> str:
        return self.name


@dataclass(frozen=True)
class IsNight:
    """1.0 when the event's UTC hour is in ``[start_hour, end_hour]``, else 0.0."""

    name: str = "is_night"
    start_hour: int = 0
    end_hour: int = 6

    @property
    def output(self) -> str:
        return self.name


@dataclass(frozen=True)
class HourOfDay:
    """The event's UTC hour, 0-23."""

    name: str = "hour_of_day"

    @property
    def output(self) -> str:
        return self.name


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of two columns or features; missing when the denominator is
    0 or missing. Amount relative to its window mean: ``Ratio("amount", "amount_mean_30d_by_card")``."""

    numerator: str
    denominator: str
    name: str | None = None

    @property
    def output(self) -> str:
        return self.name or f"{self.numerator}_over_{self.denominator}"


@dataclass(frozen=True)
class ZScore:
    """``(value − mean) / std``; missing when std is 0 or missing."""

    value: str
    mean: str
    std: str
    name: str | None = None

    @property
    def output(self) -> str:
        return self.name or f"{self.value}_zscore_{self.mean}"


Transform = Column | IsWeekend | IsNight | HourOfDay | Ratio | ZScore
_TRANSFORMS = (Column, IsWeekend, IsNight, HourOfDay, Ratio, ZScore)


def references(transform: Transform) -> list[str]:
    """The columns or features a transform reads."""
    if isinstance(transform, Column):
        return [transform.column]
    if isinstance(transform, Ratio):
        return [transform.numerator, transform.denominator]
    if isinstance(transform, ZScore):
        return [transform.value, transform.mean, transform.std]
    return []


