"""The small statistics of the data profile: information value, histogram bins, Spearman ranks.

Kept apart from the SQL in ``_profile.py`` so that each formula is a plain function a test (or
a reader) can check by hand. Definitions and the reasons for them are in ``docs/profile.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._profile_model import HistogramScale, Quantiles

#: Levels of :class:`Quantiles`, in field order.
QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: Pseudo-count added to the fraud and the genuine count of every bin before taking logs.
IV_SMOOTHING = 0.5
#: Values are log-binned when non-negative with a skewness above this (amounts, counts).
LOG_BINS_SKEWNESS = 2.0
#: Integer columns spanning at most this many values get one bin per value.
MAX_INTEGER_BINS = 50


def information_value(bins: Sequence[tuple[int, int]], *,
                      smoothing: float = IV_SMOOTHING) -> float | None:
    """Information value of a binned column: ``sum((g_i - b_i) * ln(g_i / b_i))``.

    ``bins`` are ``(rows, frauds)`` per bin. ``g_i`` and ``b_i`` are the bin's shares of all
    genuine and of all fraud rows after adding ``smoothing`` to both counts of every non-empty
    bin, so that a bin without frauds (or without genuine rows) has a finite weight of evidence.
    ``None`` when the scope has no fraud or no genuine row: the value is then undefined.

    Examples
    --------
    >>> information_value([(100, 10), (100, 10)])
    0.0
    >>> round(information_value([(100, 1), (100, 19)]), 3)
    1.322
    """
    kept = [(rows, frauds) for rows, frauds in bins if rows > 0]
    total_fraud = sum(frauds for _, frauds in kept)
    total_genuine = sum(rows - frauds for rows, frauds in kept)
    if total_fraud == 0 or total_genuine == 0:
        return None
    extra = smoothing * len(kept)
    value = 0.0
    for rows, frauds in kept:
        good = (rows - frauds + smoothing) / (total_genuine + extra)
        bad = (frauds + smoothing) / (total_fraud + extra)
        value += (good - bad) * math.log(good / bad)
    return value


def iv_strength(iv: float | None) -> str:
    """The conventional reading of an information value (credit scoring's rule of thumb)."""
    if iv is None:
        return "n/a"
    for limit, word in ((0.02, "none"), (0.1, "weak"), (0.3, "medium"), (0.5, "strong")):
        if iv < limit:
            return word
    return "suspicious"


@dataclass(frozen=True)
class BinPlan:
    """Histogram bins as edges in the column's units: bin ``i`` is ``[edges[i], edges[i+1])``."""

    scale: HistogramScale
    edges: tuple[float, ...]

    @property
    def bins(self) -> int:
        return len(self.edges) - 1


def plan_bins(*, is_integer: bool, vmin: float, vmax: float, skewness: float | None,
              max_bins: int = 30) -> BinPlan:
    """Choose histogram bins for a column from its range and skewness.

    Small integer ranges get one bin per value; non-negative values with a long right tail get
    bins of equal width in ``ln(1 + x)``, so that the bulk of small amounts is not squeezed into
    the first bar; everything else gets up to ``max_bins`` equal-width bins. Integer columns
    get integer edges, so that no bin is empty only because it holds no integer.

    Examples
    --------
    >>> plan_bins(is_integer=True, vmin=1, vmax=3, skewness=None).edges
    (1.0, 2.0, 3.0, 4.0)
    >>> plan_bins(is_integer=True, vmin=0, vmax=99, skewness=0.0, max_bins=10).edges[:3]
    (0.0, 10.0, 20.0)
    """
    vmin, vmax = float(vmin), float(vmax)
    if is_integer and vmax - vmin + 1 <= MAX_INTEGER_BINS:
        return BinPlan("integer", tuple(float(v) for v in range(int(vmin), int(vmax) + 2)))
    if vmax == vmin:
        return BinPlan("linear", (vmin, vmax))
    if vmin >= 0 and skewness is not None and skewness > LOG_BINS_SKEWNESS:
        lo, hi = math.log1p(vmin), math.log1p(vmax)
        targets = [_round_significant(math.expm1(lo + i * (hi - lo) / max_bins))
                   for i in range(1, max_bins)]
        if is_integer:
            return BinPlan("log", _integer_edges(vmin, vmax, targets))
        inner = sorted({t for t in targets if vmin < t < vmax})
        return BinPlan("log", (vmin, *inner, vmax))
    if is_integer:
        width = math.ceil((vmax - vmin + 1) / max_bins)
        count = math.ceil((vmax - vmin + 1) / width)
        return BinPlan("linear", tuple(float(vmin + i * width) for i in range(count + 1)))
    step = (vmax - vmin) / max_bins
    return BinPlan("linear", (vmin, *(vmin + i * step for i in range(1, max_bins)), vmax))


def _round_significant(value: float, digits: int = 2) -> float:
    """Round to ``digits`` significant digits, so that bin edges read as 130, not 128.19."""
    if value <= 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(value)))


def _integer_edges(vmin: float, vmax: float, targets: Sequence[float]) -> tuple[float, ...]:
    """Integer edges near ``targets`` whose widths never shrink (no saw-tooth of 1- and 2-wide
    bins at the low end); the last edge is ``vmax + 1``."""
    edges, width = [vmin], 1.0
    for target in targets:
        edge = max(float(math.ceil(target)), edges[-1] + width)
        if edge > vmax:
            break
        width = edge - edges[-1]
        edges.append(edge)
    return (*edges, vmax + 1)


def quantiles_from(values: Sequence[float | None] | None) -> Quantiles | None:
    """:class:`Quantiles` from values at :data:`QUANTILE_LEVELS`; ``None`` if there are none."""
    if values is None or any(v is None for v in values):
        return None
    return Quantiles(*(float(v) for v in values if v is not None))


class _Ranks:
    """Average ranks of one column, re-computable in O(n) for any subset of its present rows."""

    def __init__(self, values: np.ndarray) -> None:
        self.present = ~np.isnan(values)
        self.n_present = int(self.present.sum())
        order = np.argsort(values, kind="stable")  # NaN sorts last
        self.order = order[: self.n_present]
        ordered = values[self.order]
        self.group = np.concatenate([[0], np.cumsum(ordered[1:] != ordered[:-1])])
        self.full = self.within(self.present)

    def within(self, mask: np.ndarray) -> np.ndarray:
        """Ranks among the rows of ``mask`` (a subset of the present rows), NaN elsewhere."""
        inside = mask[self.order]
        position = np.cumsum(inside)[inside].astype(float)
        group = self.group[inside]
        mean = np.bincount(group, weights=position)[group] / np.bincount(group)[group]
        out = np.full(mask.shape, np.nan)
        out[self.order[inside]] = mean
        return out


def spearman_matrix(columns: Sequence[np.ndarray]) -> list[list[float | None]]:
    """Spearman correlation of every pair of columns, over the rows where both are present.

    ``columns`` are float arrays with NaN for missing. Ranks are averaged over ties and
    re-computed on each pair's common rows, as the definition asks; a pair with fewer than
    three common rows or a constant side gets ``None``.
    """
    ranks = [_Ranks(np.asarray(c, dtype=float)) for c in columns]
    k = len(ranks)
    out: list[list[float | None]] = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i, k):
            a, b = ranks[i], ranks[j]
            mask = a.present & b.present
            n = int(mask.sum())
            ra = a.full if n == a.n_present else a.within(mask)
            rb = b.full if n == b.n_present else b.within(mask)
            out[i][j] = out[j][i] = _pearson(ra[mask], rb[mask])
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return None
    return max(-1.0, min(1.0, float(dx @ dy) / denominator))
