"""Reasons for one score: additive, on the decision path, and the same on both code paths."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from fraudops.models._artifact import _LightGBMScorer, _LogisticScorer


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=3000) > 1.5).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 5] = 0.0   # constant: never split on
    return lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 0},
                     lgb.Dataset(x, y), num_boost_round=60)


def _bias(b: lgb.Booster) -> float:
    roots = [t["tree_structure"] for t in b.dump_model()["tree_info"]]
    return sum(r.get("internal_value", r.get("leaf_value", 0.0)) for r in roots)


def test_lightgbm_path_attributions_add_up_to_the_raw_score(booster: lgb.Booster) -> None:
    scorer = _LightGBMScorer(booster.model_to_string(), 6)
    rows = np.random.default_rng(1).normal(size=(20, 6))
    rows[3, 2] = np.nan
    for row in rows:
        contributions = scorer.contributions_one(list(row))
        raw = booster.predict(row[None, :], raw_score=True)[0]
        # internal values are dumped with 6 significant digits: exact up to that rounding
        assert sum(contributions) + _bias(booster) == pytest.approx(raw, abs=1e-4)


def test_unused_features_get_no_credit_and_the_slow_path_agrees(booster: lgb.Booster) -> None:
    scorer = _LightGBMScorer(booster.model_to_string(), 6)
    row = [2.0, 1.5, 1.5, 0.0, 0.0, 0.0]
    fast = scorer.contributions_one(row)
    scorer._fast = None   # the fallback through Booster.predict(pred_leaf=True)
    assert scorer.contributions_one(row) == pytest.approx(fast)
    assert abs(fast[0]) == max(abs(c) for c in fast)   # the strongest signal leads
    assert booster.feature_importance("split")[5] == 0
    assert fast[5] == 0.0


def test_logistic_contributions_are_coefficient_times_centred_value() -> None:
    numbers = {"impute": [0.0, 5.0], "mean": [1.0, 2.0], "scale": [2.0, 1.0],
               "coef": [1.0, -0.5], "intercept": 0.1}
    scorer = _LogisticScorer(numbers, 2)
    assert scorer.contributions_one([3.0, float("nan")]) == pytest.approx([1.0, -1.5])


@pytest.mark.parametrize("objective", ["binary", "cross_entropy"])
def test_one_call_gives_the_prediction_and_the_reasons_of_two(booster: lgb.Booster,
                                                              objective: str) -> None:
    """``explain_one`` is ``(predict_one, contributions_one)`` to the last bit: from the
    leaves' outputs where a probe showed they reproduce LightGBM (binary), else from LightGBM."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 6))
    y = (x[:, 0] - x[:, 3] > 0.5).astype(int)
    model = booster if objective == "binary" else lgb.train(
        {"objective": objective, "verbose": -1, "num_leaves": 7, "seed": 0},
        lgb.Dataset(x, y), num_boost_round=20)
    scorer = _LightGBMScorer(model.model_to_string(), 6)
    rows = rng.normal(size=(500, 6)) * 3
    rows[rng.random(rows.shape) < 0.15] = np.nan
    for row in rows.tolist():
        assert scorer.explain_one(row) == (scorer.predict_one(row), scorer.contributions_one(row))
    assert (scorer._link is not None) == (objective == "binary")


def test_the_one_call_link_handles_extreme_scores(booster: lgb.Booster) -> None:
    scorer = _LightGBMScorer(booster.model_to_string(), 6)
    scorer.explain_one([0.0] * 6)
    assert scorer._link is not None
    assert scorer._link(-1e6) == 0.0
    assert scorer._link(1e6) == 1.0
