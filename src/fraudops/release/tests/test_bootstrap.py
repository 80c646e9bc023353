"""Day-block bootstrap of paired metric differences: exact AP, coverage, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from fraudops.models import card_precision_at_k, daily_card_precision
from fraudops.release._bootstrap import (
    bootstrap_ap_difference,
    bootstrap_mean_difference,
    fast_average_precision,
)


def _synthetic(seed: int, days: int = 20, per_day: int = 300):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n = days * per_day
    y = (rng.random(n) < 0.05).astype(np.int8)
    signal = y + rng.normal(0, 1, n)
    strong = 1 / (1 + np.exp(-(2.0 * signal)))                 # candidate: more signal
    weak = 1 / (1 + np.exp(-(y + rng.normal(0, 2.0, n))))     # live: noisier
    t = (np.datetime64("2024-01-01", "D") + np.repeat(np.arange(days), per_day)).astype("datetime64[us]")
    return y, strong, weak, t


def test_fast_average_precision_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(np.int8)
    p = np.round(rng.random(2000) + 0.3 * y, 1)  # heavy ties
    assert fast_average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_daily_card_precision_mean_is_the_handbook_metric() -> None:
    y, p, _, t = _synthetic(1, days=5, per_day=200)
    cards = np.array([f"c{i % 37}" for i in range(len(y))], dtype=object)
    _, daily = daily_card_precision(t, cards, y, p, k=5)
    assert daily.mean() == pytest.approx(card_precision_at_k(t, cards, y, p, k=5))


def test_bootstrap_is_seeded_and_deterministic() -> None:
    y, cand, live, t = _synthetic(2)
    a = bootstrap_ap_difference(y, cand, live, t, n_bootstrap=100, seed=7)
    b = bootstrap_ap_difference(y, cand, live, t, n_bootstrap=100, seed=7)
    c = bootstrap_ap_difference(y, cand, live, t, n_bootstrap=100, seed=8)
    assert a == b
    assert a != c


def test_ap_interval_covers_the_true_difference() -> None:
    """Over repeated synthetic windows, the 95 % CI covers the population AP gap most times."""
    y, cand, live, _ = _synthetic(100, days=200, per_day=1000)  # the "population"
    truth = fast_average_precision(y, cand) - fast_average_precision(y, live)
    covered = 0
    for seed in range(15):
        ys, cs, ls, ts = _synthetic(seed, per_day=200)
        r = bootstrap_ap_difference(ys, cs, ls, ts, n_bootstrap=100, seed=seed)
        covered += r.low <= truth <= r.high
        assert r.low <= r.estimate <= r.high
    assert covered >= 12  # nominal 14/15; percentile CIs of a biased statistic run a bit narrow


def test_mean_difference_interval_covers_the_true_mean() -> None:
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cand, live = rng.normal(0.6, 0.1, 30), rng.normal(0.5, 0.1, 30)
        r = bootstrap_mean_difference(cand, live, n_bootstrap=300, seed=seed)
        covered += r.low <= 0.1 <= r.high
    assert covered >= 17


def test_identical_models_give_a_zero_interval() -> None:
    y, cand, _, t = _synthetic(3)
    r = bootstrap_ap_difference(y, cand, cand, t, n_bootstrap=50)
    assert (r.estimate, r.low, r.high) == (0.0, 0.0, 0.0)


def test_bootstrap_rejects_a_bad_count() -> None:
    with pytest.raises(ValueError, match="'n_bootstrap' parameter must be an integer >= 1"):
        bootstrap_mean_difference([1.0], [1.0], n_bootstrap=0)
