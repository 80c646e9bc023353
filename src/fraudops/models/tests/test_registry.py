"""The model registry on the embedded SQLite store and on a real PostgreSQL-backed MLflow store.

Every behaviour test runs on both back ends; PostgreSQL tests skip only if 127.0.0.1:5432 is down.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from fraudops.core import FraudopsError, Workspace
from fraudops.models import (
    ROLES,
    ModelRegistry,
    RegistryError,
    RegistryUnavailable,
    RunInfo,
)
from fraudops.models._registry_store import make_client

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


# -- stores ------------------------------------------------------------------------------------
def make_template(folder: Path) -> Path:
    """An MLflow SQLite store with its tables created, to copy into each test's workspace.

    Creating the tables (alembic migrations) takes about a second and a half; a copy takes none.
    """
    path = folder / "mlflow.db"
    make_client(f"sqlite:///{path}")
    return path


def install_template(template: Path, workspace: Workspace) -> None:
    (workspace.root / "mlflow").mkdir(exist_ok=True)
    shutil.copyfile(template, workspace.root / "mlflow" / "mlflow.db")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A scratch database ``fraudops_registry_test_<random>``, dropped at the end of the session."""
    import sqlalchemy
    from sqlalchemy.exc import OperationalError

    name = f"fraudops_registry_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT",
                                     connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable ({str(exc.orig).strip()})")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as con:  # FORCE: MLflow keeps its pooled connections open
            con.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    """A registry with a model name of its own, on a fresh workspace (SQLite) or a scratch DB."""
    model = f"m{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        ws = Workspace.init(tmp_path / "ws")
        install_template(request.getfixturevalue("sqlite_template"), ws)
        return ModelRegistry(workspace=ws, model_name=model)
    uri = request.getfixturevalue("postgres_uri")
    return ModelRegistry(uri, model_name=model, artifact_root=tmp_path / "artifacts",
                         experiment=f"exp-{model}")


# -- inputs ------------------------------------------------------------------------------------
def write_artifact(folder: Path, seed: int = 0) -> Path:
    """A small artifact folder like ``TrainedModel.save`` writes, with a nested binary file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.txt").write_text(f"tree\nversion=v4\nseed={seed}\n")
    (folder / "manifest.json").write_text('{"format_version": 1, "features": ["a", "b"]}')
    (folder / "extra").mkdir(exist_ok=True)
    (folder / "extra" / "weights.bin").write_bytes(bytes((seed + i) % 256 for i in range(4096)))
    return folder


def log(registry: ModelRegistry, folder: Path, **overrides: object) -> RunInfo:
    values: dict[str, object] = dict(
        name="lgbm-2024-05", params={"num_leaves": 31, "learning_rate": 0.05, "window": [7, 28]},
        metrics={"roc_auc": 0.91, "average_precision": 0.62, "card_precision_at_100": 0.28},
        feature_set="card_risk_v3", definition_hash="d3adb33f" * 8, data_fingerprint="f1" * 16,
        features=["amount_cents_sum_24h_by_card", "terminal_risk_7d"])
    values.update(overrides)
    return registry.log_training_run(folder, **values)  # type: ignore[arg-type]


def _local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


# -- behaviour ---------------------------------------------------------------------------------
def test_run_records_params_metrics_tags_and_features(registry: ModelRegistry,
                                                      tmp_path: Path) -> None:
    run = log(registry, write_artifact(tmp_path / "a"), parent_version=4, tags={"team": "risk"})
    info = registry.register(run.run_id)
    assert (info.run_id, info.version, info.roles) == (run.run_id, 1, ())
    assert info.metrics == {"roc_auc": 0.91, "average_precision": 0.62,
                            "card_precision_at_100": 0.28}
    assert info.params == {"num_leaves": "31", "learning_rate": "0.05", "window": "[7, 28]"}
    assert (info.feature_set, info.definition_hash, info.data_fingerprint, info.n_features) == (
        "card_risk_v3", "d3adb33f" * 8, "f1" * 16, 2)
    assert (info.parent_version, info.tags["team"]) == (4, "risk")
    assert info.source == f"{run.artifact_uri}/model"


def test_nested_metrics_are_flattened_and_text_is_left_out(registry: ModelRegistry,
                                                           tmp_path: Path) -> None:
    """The shape of ``TrainedModel.metrics``: sections of numbers with a few dates."""
    metrics = {"validation": {"roc_auc": 0.88, "rows": 2087, "start": "2024-03-04T00:00:56"},
               "ece": float("nan")}
    run = log(registry, write_artifact(tmp_path / "a"), metrics=metrics)
    logged = registry.register(run.run_id).metrics
    assert sorted(logged) == ["ece", "validation.roc_auc", "validation.rows"]
    assert (logged["validation.roc_auc"], logged["validation.rows"]) == (0.88, 2087.0)


def test_register_creates_consecutive_versions_newest_first(registry: ModelRegistry,
                                                            tmp_path: Path) -> None:
    runs = [log(registry, write_artifact(tmp_path / str(i), seed=i)) for i in range(3)]
    for run in runs:
        registry.register(run.run_id)
    listed = registry.versions()
    assert [v.version for v in listed] == [3, 2, 1]
    assert [v.run_id for v in listed] == [r.run_id for r in reversed(runs)]


def test_roles_are_aliases_held_by_one_version(registry: ModelRegistry, tmp_path: Path) -> None:
    for i in range(2):
        registry.register(log(registry, write_artifact(tmp_path / str(i), seed=i)).run_id)
    assert registry.set_role(1, "live") is None
    assert registry.set_role(1, "shadow") is None
    assert registry.set_role(2, "candidate") is None
    assert registry.role("live") == 1
    assert registry.role("canary") is None
    assert {v.version: v.roles for v in registry.versions()} == {1: ("live", "shadow"),
                                                                 2: ("candidate",)}
    assert registry.set_role(2, "live") == 1  # moving a role returns the version that held it
    assert {v.version: v.roles for v in registry.versions()} == {1: ("shadow",),
                                                                 2: ("live", "candidate")}


def test_making_a_version_live_records_the_previous_live_one(registry: ModelRegistry,
                                                             tmp_path: Path) -> None:
    for i in range(3):
        registry.register(log(registry, write_artifact(tmp_path / str(i), seed=i)).run_id)
    registry.set_role(1, "live")
    registry.set_role(3, "live")
    lineage = {v.version: v.previous_live for v in registry.versions()}
    assert lineage == {1: None, 2: None, 3: 1}


def test_clear_role_frees_the_alias(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register(log(registry, write_artifact(tmp_path / "a")).run_id)
    registry.set_role(1, "canary")
    assert registry.clear_role("canary") == 1
    assert registry.role("canary") is None
    assert registry.clear_role("canary") is None


def test_download_round_trip_is_byte_identical(registry: ModelRegistry, tmp_path: Path) -> None:
    source = write_artifact(tmp_path / "a", seed=7)
    registry.register(log(registry, source).run_id)
    local = registry.download(1, dst=tmp_path / "dl")
    original = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    downloaded = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert downloaded == original
    for relative in original:
        assert (local / relative).read_bytes() == (source / relative).read_bytes()


def test_download_refuses_a_changed_artifact(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register(log(registry, write_artifact(tmp_path / "a")).run_id)
    stored = _local(registry.versions()[0].source) / "model.txt"
    stored.write_text("tampered")
    with pytest.raises(RegistryError, match=r"'model.txt' does not match the SHA-256"):
        registry.download(1, dst=tmp_path / "dl")


def test_describe_lists_files_with_checksums_features_and_plots(registry: ModelRegistry,
                                                                tmp_path: Path) -> None:
    plot = tmp_path / "roc.svg"
    plot.write_text("<svg/>")
    run = log(registry, write_artifact(tmp_path / "a"), plots={"roc_curve": plot})
    registry.register(run.run_id)
    detail = registry.describe(1)
    assert [f.path for f in detail.files] == ["extra/weights.bin", "manifest.json", "model.txt"]
    assert detail.files[0].size_bytes == 4096
    assert all(f.sha256 is not None and len(f.sha256) == 64 for f in detail.files)
    assert detail.features == ("amount_cents_sum_24h_by_card", "terminal_risk_7d")
    assert (_local(run.artifact_uri) / "plots" / "roc_curve.svg").read_text() == "<svg/>"


def test_versions_are_kept_per_model(registry: ModelRegistry, tmp_path: Path) -> None:
    run = log(registry, write_artifact(tmp_path / "a"))
    registry.register(run.run_id)
    other = f"{registry.model_name}-tenant-b"
    assert registry.register(run.run_id, model_name=other).version == 1
    registry.set_role(1, "live", model_name=other)
    assert registry.role("live") is None
    assert registry.role("live", model_name=other) == 1


# -- errors ------------------------------------------------------------------------------------
def test_unknown_model_is_a_clear_error(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match=r"no registered model 'nope'.*train and register"):
        registry.versions(model_name="nope")


def test_unknown_version_lists_the_versions(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register(log(registry, write_artifact(tmp_path / "a")).run_id)
    with pytest.raises(RegistryError, match=r"has no version 9; versions: 1"):
        registry.set_role(9, "live")
    with pytest.raises(RegistryError, match=r"has no version 9"):
        registry.download(9)


def test_unknown_role_lists_the_roles(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register(log(registry, write_artifact(tmp_path / "a")).run_id)
    with pytest.raises(RegistryError, match=r"role 'champion': must be one of live, candidate"):
        registry.set_role(1, "champion")


def test_unknown_run_cannot_be_registered(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match=r"run '0123abc'"):
        registry.register("0123abc")


def test_bad_inputs_are_refused_before_a_run_starts(registry: ModelRegistry,
                                                    tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a folder"):
        log(registry, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="holds no files"):
        log(registry, tmp_path / "empty")
    with pytest.raises(RegistryError, match=r"metric 'test.roc_auc' = \[0.9\]: must be a number"):
        log(registry, write_artifact(tmp_path / "a"), metrics={"test": {"roc_auc": [0.9]}})
    with pytest.raises(RegistryError, match=r"plot 'roc' .* not a file"):
        log(registry, write_artifact(tmp_path / "a"), plots={"roc": tmp_path / "nope.png"})
    assert registry._client.search_runs([registry._experiment_id()]) == []  # nothing half-logged


def test_registry_errors_are_fraudops_errors() -> None:
    assert issubclass(RegistryUnavailable, RegistryError)
    assert issubclass(RegistryError, FraudopsError)
    assert ROLES == ("live", "candidate", "shadow", "canary", "retired")


# -- where the store lives ----------------------------------------------------------------------
def test_default_store_and_artifacts_live_in_the_workspace(
        tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws")
    install_template(sqlite_template, ws)
    monkeypatch.chdir(tmp_path)
    registry = ModelRegistry(workspace=ws)
    run = log(registry, write_artifact(tmp_path / "a"))
    assert registry.tracking_uri == f"sqlite:///{ws.root}/mlflow/mlflow.db"
    assert _local(run.artifact_uri).is_relative_to(ws.root / "mlflow" / "artifacts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "ws"]  # no ./mlruns


def test_a_database_uri_needs_an_artifact_root() -> None:
    registry = ModelRegistry("postgresql+psycopg://postgres@127.0.0.1:5432/x")
    with pytest.raises(RegistryError, match="pass artifact_root"):
        registry._artifact_location()


def test_a_tracking_server_keeps_its_own_artifact_store(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    assert ModelRegistry("http://127.0.0.1:5000", workspace=ws)._artifact_location() is None


def test_no_uri_and_no_workspace_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="needs a tracking_uri or a workspace"):
        ModelRegistry().versions()


def test_unreachable_database_fails_fast_without_its_password(tmp_path: Path) -> None:
    registry = ModelRegistry("postgresql+psycopg://fraud:s3cret@127.0.0.1:1/mlflow",
                             artifact_root=tmp_path)
    with pytest.raises(RegistryUnavailable, match=r"fraud:\*\*\*@127.0.0.1:1/mlflow is unreachable") \
            as caught:
        registry.versions()
    assert "s3cret" not in str(caught.value)


def test_unreachable_tracking_server_fails_fast() -> None:
    with pytest.raises(RegistryUnavailable, match=r"server http://127.0.0.1:1 is unreachable"):
        ModelRegistry("http://127.0.0.1:1").role("live")
