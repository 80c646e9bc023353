"""Each check honours its threshold: the same figures pass under a loose one, fail under a
strict one. Synthetic scored windows, no training."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from fraudops.models import ActionPolicy
from fraudops.release._backtest import weekly_backtest
from fraudops.release._checks import (
    ScoredWindow,
    check_action_changes,
    check_action_drift,
    check_average_precision,
    check_backtest,
    check_calibration,
    check_card_precision,
    check_importance_rank,
    check_latency,
    check_prevented_recall,
    check_review_volume,
    check_score_psi,
)
from fraudops.release._gate import GateConfig
from fraudops.release._report_types import CheckResult

BASE = GateConfig(n_bootstrap=50)


def _window(seed: int = 0, baseline: bool = False) -> ScoredWindow:
    rng = np.random.default_rng(seed)
    n = 14 * 200
    y = (rng.random(n) < 0.05).astype(np.int8)
    cand = 1 / (1 + np.exp(-(3 * y - 4 + rng.normal(0, 1, n))))
    live = 1 / (1 + np.exp(-(2 * y - 4 + rng.normal(0, 1, n))))
    t = (np.datetime64("2024-01-01", "D") + np.repeat(np.arange(14), 200)).astype("datetime64[us]")
    policy = ActionPolicy(review_threshold=0.2, prevent_threshold=0.6)
    cards = np.array([f"c{i % 150}" for i in range(n)], dtype=object)
    return ScoredWindow(y=y, event_time=t, card_id=cards, candidate=cand, live=live,
                        candidate_actions=policy.actions(cand), live_actions=policy.actions(live),
                        live_is_baseline=baseline)


W = _window()
#: the weaker model as candidate: worse by ~0.27 AP, so a tolerance decides the verdict
WORSE = dataclasses.replace(W, candidate=W.live, live=W.candidate,
                            candidate_actions=W.live_actions, live_actions=W.candidate_actions)
#: one of the frauds live prevents is allowed by the candidate
_missed = int(np.flatnonzero((W.y == 1) & (W.live_actions == "PREVENT"))[0])
MISSES = dataclasses.replace(W, candidate_actions=np.where(np.arange(len(W.y)) == _missed,
                                                           "ALLOW", "PREVENT").astype(object))
WEEKS = weekly_backtest(WORSE.event_time, WORSE.y, WORSE.candidate, WORSE.live,
                        mature_end=np.datetime64("2024-01-15", "us"), weeks=2)
RNG = np.random.default_rng(9)
REF, RECENT = RNG.beta(1, 9, 2000), RNG.beta(1.3, 9, 2000)

Run = Callable[[GateConfig], CheckResult]
CASES: dict[str, tuple[Run, dict[str, object], dict[str, object]]] = {
    # name: (run, loose config, strict config)
    "pr_auc": (lambda c: check_average_precision(WORSE, c), {"ap_tolerance": 1.0},
               {"ap_tolerance": 0.0}),
    "card_precision": (lambda c: check_card_precision(WORSE, c, 5), {"cp_tolerance": 1.0},
                       {"cp_tolerance": 0.0}),
    "prevented_recall": (lambda c: check_prevented_recall(MISSES, c),
                         {"min_prevented_recall": 0.0}, {"min_prevented_recall": 1.0}),
    "calibration": (lambda c: check_calibration(W, c), {"max_ece_gap": 1.0}, {"max_ece_gap": 0.0}),
    "importance_rank": (lambda c: check_importance_rank({"a": 3, "b": 2, "c": 1, "d": 0},
                                                        {"a": 3, "b": 1, "c": 2, "d": 0}, c),
                        {"min_rank_correlation": 0.5}, {"min_rank_correlation": 0.9}),
    "action_changes": (lambda c: check_action_changes(W, c), {"max_action_change_share": 1.0},
                       {"max_action_change_share": 0.0}),
    "review_volume": (lambda c: check_review_volume(W, c, 1000.0), {},
                      {"max_review_over_capacity": 1e-6}),
    "score_psi": (lambda c: check_score_psi(REF, RECENT, c), {"max_score_psi": 1.0},
                  {"max_score_psi": 1e-6}),
    "action_drift": (lambda c: check_action_drift(_actions(0.05, 0.05), _actions(0.13, 0.03), c),
                     {"max_flagged_share_ratio": 2.0}, {"max_flagged_share_ratio": 1.5}),
    "backtest": (lambda c: check_backtest(WEEKS, c),
                 {"backtest_tolerance": 1.0, "max_backtest_drop": 1.0},
                 {"backtest_tolerance": 0.0, "max_backtest_drop": 1.0}),
    "latency": (lambda c: check_latency(_Slow(), [[0.0]] * 100, c), {"latency_budget_us": 1e9},
                {"latency_budget_us": 1e-3}),
}


def _actions(review: float, prevent: float, n: int = 1000) -> np.ndarray:
    k_r, k_p = round(review * n), round(prevent * n)
    return np.array(["REVIEW"] * k_r + ["PREVENT"] * k_p + ["ALLOW"] * (n - k_r - k_p), dtype=object)


class _Slow:
    """A stand-in model whose predict_one does a little work."""

    def predict_one(self, x: list[float]) -> float:
        return sum(float(i) for i in range(50)) * 0.0 + x[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_passes_under_loose_and_fails_under_strict_threshold(name: str) -> None:
    run, loose, strict = CASES[name]
    assert run(dataclasses.replace(BASE, **loose)).passed, name  # type: ignore[arg-type]
    failed = run(dataclasses.replace(BASE, **strict))  # type: ignore[arg-type]
    assert not failed.passed
    assert failed.name == name
    assert failed.detail


def test_ap_check_detail_names_the_figures_and_the_interval() -> None:
    result = check_average_precision(WORSE, BASE)
    assert not result.passed
    assert "95 % CI [−" in result.detail
    assert "worse beyond noise" in result.detail


def test_latency_check_reports_the_99th_percentile_of_timed_calls() -> None:
    """With a fake clock, call i takes i µs: p99 of 1..100 µs is numpy's 99th percentile."""
    ticks = iter(np.cumsum([v for i in range(1, 101) for v in (0, i * 1000)]).tolist())
    result = check_latency(_Slow(), [[0.0]] * 100, BASE, clock=lambda: int(next(ticks)))
    assert result.value == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert result.figures["p50_us"] == pytest.approx(50.5)


def test_action_changes_do_not_block_against_the_baseline() -> None:
    strict = dataclasses.replace(BASE, max_action_change_share=0.0)
    result = check_action_changes(_window(baseline=True), strict)
    assert not result.passed
    assert not result.blocking


def test_importance_rank_warns_without_shared_features() -> None:
    result = check_importance_rank({"a": 1.0}, {"b": 1.0}, BASE)
    assert result.passed
    assert not result.blocking


def test_beating_the_baseline_by_a_small_factor_is_not_enough() -> None:
    """A model barely above the base rate (here about 2x) is refused as noise."""
    rng = np.random.default_rng(4)
    n = len(W.y)
    weak = np.clip(0.05 + 0.01 * W.y + rng.normal(0, 0.05, n), 0.0, 1.0)
    window = dataclasses.replace(W, candidate=weak, live=np.full(n, 0.05), live_is_baseline=True,
                                 candidate_actions=W.candidate_actions,
                                 live_actions=W.live_actions)
    result = check_average_precision(window, dataclasses.replace(BASE, n_bootstrap=100))
    assert not result.passed
    assert "min_ap_lift_over_baseline" in result.detail
    assert result.figures["lift_over_baseline"] < 5
    lenient = check_average_precision(window, dataclasses.replace(
        BASE, n_bootstrap=100, min_ap_lift_over_baseline=1.01))
    assert lenient.passed == (lenient.figures["bootstrap"]["low"] > 0)


def test_training_age_fails_a_model_whose_data_ended_long_before_the_window() -> None:
    from datetime import UTC, datetime

    from fraudops.release._checks import check_training_age

    class Model:
        def __init__(self) -> None:
            self.params = {"validation_window": ["2018-05-01T00:00:00+00:00",
                                                 "2018-05-08T00:00:00+00:00"]}

    gate_start = datetime(2018, 7, 8, tzinfo=UTC)
    stale = check_training_age(Model(), gate_start, BASE)  # type: ignore[arg-type]
    assert not stale.passed
    assert stale.value == 61
    assert "retrain" in stale.detail
    fresh = check_training_age(Model(), datetime(2018, 5, 22, tzinfo=UTC), BASE)  # type: ignore[arg-type]
    assert fresh.passed


def test_training_age_only_warns_when_the_artifact_does_not_say() -> None:
    from datetime import UTC, datetime

    from fraudops.release._checks import check_training_age

    class Model:
        def __init__(self) -> None:
            self.params: dict[str, object] = {}

    result = check_training_age(Model(), datetime(2018, 7, 8, tzinfo=UTC), BASE)  # type: ignore[arg-type]
    assert result.passed
    assert not result.blocking


def test_action_drift_counts_a_collapse_of_flagged_events_as_drift() -> None:
    result = check_action_drift(_actions(0.06, 0.02), _actions(0.02, 0.0), BASE)
    assert not result.passed
    assert result.value == pytest.approx(4.0)
    assert "8.00%" in result.detail
    assert "2.00%" in result.detail
