"""The release gate end to end on a small simulated store: who passes, who fails, and why."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate, write_simulation
from fraudops.features import FeatureSet, OfflineEngine, load_feature_sets, starter_definitions
from fraudops.models import (
    ActionPolicy,
    FraudTrainer,
    TrainedModel,
    TrainingPlan,
    build_dataset,
    choose_policy,
    train_model,
)
from fraudops.release import GateConfig, run_gate

#: The team reviews 100 events a day; policies are chosen for 90, leaving headroom for drift.
CAPACITY = 100.0
FAST = GateConfig(check_clean_load=False, review_capacity_per_day=CAPACITY)


def _plan(model: str, as_of: datetime) -> TrainingPlan:
    return TrainingPlan(model=model, feature_selection=False, train_days=14, validation_days=7,
                        label_delay_days=7, as_of=as_of, review_capacity_per_day=0.9 * CAPACITY)


def _simulation(seed: int):  # type: ignore[no-untyped-def]
    return simulate(SimulationConfig(n_days=60, seed=seed, tenants=(
        TenantProfile(name="acme", n_customers=300, n_terminals=600),)))


@pytest.fixture(scope="module")
def feature_set(tmp_path_factory: pytest.TempPathFactory) -> FeatureSet:
    path = tmp_path_factory.mktemp("defs") / "definitions.py"
    path.write_text(starter_definitions(identity=True))
    return load_feature_sets(path)["starter_v1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, feature_set: FeatureSet):  # type: ignore[no-untyped-def]
    """A store, its backfill, the gate moment and the models trained a week before it."""
    store = EventStore(tmp_path_factory.mktemp("store") / "events")
    write_simulation(_simulation(3), store, "sim")
    features = OfflineEngine(store).backfill(feature_set)
    as_of = features.column("event_time")[-1].as_py()
    trained_at = as_of - timedelta(days=7)
    good = train_model(store, feature_set, _plan("lightgbm", trained_at), features=features)
    live = train_model(store, feature_set, _plan("logistic", trained_at), features=features)
    return store, features, as_of, good.model, live.model


@pytest.fixture(scope="module")
def shuffled(world, feature_set: FeatureSet) -> TrainedModel:  # type: ignore[no-untyped-def]
    """A LightGBM model trained on the same windows with its labels permuted."""
    store, features, as_of, _, _ = world
    end = as_of - timedelta(days=14)
    data = build_dataset(store, features, labels_as_of=as_of - timedelta(days=7),
                         start=end - timedelta(days=21), end=end)
    rng = np.random.default_rng(0)
    data = dataclasses.replace(data, y=rng.permutation(data.y))
    in_valid = data.event_time >= np.datetime64((end - timedelta(days=7)).replace(tzinfo=None), "us")
    train, valid = data.subset(~in_valid), data.subset(in_valid)
    trainer = FraudTrainer(model="lightgbm", random_state=0).fit(train, valid)
    draft = trainer.to_model(feature_set_name=feature_set.name,
                             definition_hash=feature_set.definition_hash())
    p = draft.predict_proba(valid.X)
    policy = choose_policy(valid.y, p, valid.event_time, review_capacity_per_day=0.9 * CAPACITY,
                           prevent_precision=0.9)
    return trainer.to_model(feature_set_name=feature_set.name,
                            definition_hash=feature_set.definition_hash(), policy=policy)


@pytest.fixture(scope="module")
def noise_world(tmp_path_factory: pytest.TempPathFactory, feature_set: FeatureSet):  # type: ignore[no-untyped-def]
    """A store whose fraud labels sit on random transactions: no feature carries signal."""
    sim = _simulation(5)
    store = EventStore(tmp_path_factory.mktemp("noise") / "events")
    store.append_transactions(sim.transactions, batch_id="sim")
    txns = sim.transactions
    rng = np.random.default_rng(1)
    frauds = pc.sum(sim.labels.column("is_fraud")).as_py()
    picked = np.sort(rng.choice(txns.num_rows, size=frauds, replace=False))
    times = txns.column("event_time").take(pa.array(picked))
    labels = pa.table({
        "event_id": txns.column("event_id").take(pa.array(picked)),
        "tenant": txns.column("tenant").take(pa.array(picked)),
        "is_fraud": pa.array([True] * frauds),
        "label_time": pc.add(times, pa.scalar(timedelta(days=1))),
    })
    store.append_labels(labels, batch_id="noise")
    features = OfflineEngine(store).backfill(feature_set)
    as_of = features.column("event_time")[-1].as_py()
    model = train_model(store, feature_set, _plan("lightgbm", as_of - timedelta(days=7)),
                        features=features).model
    return store, features, as_of, model


def _gate(world, feature_set, candidate, live="live", config=FAST, **kw):  # type: ignore[no-untyped-def]
    store, features, as_of, _, live_model = world
    return run_gate(store, feature_set, candidate, live_model if live == "live" else live,
                    config=config, as_of=as_of, features=features, **kw)


def test_good_lightgbm_candidate_passes_against_logistic_live(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    report = _gate(world, feature_set, world[3],
                   config=GateConfig(review_capacity_per_day=CAPACITY))
    assert report.passed, [(c.name, c.detail) for c in report.failures]
    assert {c.name for c in report.checks} >= {
        "pr_auc", "card_precision", "prevented_recall", "calibration", "importance_rank",
        "action_changes", "review_volume", "score_psi", "backtest", "latency",
        "definition_hash", "label_leakage", "clean_load"}


def test_model_trained_on_shuffled_labels_fails_pr_auc(world, feature_set, shuffled) -> None:  # type: ignore[no-untyped-def]
    report = _gate(world, feature_set, shuffled)
    assert not report.passed
    assert "pr_auc" in [c.name for c in report.failures]
    pr_auc = next(c for c in report.checks if c.name == "pr_auc")
    assert pr_auc.figures["bootstrap"]["high"] < 0
    assert "worse beyond noise" in pr_auc.detail


def test_no_signal_model_fails_against_base_rate_baseline(noise_world, feature_set) -> None:  # type: ignore[no-untyped-def]
    store, features, as_of, model = noise_world
    report = run_gate(store, feature_set, model, None, config=FAST, as_of=as_of,
                      features=features)
    assert report.baseline.startswith("base-rate baseline")
    assert not report.passed
    assert "pr_auc" in [c.name for c in report.failures]


def test_good_candidate_beats_base_rate_baseline(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    report = _gate(world, feature_set, world[3], live=None)
    pr_auc = next(c for c in report.checks if c.name == "pr_auc")
    assert pr_auc.passed
    assert pr_auc.figures["require_improvement"]


def test_definition_hash_mismatch_fails_integrity(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    stale = dataclasses.replace(world[3], definition_hash="0123456789abcdef")
    report = _gate(world, feature_set, stale)
    assert [c.name for c in report.failures] == ["definition_hash"]


def test_tampered_artifact_fails_the_clean_load(world, feature_set, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = world[3].save(tmp_path / "model")
    (folder / "model.txt").write_text((folder / "model.txt").read_text() + "\n")
    config = dataclasses.replace(FAST, check_clean_load=True, n_bootstrap=20)
    report = _gate(world, feature_set, world[3], config=config, candidate_dir=folder)
    clean = next(c for c in report.checks if c.name == "clean_load")
    assert not clean.passed
    assert "sha256" in clean.detail


def test_window_ends_a_label_delay_before_as_of(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    report = _gate(world, feature_set, world[3], config=dataclasses.replace(FAST, n_bootstrap=10))
    as_of = world[2]
    assert report.window == ((as_of - timedelta(days=14)).isoformat(),
                             (as_of - timedelta(days=7)).isoformat())
    assert report.labels_as_of == as_of.isoformat()


def test_score_diffs_hold_both_scores_largest_disagreement_first(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    report = _gate(world, feature_set, world[3], config=dataclasses.replace(FAST, n_bootstrap=10))
    diffs = report.score_diffs
    assert diffs.column_names == ["tenant", "event_id", "event_time", "card_id", "amount",
                                  "is_fraud", "candidate_score", "live_score", "abs_diff",
                                  "candidate_action", "live_action"]
    gaps = diffs.column("abs_diff").to_numpy()
    assert (np.diff(gaps) <= 0).all()
    top = diffs.slice(0, 1).to_pylist()[0]
    assert top["abs_diff"] == abs(top["candidate_score"] - top["live_score"])
    # the table's scores are the models' own 0-100 scores of those events
    _, features, _, candidate, _ = world
    row = features.filter(pc.equal(features.column("event_id"), top["event_id"]))
    x = [row.column(n)[0].as_py() for n in candidate.feature_names]
    probability = candidate.predict_one([np.nan if v is None else v for v in x])
    assert top["candidate_score"] == ActionPolicy.score(probability)
    assert top["candidate_action"] == ActionPolicy.from_dict(candidate.policy).action(probability)


def test_lower_action_change_threshold_fails_that_check(world, feature_set) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(FAST, n_bootstrap=10, max_action_change_share=0.0)
    report = _gate(world, feature_set, world[3], config=config)
    assert "action_changes" in [c.name for c in report.failures]


def test_config_rejects_an_invalid_threshold() -> None:
    with pytest.raises(ValueError, match="'max_score_psi' parameter of GateConfig must be > 0"):
        GateConfig(max_score_psi=0)
    with pytest.raises(ValueError, match="'min_backtest_wins'"):
        GateConfig(backtest_weeks=2, min_backtest_wins=3)
