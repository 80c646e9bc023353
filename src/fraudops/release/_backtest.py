"""Week-by-week backtest: does the candidate win on most recent weeks, not on one lucky week?

The label-matured span before ``mature_end`` is cut into consecutive 7-day weeks, newest last;
both models are scored on the same events of each week and compared by average precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._bootstrap import fast_average_precision

_WEEK = np.timedelta64(7, "D")


@dataclass(frozen=True)
class BacktestWeek:
    """One week of the backtest: its span, its events and both models' AP on them."""

    start: str                # ISO, UTC
    end: str
    n_events: int
    n_frauds: int
    candidate_ap: float
    live_ap: float

    @property
    def difference(self) -> float:
        return self.candidate_ap - self.live_ap

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "n_events": self.n_events,
                "n_frauds": self.n_frauds,
                "candidate_ap": None if math.isnan(self.candidate_ap) else self.candidate_ap,
                "live_ap": None if math.isnan(self.live_ap) else self.live_ap}


def weekly_backtest(event_time: np.ndarray, y: np.ndarray, candidate: np.ndarray,
                    live: np.ndarray, *, mature_end: np.datetime64,
                    weeks: int) -> list[BacktestWeek]:
    """Both models' AP on each of the ``weeks`` weeks ending at ``mature_end`` (oldest first).

    A week without events or without any known fraud has NaN APs; the gate counts it as
    neither a win nor a loss.
    """
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ValueError(f"The 'weeks' parameter of weekly_backtest must be an integer >= 1; got {weeks!r}")
    times = np.asarray(event_time).astype("datetime64[us]")
    end = np.asarray(mature_end).astype("datetime64[us]")[()]
    out = []
    for w in range(weeks, 0, -1):
        start = end - w * _WEEK
        stop = start + _WEEK
        rows = (times >= start) & (times < stop)
        y_w = y[rows]
        out.append(BacktestWeek(
            start=str(start), end=str(stop), n_events=int(rows.sum()), n_frauds=int(y_w.sum()),
            candidate_ap=fast_average_precision(y_w, candidate[rows]) if rows.any() else math.nan,
            live_ap=fast_average_precision(y_w, live[rows]) if rows.any() else math.nan))
    return out
