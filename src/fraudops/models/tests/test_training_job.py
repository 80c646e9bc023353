"""A training run as `fraudops train` does it: mature windows, labels as known, registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fraudops.core import InputError, Workspace
from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate, write_simulation
from fraudops.features import FeatureSet, starter_definitions
from fraudops.models import ModelRegistry, TrainedModel, TrainingPlan, register_training, train_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("train") / "ws")
    config = SimulationConfig(n_days=60, seed=3, tenants=(
        TenantProfile(name="acme", n_customers=300, n_terminals=600),))
    write_simulation(simulate(config), EventStore(ws.events_dir), "sim")
    return ws


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> FeatureSet:
    from fraudops.features import load_feature_sets

    path = tmp_path_factory.mktemp("defs") / "definitions.py"
    path.write_text(starter_definitions(identity=True))
    return load_feature_sets(path)["starter_v1"]


@pytest.fixture(scope="module")
def result(workspace: Workspace, features: FeatureSet):  # type: ignore[no-untyped-def]
    plan = TrainingPlan(train_days=21, validation_days=7, label_delay_days=7,
                        feature_selection=False, review_capacity_per_day=20)
    return train_model(EventStore(workspace.events_dir), features, plan)


def test_windows_end_a_label_delay_before_training_time(result) -> None:  # type: ignore[no-untyped-def]
    train_start, valid_start = result.train_window
    _, mature_end = result.validation_window
    assert mature_end == result.labels_as_of - timedelta(days=7)
    assert valid_start - train_start == timedelta(days=21)
    assert result.train_rows > 0
    assert result.validation_rows > 0


def test_model_carries_policy_metrics_and_definition_hash(result, features: FeatureSet) -> None:  # type: ignore[no-untyped-def]
    model = result.model
    assert model.definition_hash == features.definition_hash()
    assert model.policy is not None
    assert model.policy["review_threshold"] is not None
    assert result.metrics.overall.roc_auc > 0.8  # simulated fraud is learnable
    assert model.metrics["overall"]["n_events"] == result.validation_rows


def test_review_volume_keeps_headroom_below_the_capacity(result, workspace: Workspace) -> None:  # type: ignore[no-untyped-def]
    reviews = result.policy.constraints["reviews_per_day"]
    assert reviews <= 20 * 0.9


def test_labels_after_training_time_are_not_read(workspace: Workspace,
                                                  features: FeatureSet) -> None:
    """Training as of an earlier moment must not see labels that arrived later."""
    store = EventStore(workspace.events_dir)
    early = datetime(2018, 5, 20, tzinfo=UTC)
    plan = TrainingPlan(as_of=early, train_days=14, validation_days=7, feature_selection=False)
    result = train_model(store, features, plan)
    with store.connect() as con:
        [(known,)] = con.sql(
            "SELECT count(DISTINCT l.event_id) FROM labels l JOIN transactions t USING"
            " (tenant, event_id) WHERE l.is_fraud AND l.label_time <= $asof"
            " AND t.event_time >= $start AND t.event_time < $end",
            params={"asof": early, "start": result.train_window[0],
                    "end": result.validation_window[1]}).fetchall()
    assert result.labels_as_of == early
    assert result.train_frauds + result.validation_frauds == known


def test_too_little_history_is_a_clear_error(workspace: Workspace, features: FeatureSet) -> None:
    plan = TrainingPlan(as_of=datetime(2018, 4, 25, tzinfo=UTC))
    with pytest.raises(InputError, match="shorten train_days"):
        train_model(EventStore(workspace.events_dir), features, plan)


def test_registered_version_loads_and_predicts_the_same(result, workspace: Workspace,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    registry = ModelRegistry(workspace=workspace, model_name="fraud-acme")
    version = register_training(registry, result)
    assert registry.role("candidate") == version.version
    folder = registry.download(version.version, dst=tmp_path / "dl")
    loaded = TrainedModel.load(next(p for p in [folder, folder / "model"]
                                    if (p / "manifest.json").exists()))
    x = np.zeros((3, len(loaded.feature_names)))
    assert np.array_equal(loaded.predict_proba(x), result.model.predict_proba(x))


def test_training_plots_are_self_contained_svg(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from xml.etree import ElementTree

    from fraudops.models._plots import write_training_plots

    plots = write_training_plots(tmp_path, result.validation_y, result.validation_probability,
                                 result.model.importances)
    assert set(plots) == {"precision_recall", "reliability", "importances"}
    for path in plots.values():
        text = path.read_text()
        ElementTree.fromstring(text)  # well-formed
        assert "http" not in text.replace("http://www.w3.org/2000/svg", "")
