"""Time windows of aggregations: ``(t − lag − length, t − lag]``, in whole microseconds.

One rule, written once, read by both engines: an event at ``s`` is in the window of an event at
``t`` when ``t − lag − length < s <= t − lag``. With no lag, events at exactly ``t`` count only
if they come no later than the current event in ``(event_time, event_id)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fraudops.core import DefinitionError, format_duration, parse_duration

_US = 1_000_000


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


@dataclass(frozen=True, order=True)
class Window:
    """A window of ``length`` ending ``lag`` before the current event.

    Examples
    --------
    >>> days(7).name
    '7d'
    >>> days(30).lagged(days(7)).name
    '30d_lag7d'
    """

    length: timedelta
    lag: timedelta = timedelta(0)

    def lagged(self, lag: Window | timedelta | str) -> Window:
        """The same window, ending ``lag`` before the current event (``days(30).lagged(days(7))``)."""
        delta = lag.length if isinstance(lag, Window) else parse_duration(lag, field="lag")
        return Window(self.length, delta)

    @property
    def length_us(self) -> int:
        return _micros(self.length)

    @property
    def lag_us(self) -> int:
        return _micros(self.lag)

    @property
    def horizon_us(self) -> int:
        """How far back this window can see: state older than this can be dropped."""
        return self.length_us + self.lag_us

    @property
    def name(self) -> str:
        base = format_duration(self.length)
        return base if not self.lag else f"{base}_lag{format_duration(self.lag)}"

    def validate(self, where: str) -> None:
        if self.length_us <= 0:
            raise DefinitionError(f"window {self.name!r} of {where}: length must be > 0")
        if self.lag_us < 0:
            raise DefinitionError(f"window {self.name!r} of {where}: lag must be >= 0")

    def __str__(self) -> str:
        return self.name


def window(length: timedelta | str, *, lag: timedelta | str = timedelta(0)) -> Window:
    """A window from a duration or ``'7d'``-style text."""
    return Window(parse_duration(length, field="window length"), parse_duration(lag, field="lag"))


def minutes(n: float) -> Window:
    return Window(timedelta(minutes=n))


def hours(n: float) -> Window:
    return Window(timedelta(hours=n))


def days(n: float) -> Window:
    return Window(timedelta(days=n))
