"""PSI with reference-quantile bins and smoothing, against a slow, obvious version."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fraudops.release import population_stability_index


def _slow_psi(reference: np.ndarray, recent: np.ndarray, bins: int, epsilon: float) -> float:
    """Loops over bins: edges at the reference quantiles (deciles and the 95th and 99th
    percentiles), open outer bins, half-count smoothing."""
    levels = sorted({*(i / bins for i in range(1, bins)), 0.95, 0.99})
    edges = sorted(set(np.quantile(reference, levels).tolist()))
    bounds = [-math.inf, *edges, math.inf]
    total = 0.0
    n_bins = len(bounds) - 1
    for lo, hi in itertools.pairwise(bounds):
        e = (sum(lo <= v < hi for v in reference) + epsilon) / (len(reference) + epsilon * n_bins)
        a = (sum(lo <= v < hi for v in recent) + epsilon) / (len(recent) + epsilon * n_bins)
        total += (a - e) * math.log(a / e)
    return total


def test_identical_distributions_give_zero() -> None:
    x = np.random.default_rng(0).beta(0.5, 8, 3000)
    assert population_stability_index(x, x.copy()) == 0.0


def test_shifted_distribution_gives_a_large_psi() -> None:
    rng = np.random.default_rng(1)
    assert population_stability_index(rng.normal(0, 1, 3000), rng.normal(1.5, 1, 3000)) > 1.0


def test_psi_equals_the_slow_formula() -> None:
    rng = np.random.default_rng(2)
    ref, new = rng.beta(0.5, 8, 400), rng.beta(0.7, 6, 300)
    ref[:100] = 0.01  # ties at the floor merge quantile edges
    assert population_stability_index(ref, new, bins=10, epsilon=0.5) == pytest.approx(
        _slow_psi(ref, new, 10, 0.5), rel=1e-12)


def test_same_distribution_other_sample_stays_small() -> None:
    rng = np.random.default_rng(3)
    assert population_stability_index(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)) < 0.01


def test_psi_rejects_nan() -> None:
    with pytest.raises(ValueError, match="'recent' holds NaN"):
        population_stability_index(np.ones(3), np.array([1.0, np.nan]))


def test_psi_weighs_a_shift_in_the_top_percent_more_than_deciles_do() -> None:
    """Fraud scores change actions at the top: the top-percent shift must weigh in the PSI."""
    rng = np.random.default_rng(1)
    reference = rng.random(20_000)
    recent = rng.random(20_000)
    recent[:200] = 0.99 + 0.01 * rng.random(200)  # the top 1 % of scores now holds 2 %
    tail_aware = population_stability_index(reference, recent)
    deciles_only = _slow_psi_deciles(reference, recent)
    assert tail_aware > 3 * deciles_only


def _slow_psi_deciles(reference: np.ndarray, recent: np.ndarray) -> float:
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    counts = [np.bincount(np.searchsorted(edges, x, side="right"), minlength=10) + 0.5
              for x in (reference, recent)]
    e, a = (c / c.sum() for c in counts)
    return float(np.sum((a - e) * np.log(a / e)))
