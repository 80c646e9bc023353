"""The model registry: training runs, registered versions and their roles, on MLflow.

A training run logs the model's artifact directory (written by ``TrainedModel.save``) under
``model/``, its parameters and metrics, the feature set name, definition hash, data fingerprint
and feature list, optional plots under ``plots/``, and ``fraudops/run.json`` with the feature list
and a SHA-256 per artifact file (so a download is verified byte for byte). Registering the run
creates a new version of a registered model whose source is the run's ``model/`` folder. Roles
are MLflow aliases: ``live``, ``candidate``, ``shadow``, ``canary``, ``retired``.

Everything returned is a frozen dataclass (``_registry_types``); no MLflow type reaches upper layers.

Errors::

    FraudopsError
    └── RegistryError             unknown model, version or role; a bad artifact folder
        └── RegistryUnavailable   the SQLite file, database or tracking server cannot be reached
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fraudops.core import Workspace, WorkspaceError, validate_name

from ._registry_record import (
    check_artifact_dir,
    check_plots,
    checksums,
    flat_metrics,
    param_value,
    verify_download,
    write_run_record,
)
from ._registry_store import (
    RegistryError,
    RegistryUnavailable,
    is_database_uri,
    make_client,
    mlflow_errors,
    redact,
    workspace_artifact_root,
    workspace_tracking_uri,
)
from ._registry_types import (
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_NAME,
    ROLES,
    ArtifactFile,
    RunInfo,
    VersionDetail,
    VersionInfo,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_NAME",
    "ROLES",
    "ArtifactFile",
    "ModelRegistry",
    "RegistryError",
    "RegistryUnavailable",
    "RunInfo",
    "VersionDetail",
    "VersionInfo",
]

MODEL_PATH: Final = "model"
PLOTS_PATH: Final = "plots"
RUN_RECORD: Final = "fraudops/run.json"
_TAG = "fraudops."
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch call


class ModelRegistry:
    """Training runs and model versions with roles, kept in MLflow.

    Parameters
    ----------
    tracking_uri : str, optional
        An MLflow tracking URI: ``sqlite:///...``, ``postgresql+psycopg://...`` or
        ``http://host:5000``. Default: the workspace's ``sqlite:///<ws>/mlflow/mlflow.db``.
    workspace : Workspace, optional
        Gives the default store and the artifact root ``<ws>/mlflow/artifacts``.
    model_name : str
        The registered model that methods act on unless they are given another.
    artifact_root : Path or str, optional
        Where a new experiment stores artifacts (a folder or URI). Needed for a database URI
        without a workspace; a tracking server decides for itself when it is None.
    experiment : str
        The MLflow experiment that training runs are logged to.

    Examples
    --------
    >>> import tempfile
    >>> ws = Workspace.init(Path(tempfile.mkdtemp()) / "acme")
    >>> registry = ModelRegistry(workspace=ws)
    >>> registry.tracking_uri.endswith("acme/mlflow/mlflow.db")
    True
    """

    def __init__(self, tracking_uri: str | None = None, *, workspace: Workspace | None = None,
                 model_name: str = DEFAULT_MODEL_NAME, artifact_root: Path | str | None = None,
                 experiment: str = DEFAULT_EXPERIMENT) -> None:
        self._tracking_uri = tracking_uri
        self.workspace = workspace
        self.model_name = model_name
        self.artifact_root = artifact_root
        self.experiment = experiment

    # -- where -------------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        if self._tracking_uri is not None:
            return self._tracking_uri
        if self.workspace is None:
            raise RegistryError("ModelRegistry needs a tracking_uri or a workspace; got neither")
        return workspace_tracking_uri(self.workspace)

    @cached_property
    def _client(self) -> MlflowClient:
        return make_client(self.tracking_uri)

    def _artifact_location(self) -> str | None:
        if self.artifact_root is not None:
            root = str(self.artifact_root)
            return root if "://" in root else Path(root).absolute().as_uri()
        if not is_database_uri(self.tracking_uri):
            return None  # a tracking server stores artifacts where it is configured to
        if self.workspace is not None:
            return workspace_artifact_root(self.workspace).as_uri()
        raise RegistryError(
            f"registry store {redact(self.tracking_uri)}: pass artifact_root (a folder or"
            " URI for run artifacts) or a workspace; MLflow would otherwise write to ./mlruns")

    def _experiment_id(self) -> str:
        with mlflow_errors(f"experiment {self.experiment!r}"):
            found = self._client.get_experiment_by_name(self.experiment)
            if found is not None:
                return str(found.experiment_id)
            return str(self._client.create_experiment(
                self.experiment, artifact_location=self._artifact_location()))

    # -- writing -----------------------------------------------------------------------------
    def log_training_run(
        self, artifact_dir: Path | str, *, name: str, params: Mapping[str, object],
        metrics: Mapping[str, object], feature_set: str, definition_hash: str,
        data_fingerprint: str, features: Sequence[str], parent_version: int | None = None,
        tags: Mapping[str, str] | None = None, plots: Mapping[str, Path] | None = None,
    ) -> RunInfo:
        """Log one training run: the artifact folder, params, metrics, lineage and plots.

        ``metrics`` may be nested as ``TrainedModel.metrics`` is: ``{"validation": {"roc_auc":
        0.91}}`` is logged as ``validation.roc_auc``; text leaves (dates) are not metrics. Inputs
        are checked before the run starts. The run ends FINISHED; if anything fails half-way it
        ends FAILED and the error is raised.
        """
        folder = check_artifact_dir(artifact_dir)
        flat = flat_metrics(metrics)
        files = checksums(folder)
        plot_files = check_plots(plots or {})
        all_tags = {
            f"{_TAG}feature_set": feature_set, f"{_TAG}definition_hash": definition_hash,
            f"{_TAG}data_fingerprint": data_fingerprint, f"{_TAG}n_features": str(len(features)),
            **({f"{_TAG}parent_version": str(parent_version)} if parent_version else {}),
            **dict(tags or {}),
        }
        client = self._client
        with mlflow_errors(f"training run {name!r}"):
            run = client.create_run(self._experiment_id(), run_name=name)
        run_id = run.info.run_id
        try:
            self._log_values(run_id, params, flat, all_tags)
            with mlflow_errors(f"artifacts of run {name!r}"), \
                    tempfile.TemporaryDirectory(prefix="fraudops-run-") as scratch:
                client.log_artifacts(run_id, str(folder), artifact_path=MODEL_PATH)
                record = Path(scratch) / "fraudops"
                record.mkdir()
                write_run_record(record / "run.json", features=features, files=files)
                client.log_artifacts(run_id, str(record), artifact_path="fraudops")
                if plot_files:
                    plots_dir = Path(scratch) / PLOTS_PATH
                    plots_dir.mkdir()
                    for key, path in plot_files.items():
                        shutil.copyfile(path, plots_dir / f"{key}{path.suffix}")
                    client.log_artifacts(run_id, str(plots_dir), artifact_path=PLOTS_PATH)
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        with mlflow_errors(f"training run {name!r}"):
            client.set_terminated(run_id)
        return RunInfo(run_id=run_id, experiment_id=run.info.experiment_id, name=name,
                       artifact_uri=str(run.info.artifact_uri),
                       model_uri=f"{run.info.artifact_uri}/{MODEL_PATH}",
                       started=_time(run.info.start_time))

    def _log_values(self, run_id: str, params: Mapping[str, object], metrics: Mapping[str, float],
                    tags: Mapping[str, str]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(datetime.now(UTC).timestamp() * 1000)
        metric_rows = [Metric(key, value, now, 0) for key, value in metrics.items()]
        param_rows = [Param(key, param_value(value)) for key, value in params.items()]
        tag_rows = [RunTag(key, str(value)) for key, value in tags.items()]
        with mlflow_errors("logging params, metrics and tags"):
            for start in range(0, max(len(metric_rows), len(param_rows), len(tag_rows)), _BATCH):
                self._client.log_batch(run_id, metrics=metric_rows[start:start + _BATCH],
                                       params=param_rows[start:start + _BATCH],
                                       tags=tag_rows[start:start + _BATCH])

    def register(self, run_id: str, *, model_name: str | None = None) -> VersionInfo:
        """Create a new version of the model whose source is the run's ``model/`` folder."""
        name = _check_name(model_name or self.model_name)
        client = self._client
        with mlflow_errors(f"run {run_id!r}"):
            run = client.get_run(run_id)
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            with mlflow_errors(f"model {name!r}"):
                client.create_registered_model(
                    name, tags={f"{_TAG}created_by": "fraudops"},
                    description="Registered by fraudops; roles are aliases.")
        with mlflow_errors(f"model {name!r}"):
            created = client.create_model_version(
                name, source=f"{run.info.artifact_uri}/{MODEL_PATH}", run_id=run_id)
        return self._version_info(created, run, aliases=())

    def set_role(self, version: int, role: str, *, model_name: str | None = None) -> int | None:
        """Give ``role`` to ``version`` (moving it from any other version); return the old holder.

        Making a version ``live`` records the previously live version on it (its lineage).
        """
        name = _check_name(model_name or self.model_name)
        _check_role(role)
        self._model_version(name, version)  # a clear error for an unknown model or version
        previous = self.role(role, model_name=name)
        with mlflow_errors(f"model {name!r} version {version}"):
            if role == "live" and previous is not None and previous != version:
                self._client.set_model_version_tag(name, str(version), f"{_TAG}previous_live",
                                                   str(previous))
            self._client.set_registered_model_alias(name, role, str(version))
        return previous

    def set_version_tags(self, version: int, tags: Mapping[str, str], *,
                         model_name: str | None = None) -> None:
        """Record facts about a version (a gate verdict, its report) as version tags."""
        name = _check_name(model_name or self.model_name)
        self._model_version(name, version)
        with mlflow_errors(f"model {name!r} version {version}"):
            for key, value in tags.items():
                self._client.set_model_version_tag(name, str(version), key, str(value))

    def clear_role(self, role: str, *, model_name: str | None = None) -> int | None:
        """Take ``role`` away from whichever version holds it; return that version, if any."""
        name = _check_name(model_name or self.model_name)
        _check_role(role)
        previous = self.role(role, model_name=name)
        if previous is not None:
            with mlflow_errors(f"model {name!r}"):
                self._client.delete_registered_model_alias(name, role)
        return previous

    # -- reading -----------------------------------------------------------------------------
    def role(self, role: str, *, model_name: str | None = None) -> int | None:
        """The version that holds ``role``, or None when no version does."""
        name = _check_name(model_name or self.model_name)
        _check_role(role)
        aliases = self._aliases(name)
        return aliases.get(role)

    def versions(self, *, model_name: str | None = None) -> list[VersionInfo]:
        """Every version of the model, newest first, with roles, metrics and lineage."""
        name = _check_name(model_name or self.model_name)
        aliases = self._aliases(name)
        with mlflow_errors(f"model {name!r}"):
            found = self._client.search_model_versions(f"name = '{name}'")
        return sorted((self._version_info(mv, self._run(mv.run_id), aliases=_roles_of(mv, aliases))
                       for mv in found), key=lambda info: -info.version)

    def describe(self, version: int, *, model_name: str | None = None) -> VersionDetail:
        """One version in full: summary, feature list and artifact files with checksums."""
        name = _check_name(model_name or self.model_name)
        mv = self._model_version(name, version)
        run = self._run(mv.run_id)
        info = self._version_info(mv, run, aliases=_roles_of(mv, self._aliases(name)))
        record = self._run_record(mv.run_id)
        recorded = record.get("files", {})
        files = tuple(ArtifactFile(path, int(entry["size_bytes"]), entry["sha256"])
                      for path, entry in sorted(recorded.items()))
        if not files and mv.run_id:
            files = tuple(self._listed_files(mv.run_id))
        return VersionDetail(info=info, features=tuple(record.get("features", ())), files=files)

    def download(self, version: int, *, model_name: str | None = None,
                 dst: Path | str | None = None) -> Path:
        """Download the version's artifact folder and verify every recorded file's SHA-256.

        Returns the local folder holding the files (``TrainedModel.load`` reads it). ``dst``
        defaults to a new temporary folder, which the caller owns.
        """
        name = _check_name(model_name or self.model_name)
        mv = self._model_version(name, version)
        target = Path(dst) if dst is not None else Path(
            tempfile.mkdtemp(prefix=f"fraudops-{name}-v{version}-"))
        target.mkdir(parents=True, exist_ok=True)
        from mlflow.artifacts import download_artifacts

        with mlflow_errors(f"download of model {name!r} version {version} from {mv.source}"):
            local = Path(download_artifacts(artifact_uri=str(mv.source), dst_path=str(target),
                                            tracking_uri=self.tracking_uri))
        verify_download(local, self._run_record(mv.run_id).get("files", {}),
                what=f"model {name!r} version {version}")
        return local

    # -- helpers -----------------------------------------------------------------------------
    def _aliases(self, name: str) -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"model {name!r}: {exc.message}") from exc
            raise RegistryError(
                f"no registered model {name!r} in {redact(self.tracking_uri)}; models:"
                f" {self.model_names() or 'none'} (train and register one first)") from None
        return {alias: int(version) for alias, version in (model.aliases or {}).items()}

    def model_names(self) -> list[str]:
        """Every registered model (one per tenant: ``fraud-<tenant>``), sorted."""
        with mlflow_errors("listing models"):
            return sorted(str(m.name) for m in self._client.search_registered_models())

    def _model_version(self, name: str, version: int) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RegistryError(f"version = {version!r}: must be a positive integer")
        try:
            return self._client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"model {name!r} version {version}: {exc.message}") from exc
        self._aliases(name)  # unknown model: say so
        known = ", ".join(str(v.version) for v in self.versions(model_name=name)[::-1]) or "none"
        raise RegistryError(f"model {name!r} has no version {version}; versions: {known}")

    def _run(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        with mlflow_errors(f"run {run_id!r}"):
            return self._client.get_run(run_id)

    def _run_record(self, run_id: str | None) -> dict[str, Any]:
        if not run_id:
            return {}
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="fraudops-record-") as scratch:
            try:
                path = self._client.download_artifacts(run_id, RUN_RECORD, scratch)
            except (MlflowException, OSError):
                return {}  # a version registered outside fraudops: no record to verify against
            loaded: dict[str, Any] = json.loads(Path(path).read_text())
            return loaded

    def _listed_files(self, run_id: str, path: str = MODEL_PATH) -> list[ArtifactFile]:
        found: list[ArtifactFile] = []
        with mlflow_errors(f"artifacts of run {run_id!r}"):
            for entry in self._client.list_artifacts(run_id, path):
                if entry.is_dir:
                    found.extend(self._listed_files(run_id, entry.path))
                else:
                    found.append(ArtifactFile(entry.path.removeprefix(f"{MODEL_PATH}/"),
                                              int(entry.file_size or 0), None))
        return found

    def _version_info(self, mv: ModelVersion, run: Run | None,
                      aliases: Sequence[str]) -> VersionInfo:
        run_tags = dict(run.data.tags) if run else {}
        tags = {k: v for k, v in run_tags.items() if not k.startswith("mlflow.")}
        return VersionInfo(
            model_name=str(mv.name), version=int(mv.version), roles=tuple(aliases),
            created=_time(mv.creation_timestamp), run_id=mv.run_id or None, source=str(mv.source),
            feature_set=tags.get(f"{_TAG}feature_set"),
            definition_hash=tags.get(f"{_TAG}definition_hash"),
            data_fingerprint=tags.get(f"{_TAG}data_fingerprint"),
            n_features=_int_or_none(tags.get(f"{_TAG}n_features")),
            parent_version=_int_or_none(tags.get(f"{_TAG}parent_version")),
            previous_live=_int_or_none((mv.tags or {}).get(f"{_TAG}previous_live")),
            metrics=dict(run.data.metrics) if run else {},
            params=dict(run.data.params) if run else {}, tags=tags,
            version_tags=dict(mv.tags or {}))


def _roles_of(mv: ModelVersion, aliases: Mapping[str, int]) -> tuple[str, ...]:
    version = int(mv.version)
    held = [alias for alias, v in aliases.items() if v == version]
    return tuple(sorted(held, key=lambda a: (ROLES.index(a) if a in ROLES else len(ROLES), a)))


def _check_name(name: str) -> str:
    try:
        return validate_name(name, field="model name")
    except WorkspaceError as exc:
        raise RegistryError(str(exc)) from None


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise RegistryError(f"role {role!r}: must be one of {', '.join(ROLES)}")


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _time(millis: int | None) -> datetime:
    return datetime.fromtimestamp((millis or 0) / 1000, tz=UTC)
