"""TrainedModel: safe files only, exact round trip, fast single-row path, refusal on tampering."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fraudops.core import FraudopsError
from fraudops.models._artifact import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactVersionError,
    FeatureMismatchError,
    TrainedModel,
)
from fraudops.models._trainer import FraudTrainer

from .test_trainer import FAST, synthetic_dataset


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def model(request) -> TrainedModel:
    data = synthetic_dataset(12_000, days=21, seed=4)
    trainer = FraudTrainer(model=request.param, **FAST).fit(data)
    policy = {"review_threshold": 0.2, "prevent_threshold": 0.8, "constraints": "test"}
    return trainer.to_model(feature_set_name="handbook", definition_hash="abc123", policy=policy)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    x = synthetic_dataset(500, days=2, seed=9).X
    x[::7, 0] = np.nan  # missing values take the model's missing path
    return x


def test_save_load_round_trip_gives_identical_predictions(model, rows, tmp_path):
    loaded = TrainedModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    assert loaded.feature_names == model.feature_names
    assert loaded.calibrator == model.calibrator
    assert loaded.policy == model.policy
    assert (loaded.definition_hash, loaded.feature_set_name) == ("abc123", "handbook")
    assert loaded.data_fingerprint == model.data_fingerprint != ""


def test_artifact_holds_only_json_and_model_text(model, tmp_path):
    """No pickle: every file is UTF-8 text, JSON or LightGBM's text format."""
    path = model.save(tmp_path / "m")
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(["manifest.json", "model.txt" if model.kind == "lightgbm" else "model.json"])
    for file in path.iterdir():
        text = file.read_bytes().decode("utf-8")
        if file.suffix == ".json":
            json.loads(text)
        else:
            assert text.startswith("tree\nversion=")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["kind"] == model.kind
    assert manifest["created_at"].endswith("+00:00")


def test_predict_one_matches_predict_proba(model, rows):
    expected = model.predict_proba(rows)
    got = [model.predict_one(list(row)) for row in rows]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_predict_one_treats_none_as_missing(model, rows):
    row = list(rows[0])
    row[0] = math.nan
    with_none = [None, *row[1:]]
    assert model.predict_one(with_none) == model.predict_one(row)


def test_vector_orders_a_feature_dict(model, rows):
    features = dict(zip(reversed(model.feature_names), reversed(list(rows[1])), strict=True))
    assert model.vector(features) == list(rows[1])
    with pytest.raises(FeatureMismatchError, match="features missing for the model"):
        model.vector({})


def test_tampered_model_file_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m")
    file = next(p for p in path.iterdir() if p.name.startswith("model."))
    file.write_bytes(file.read_bytes().replace(b"0", b"1", 1))
    with pytest.raises(ArtifactIntegrityError, match=r"sha256 .* does not match the manifest"):
        TrainedModel.load(path)


def test_missing_model_file_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m")
    next(p for p in path.iterdir() if p.name.startswith("model.")).unlink()
    with pytest.raises(ArtifactIntegrityError, match="listed in the manifest is missing"):
        TrainedModel.load(path)


def test_unknown_format_version_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactVersionError, match="format_version 99 is not supported"):
        TrainedModel.load(path)


def test_directory_without_manifest_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match=r"not a model artifact: no manifest\.json"):
        TrainedModel.load(tmp_path)


def test_feature_list_mismatch_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m")
    with pytest.raises(FeatureMismatchError, match=r"missing \['other'\]"):
        TrainedModel.load(path, feature_names=[*model.feature_names[:-1], "other"])
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["feature_names"] = list(reversed(manifest["feature_names"]))
    (path / "manifest.json").write_text(json.dumps(manifest))
    if model.kind == "lightgbm":  # model.txt carries its own feature names
        with pytest.raises(FeatureMismatchError, match="different order"):
            TrainedModel.load(path)


def test_errors_are_fraudops_errors():
    assert issubclass(ArtifactIntegrityError, FraudopsError)
    assert issubclass(ArtifactVersionError, ArtifactError)


def test_save_refuses_a_non_empty_directory(model, tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(ArtifactError, match="not an empty directory"):
        model.save(tmp_path)


def test_wrong_row_width_is_refused(model):
    with pytest.raises(ValueError, match="x must have"):
        model.predict_one([1.0])
    with pytest.raises(ValueError, match=r"X must have shape \(n, \d+\)"):
        model.predict_proba(np.zeros((2, 1)))
