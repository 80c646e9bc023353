"""FraudTrainer: time-based validation, early stopping, calibration, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.models._dataset import Dataset
from fraudops.models._metrics import average_precision
from fraudops.models._trainer import FraudTrainer

START = np.datetime64("2024-03-01T00:00", "us")
FAST = {"num_boost_round": 300, "early_stopping_rounds": 30, "num_threads": 1}


def synthetic_dataset(n: int = 20_000, days: int = 28, *, noise: int = 3, seed: int = 0) -> Dataset:
    """Rare fraud (~1-2 %) from a non-linear signal: the product of two features plus a step.

    ``signal_a * signal_b`` is invisible to a linear model of the two (it is symmetric in each
    sign), so a tree model must beat the logistic baseline. ``noise_*`` are pure noise.
    """
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 1, size=n)
    logit = -6.0 + 2.2 * a * b + 2.0 * (c > 0.8)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    columns = [a, b, c] + [rng.normal(size=n) for _ in range(noise)]
    x = np.column_stack(columns)
    x[rng.random(n) < 0.02, 2] = np.nan  # some missing values
    names = ("signal_a", "signal_b", "signal_step", *tuple(f"noise_{i}" for i in range(noise)))
    offsets = np.sort(rng.integers(0, days * 86_400_000_000, size=n))
    return Dataset(
        X=x, feature_names=names, y=y,
        event_id=np.array([f"e{i}" for i in range(n)], dtype=object),
        tenant=np.array(["t"] * n, dtype=object),
        event_time=START + offsets.astype("timedelta64[us]"),
        card_id=np.array([f"c{i % 500}" for i in range(n)], dtype=object),
        amount=rng.gamma(2.0, 30.0, size=n),
    )


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset]:
    """Four weeks to train on (its last week validates), and the following week to test."""
    full = synthetic_dataset(25_000, days=35)
    cut = START + np.timedelta64(28, "D")
    return full.subset(full.event_time < cut), full.subset(full.event_time >= cut)


def test_lightgbm_beats_random_and_the_logistic_baseline_on_a_nonlinear_signal(data):
    train, test = data
    lgbm = FraudTrainer(**FAST).fit(train).to_model(feature_set_name="s", definition_hash="h")
    logit = FraudTrainer(model="logistic").fit(train).to_model(feature_set_name="s", definition_hash="h")
    ap_lgbm = average_precision(test.y, lgbm.predict_proba(test.X))
    ap_logit = average_precision(test.y, logit.predict_proba(test.X))
    ap_random = float(test.y.mean())
    assert ap_lgbm > 3 * ap_random
    assert ap_lgbm > ap_logit + 0.1


def test_validation_window_is_the_latest_days_of_train(data):
    """Early stopping and calibration use the last ``validation_days``, never a random sample."""
    train, _ = data
    trainer = FraudTrainer(validation_days=5, **FAST).fit(train)
    first, last = trainer.validation_window_
    assert last == train.event_time.max()
    expected = train.event_time > train.event_time.max() - np.timedelta64(5, "D")
    assert first == train.event_time[expected].min()
    assert trainer.validation_metrics_["rows"] == int(expected.sum())
    assert trainer.train_rows_ == len(train) - int(expected.sum())


def test_early_stopping_keeps_the_best_round_only(data):
    train, _ = data
    trainer = FraudTrainer(num_boost_round=400, early_stopping_rounds=20, num_threads=1).fit(train)
    assert 1 <= trainer.best_iteration_ < 400
    assert trainer.booster_.current_iteration() == trainer.best_iteration_
    curve = trainer.evals_["valid"]["average_precision"]
    assert max(curve) == pytest.approx(curve[trainer.best_iteration_ - 1])


def test_explicit_valid_must_come_after_train(data):
    train, test = data
    with pytest.raises(ValueError, match="must come after the training data"):
        FraudTrainer(**FAST).fit(test, valid=train)


def test_same_seed_gives_identical_predictions(data):
    train, test = data
    p1 = FraudTrainer(random_state=3, **FAST).fit(train).to_model(
        feature_set_name="s", definition_hash="h").predict_proba(test.X)
    p2 = FraudTrainer(random_state=3, **FAST).fit(train).to_model(
        feature_set_name="s", definition_hash="h").predict_proba(test.X)
    np.testing.assert_array_equal(p1, p2)


def test_calibrated_probabilities_track_the_fraud_rate(data):
    """On the test week, calibration brings the mean probability close to the fraud rate."""
    train, test = data
    model = FraudTrainer(negative_sample_rate=0.2, **FAST).fit(train).to_model(
        feature_set_name="s", definition_hash="h")
    raw, probability = model.predict_raw(test.X), model.predict_proba(test.X)
    rate = test.y.mean()
    assert abs(probability.mean() - rate) < abs(raw.mean() - rate)
    assert abs(probability.mean() - rate) < 0.5 * rate


def test_progress_reports_training_rounds(data):
    train, _ = data
    seen: list[tuple[str, int, int | None]] = []
    FraudTrainer(**FAST).fit(train, progress=lambda s, d, t: seen.append((s, d, t)))
    stages = [s for s, _, _ in seen]
    assert "train" in stages
    assert stages[-1] == "calibrate"
    assert seen[-1][1] == seen[-1][2]


def test_logistic_artifact_matches_sklearn(data):
    """The JSON numbers reproduce sklearn's pipeline (median impute, scaler, C=1)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = data
    trainer = FraudTrainer(model="logistic", calibration=None).fit(train)
    fit_rows = train.subset(train.event_time <= train.event_time.max() - np.timedelta64(7, "D"))
    reference = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                              LogisticRegression(C=1.0, max_iter=1000)).fit(fit_rows.X, fit_rows.y)
    model = trainer.to_model(feature_set_name="s", definition_hash="h")
    np.testing.assert_allclose(model.predict_proba(test.X), reference.predict_proba(test.X)[:, 1],
                               rtol=1e-5, atol=1e-8)


def test_validation_window_without_fraud_is_refused(data):
    train, _ = data
    quiet = train.subset(np.ones(len(train), bool))
    y = quiet.y.copy()
    y[quiet.event_time > quiet.event_time.max() - np.timedelta64(7, "D")] = 0
    quiet = Dataset(X=quiet.X, feature_names=quiet.feature_names, y=y, event_id=quiet.event_id,
                    tenant=quiet.tenant, event_time=quiet.event_time, card_id=quiet.card_id,
                    amount=quiet.amount)
    with pytest.raises(ValueError, match="validation window has no fraud"):
        FraudTrainer(**FAST).fit(quiet)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"model": "xgboost"}, r"'model' parameter of FraudTrainer must be one of"),
        ({"calibration": "platt"}, r"'calibration' parameter .* got 'platt'"),
        ({"validation_days": 0}, r"'validation_days' parameter .* > 0; got 0"),
        ({"num_boost_round": 0}, r"'num_boost_round' parameter .* >= 1; got 0"),
        ({"negative_sample_rate": 1.5}, r"'negative_sample_rate' parameter .* \(0, 1\]; got 1.5"),
        ({"params": {"n_estimators": 10}}, r"must not set 'n_estimators': use FraudTrainer\(num_boost_round"),
        ({"validation_days": 100}, r"covers the whole training data"),
    ],
)
def test_bad_parameters_are_refused_with_the_parameter_named(data, params, match):
    train, _ = data
    with pytest.raises(ValueError, match=match):
        FraudTrainer(**params).fit(train)


def test_to_model_before_fit_is_refused():
    with pytest.raises(ValueError, match="not fitted yet"):
        FraudTrainer().to_model(feature_set_name="s", definition_hash="h")


def test_feature_selection_in_fit_trains_on_the_kept_features(data):
    train, _ = data
    trainer = FraudTrainer(feature_selection=True, **FAST).fit(train)
    assert trainer.feature_names_ == trainer.selection_.kept
    assert {"signal_a", "signal_b"} <= set(trainer.feature_names_)
    assert trainer.to_model(feature_set_name="s", definition_hash="h").params["selection"]["kept"]
