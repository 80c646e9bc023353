from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from fraudops.models._dataset import Dataset
from fraudops.models._metrics import (
    average_precision,
    card_precision_at_k,
    cost_view,
    error_analysis,
    evaluate,
    expected_calibration_error,
    recall_at_fpr,
    roc_auc,
)


def _events(seed: int, n: int = 2000, n_days: int = 5, n_cards: int = 150
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = (np.datetime64("2018-08-08", "us")
             + rng.integers(0, n_days * 86_400, n).astype("timedelta64[s]")).astype("datetime64[us]")
    cards = np.array([f"c{i}" for i in rng.integers(0, n_cards, n)], dtype=object)
    y = (rng.random(n) < 0.05).astype(np.int8)
    p = np.clip(rng.random(n) * 0.6 + 0.4 * y * rng.random(n), 0, 1)
    return times, cards, y, p


def _card_precision_reference(times: np.ndarray, cards: np.ndarray, y: np.ndarray, p: np.ndarray,
                              k: int) -> float:
    """BASELINES.md's five steps with dicts and loops."""
    days = sorted({t.astype("datetime64[D]") for t in times})
    detected: set[str] = set()
    precisions = []
    for day in days:
        per_card: dict[str, list[float]] = {}
        for t, c, label, score in zip(times, cards, y, p, strict=True):
            if t.astype("datetime64[D]") != day or c in detected:  # step 1
                continue
            best = per_card.setdefault(c, [-1.0, 0])  # step 2: max score, max label
            best[0], best[1] = max(best[0], score), max(best[1], label)
        ranked = sorted(per_card.items(), key=lambda item: (-item[1][0], item[0]))[:k]  # step 3
        true_positives = [c for c, (_, label) in ranked if label == 1]
        precisions.append(len(true_positives) / k)
        detected.update(true_positives)  # step 4
    return sum(precisions) / len(precisions)  # step 5


@pytest.mark.parametrize(("seed", "k"), [(0, 10), (1, 25), (2, 200), (3, 1)])
def test_card_precision_matches_the_handbook_procedure(seed: int, k: int) -> None:
    times, cards, y, p = _events(seed)
    assert card_precision_at_k(times, cards, y, p, k=k) == pytest.approx(
        _card_precision_reference(times, cards, y, p, k), abs=1e-12)


def test_card_precision_drops_cards_detected_on_earlier_days() -> None:
    """Card A is a caught fraud on day 1; on day 2 it is gone, so B's fraud is the top card."""
    times = np.array(["2018-08-08T01", "2018-08-08T02", "2018-08-09T01", "2018-08-09T02"],
                     dtype="datetime64[us]")
    cards = np.array(["A", "B", "A", "B"], dtype=object)
    y = np.array([1, 0, 1, 1], dtype=np.int8)
    p = np.array([0.9, 0.1, 0.9, 0.5])
    assert card_precision_at_k(times, cards, y, p, k=1) == 1.0
    assert card_precision_at_k(times, cards, y, p, k=2) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    times = np.array(["2018-08-08T01"], dtype="datetime64[us]")
    assert card_precision_at_k(times, np.array(["A"], object), np.array([1]), np.array([0.3]),
                               k=100) == 0.01


def _ece_reference(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    edges = [b / bins for b in range(bins + 1)]
    total = 0.0
    for b in range(bins):
        last = b == bins - 1
        members = [i for i in range(len(p))
                   if edges[b] <= p[i] < edges[b + 1] or (last and p[i] == 1.0)]
        if members:
            gap = abs(sum(y[i] for i in members) / len(members) - sum(p[i] for i in members) / len(members))
            total += len(members) / len(p) * gap
    return total


@pytest.mark.parametrize("bins", [1, 5, 10, 15])
def test_ece_matches_a_loop(bins: int) -> None:
    _, _, y, p = _events(4, n=500)
    p = np.concatenate([p, [0.0, 1.0, 0.5, 0.1, 0.7]])
    y = np.concatenate([y, [0, 1, 1, 0, 1]]).astype(np.int8)
    assert expected_calibration_error(y, p, bins) == pytest.approx(_ece_reference(y, p, bins), abs=1e-12)


def test_ece_is_zero_when_calibrated_per_bin() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert expected_calibration_error(y, p, bins=2) == 0.0


def _recall_at_fpr_reference(y: np.ndarray, p: np.ndarray, fpr: float) -> float:
    best = 0.0
    for t in [*sorted(set(p.tolist())), math.inf]:
        alert = p >= t
        if (alert & (y == 0)).sum() / (y == 0).sum() <= fpr:
            best = max(best, (alert & (y == 1)).sum() / (y == 1).sum())
    return best


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.1, 0.5])
def test_recall_at_fpr_matches_every_threshold(fpr: float) -> None:
    _, _, y, p = _events(5, n=800)
    p = np.round(p, 2)  # ties
    assert recall_at_fpr(y, p, fpr) == pytest.approx(_recall_at_fpr_reference(y, p, fpr))


def test_single_class_gives_nan() -> None:
    y, p = np.zeros(4, np.int8), np.array([0.1, 0.2, 0.3, 0.4])
    assert math.isnan(roc_auc(y, p))
    assert math.isnan(average_precision(y, p))
    assert math.isnan(recall_at_fpr(y, p))


def test_bad_labels_are_an_error() -> None:
    with pytest.raises(ValueError, match="'y' must hold only 0 and 1"):
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))


def test_cost_view_counts_money_caught_minus_reviews() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.5])
    amount = np.array([100.0, 40.0, 7.0, 3.0, 10.0])
    view = cost_view(y, p, amount, threshold=0.5, review_cost=2.0)
    assert (view.alerts, view.frauds_caught, view.frauds_missed) == (3, 2, 1)
    assert (view.fraud_amount_caught, view.fraud_amount_missed) == (110.0, 40.0)
    assert (view.review_cost, view.net_savings) == (6.0, 104.0)


def _dataset(seed: int) -> Dataset:
    times, cards, y, _ = _events(seed, n=600)
    order = np.argsort(times, kind="stable")
    n = len(times)
    tenants = np.where(np.arange(n) % 3 == 0, "beta", "acme").astype(object)
    rng = np.random.default_rng(seed)
    return Dataset(X=rng.normal(size=(n, 2)), feature_names=("f", "g"), y=y[order],
                   event_id=np.array([f"e{i}" for i in range(n)], dtype=object), tenant=tenants,
                   event_time=times[order], card_id=cards[order], amount=rng.random(n) * 100)


def test_evaluate_reports_overall_tenants_and_segments() -> None:
    ds = _dataset(6)
    p = np.clip(np.random.default_rng(0).random(len(ds)) * 0.5 + 0.5 * ds.y, 0, 1)
    segments = np.where(ds.amount > 50, "large", "small")
    metrics = evaluate(ds, p, k=20, segments=segments, threshold=0.6, review_cost=1.0)
    assert set(metrics.by_tenant) == {"acme", "beta"}
    assert set(metrics.by_segment) == {"large", "small"}
    acme = ds.tenant == "acme"
    assert metrics.by_tenant["acme"].roc_auc == pytest.approx(roc_auc(ds.y[acme], p[acme]))
    assert metrics.by_tenant["acme"].card_precision_at_k == pytest.approx(
        card_precision_at_k(ds.event_time[acme], ds.card_id[acme], ds.y[acme], p[acme], k=20))
    assert metrics.overall.n_events == len(ds)
    assert metrics.overall.n_frauds == int(ds.y.sum())
    assert metrics.overall.cost is not None
    assert metrics.overall.cost.threshold == 0.6
    json.dumps(metrics.to_dict(), allow_nan=False)
    flat = metrics.flat()
    assert flat["tenant.beta.roc_auc"] == metrics.by_tenant["beta"].roc_auc
    assert "segment.large.cost.net_savings" in flat


def test_overall_card_precision_keeps_tenants_apart() -> None:
    """The same card id in two tenants is two cards."""
    ds = Dataset(X=np.zeros((2, 0)), feature_names=(), y=np.array([1, 1], np.int8),
                 event_id=np.array(["a", "b"], object), tenant=np.array(["t", "u"], object),
                 event_time=np.array(["2018-08-08T01", "2018-08-08T02"], "datetime64[us]"),
                 card_id=np.array(["X", "X"], object), amount=np.ones(2))
    assert evaluate(ds, np.array([0.9, 0.8]), k=2).overall.card_precision_at_k == 1.0


def test_to_dict_turns_nan_into_none() -> None:
    ds = _dataset(7)
    zero = ds.subset(ds.y == 0)
    data: dict[str, Any] = evaluate(zero, np.full(len(zero), 0.1)).to_dict()
    assert data["overall"]["roc_auc"] is None


def test_error_analysis_lists_the_most_confident_mistakes() -> None:
    ds = _dataset(8)
    p = np.random.default_rng(1).random(len(ds))
    table = error_analysis(ds, p, top=5, threshold=0.5)
    fp = table.filter(np.array(table.column("kind").to_pylist()) == "false_positive")
    fn = table.filter(np.array(table.column("kind").to_pylist()) == "false_negative")
    expected_fp = sorted(p[(ds.y == 0) & (p >= 0.5)], reverse=True)[:5]
    expected_fn = sorted(p[(ds.y == 1) & (p < 0.5)])[:5]
    assert fp.column("probability").to_pylist() == expected_fp
    assert fn.column("probability").to_pylist() == expected_fn
    assert table.column_names[-2:] == ["f", "g"]
    row = int(np.flatnonzero(p == expected_fp[0])[0])
    assert fp.column("f")[0].as_py() == ds.X[row, 0]
    assert fp.column("event_id")[0].as_py() == ds.event_id[row]
