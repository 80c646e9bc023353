from __future__ import annotations

import json

import numpy as np
import pytest

from fraudops.models._policy import ActionPolicy, choose_policy

# ten validation events over two days, highest probability first
P = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
Y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 1, 0])
TIMES = np.array(["2024-05-01T10"] * 5 + ["2024-05-02T10"] * 5, dtype="datetime64[us]")


def test_prevent_is_the_lowest_threshold_reaching_the_precision() -> None:
    """Precision of p >= t: .95→1, .9→1, .85→2/3, .8→3/4, .7→3/5 … so 0.75 gives 0.8 (not 0.9)."""
    policy = choose_policy(Y, P, TIMES, review_capacity_per_day=1.5, prevent_precision=0.75)
    assert policy.prevent_threshold == 0.8
    assert policy.constraints["prevent_precision_achieved"] == 0.75
    assert policy.constraints["prevents_per_day"] == 2.0


def test_higher_precision_target_raises_prevent() -> None:
    policy = choose_policy(Y, P, TIMES, review_capacity_per_day=1.5, prevent_precision=0.9)
    assert policy.prevent_threshold == 0.9


def test_review_band_fits_the_daily_capacity() -> None:
    """PREVENT from 0.8; the band [t, 0.8) holds 1, 2, 3, 4 … events for t = .7, .6, .5, .4;
    over 2 days a capacity of 1.5 a day allows 3 events, so REVIEW starts at 0.5."""
    policy = choose_policy(Y, P, TIMES, review_capacity_per_day=1.5, prevent_precision=0.75)
    assert policy.review_threshold == 0.5
    assert policy.constraints["reviews_per_day"] == 1.5
    assert policy.actions(P).tolist() == ["PREVENT"] * 4 + ["REVIEW"] * 3 + ["ALLOW"] * 3


def test_days_are_counted_from_first_to_last_day() -> None:
    """Events on May 1 and May 4 span four days: capacity 1 a day allows 4 reviews."""
    times = np.array(["2024-05-01T10"] * 5 + ["2024-05-04T10"] * 5, dtype="datetime64[us]")
    policy = choose_policy(Y, P, times, review_capacity_per_day=1, prevent_precision=None)
    assert policy.prevent_threshold is None
    assert policy.review_threshold == 0.8
    assert policy.constraints["validation_days"] == 4


def test_unreachable_precision_means_no_prevent_and_says_so() -> None:
    y = np.array([0, 1, 0])
    p = np.array([0.9, 0.5, 0.1])
    policy = choose_policy(y, p, TIMES[:3], review_capacity_per_day=10, prevent_precision=0.6)
    assert policy.prevent_threshold is None
    assert "not reached" in policy.constraints["note"]
    assert policy.review_threshold == 0.1
    assert policy.action(0.99) == "REVIEW"


def test_ties_count_together() -> None:
    """Two events at 0.9 (one fraud) have precision 1/2 as a pair: 0.6 is not reached there."""
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.9, 0.5, 0.5])
    policy = choose_policy(y, p, TIMES[:4], review_capacity_per_day=1, prevent_precision=0.6)
    assert policy.prevent_threshold == 0.5  # 3/4 at 0.5, 1/2 at 0.9


def test_capacity_too_small_for_the_top_ties_leaves_no_review() -> None:
    y = np.array([1, 0, 0])
    p = np.array([0.9, 0.9, 0.1])
    policy = choose_policy(y, p, TIMES[:3], review_capacity_per_day=1, prevent_precision=None)
    assert policy.review_threshold is None
    assert "no REVIEW" in policy.constraints["note"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"review_capacity_per_day": -1, "prevent_precision": 0.9}, "'review_capacity_per_day'.*got -1"),
    ({"review_capacity_per_day": 5, "prevent_precision": 1.5}, r"'prevent_precision'.*\(0, 1\].*1.5"),
    ({"review_capacity_per_day": 5, "prevent_precision": 0}, "'prevent_precision'"),
])
def test_invalid_constraints_are_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_policy(Y, P, TIMES, **kwargs)


def test_invalid_validation_data_are_errors() -> None:
    with pytest.raises(ValueError, match="probabilities in"):
        choose_policy(Y, P * 2, TIMES, review_capacity_per_day=1, prevent_precision=0.9)
    with pytest.raises(ValueError, match="one length"):
        choose_policy(Y[:3], P, TIMES, review_capacity_per_day=1, prevent_precision=0.9)
    with pytest.raises(ValueError, match="empty"):
        choose_policy(Y[:0], P[:0], TIMES[:0], review_capacity_per_day=1, prevent_precision=0.9)


def test_policy_rejects_review_above_prevent() -> None:
    with pytest.raises(ValueError, match=r"'review_threshold' .* must not exceed"):
        ActionPolicy(review_threshold=0.9, prevent_threshold=0.5)
    with pytest.raises(ValueError, match=r"'prevent_threshold'.*in \[0, 1\]"):
        ActionPolicy(review_threshold=0.1, prevent_threshold=1.5)


def test_action_and_score() -> None:
    policy = ActionPolicy(review_threshold=0.3, prevent_threshold=0.8)
    assert [policy.action(p) for p in (0.8, 0.79, 0.3, 0.29)] == ["PREVENT", "REVIEW", "REVIEW", "ALLOW"]
    assert policy.actions(np.array([0.8, 0.79, 0.3, 0.29])).tolist() == \
        ["PREVENT", "REVIEW", "REVIEW", "ALLOW"]
    assert [policy.score(p) for p in (0.0, 0.004, 0.006, 0.625, 1.0)] == [0, 0, 1, 62, 100]
    assert policy.scores(np.array([0.006, 0.625])).tolist() == [1, 62]


def test_round_trip_through_json() -> None:
    policy = choose_policy(Y, P, TIMES, review_capacity_per_day=1.5, prevent_precision=0.75)
    assert ActionPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


def test_from_dict_names_a_missing_key() -> None:
    with pytest.raises(ValueError, match=r"missing key\(s\) \['prevent_threshold'\]"):
        ActionPolicy.from_dict({"review_threshold": 0.2})


def _policy_reference(y: np.ndarray, p: np.ndarray, n_days: int, capacity: float,
                      target: float) -> tuple[float | None, float | None]:
    """Try every threshold, lowest first, with plain loops."""
    candidates = sorted(set(p.tolist()))
    prevent = None
    for t in candidates:
        alerts = [i for i in range(len(p)) if p[i] >= t]
        if sum(y[i] for i in alerts) / len(alerts) >= target:
            prevent = t
            break
    review = None
    for t in candidates:
        if prevent is not None and t >= prevent:
            break
        band = [i for i in range(len(p)) if p[i] >= t and (prevent is None or p[i] < prevent)]
        if len(band) / n_days <= capacity:
            review = t
            break
    if review is None and prevent is not None:
        review = prevent
    return prevent, review


@pytest.mark.parametrize("seed", range(5))
def test_choose_policy_matches_trying_every_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.1).astype(int)
    p = np.round(np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1), 2)
    times = (np.datetime64("2024-05-01", "us") + rng.integers(0, 6 * 86_400, n).astype("timedelta64[s]"))
    n_days = int((times.max().astype("datetime64[D]") - times.min().astype("datetime64[D]")).astype(int)) + 1
    capacity, target = float(rng.integers(1, 8)), float(rng.choice([0.3, 0.5, 0.8]))
    policy = choose_policy(y, p, times, review_capacity_per_day=capacity, prevent_precision=target)
    assert (policy.prevent_threshold, policy.review_threshold) == \
        _policy_reference(y, p, n_days, capacity, target)
