"""One training run as a fraud team does it: the latest mature weeks in, a registered-ready model out.

Time, relative to ``as_of`` (the moment of training; default: the newest stored event)::

    |---------- train_days ----------|-- validation_days --|---- label_delay ----|
                                                        mature_end            as_of

Rows younger than the label delay are left out: their labels are not known yet. Labels are
read *as known at* ``as_of``. The validation window (the latest mature days) serves early
stopping, calibration, the action policy and the reported metrics — never a random split.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from fraudops.core import InputError, Progress, null_progress
from fraudops.events import EventStore
from fraudops.features import FeatureSet, OfflineEngine, backfill_window

from ._artifact import TrainedModel
from ._dataset import Dataset, build_dataset
from ._metrics import Metrics, error_analysis, evaluate
from ._plots import write_training_plots
from ._policy import ActionPolicy, choose_policy
from ._registry import ModelRegistry, RegistryError, RegistryUnavailable, VersionInfo
from ._trainer import FraudTrainer


@dataclass(frozen=True)
class TrainingPlan:
    """What to train on and under which constraints; the defaults suit card fraud."""

    model: str = "lightgbm"
    train_days: int = 28
    validation_days: int = 7
    label_delay_days: int = 7
    as_of: datetime | None = None
    tenant: str | None = None
    feature_selection: bool = True
    review_capacity_per_day: float = 100.0
    #: the REVIEW threshold is chosen for this share of the capacity: volume on later weeks
    #: varies, and the release gate refuses a model that overruns the capacity by 10 %
    review_headroom: float = 0.9
    prevent_precision: float | None = 0.9
    random_state: int = 0


@dataclass(frozen=True)
class TrainingResult:
    """A trained model with what it was trained on and how it did on its validation window."""

    model: TrainedModel
    metrics: Metrics
    policy: ActionPolicy
    plan: TrainingPlan
    labels_as_of: datetime
    train_window: tuple[datetime, datetime]
    validation_window: tuple[datetime, datetime]
    train_rows: int
    validation_rows: int
    train_frauds: int
    validation_frauds: int
    seconds: float
    validation: Dataset
    validation_probability: np.ndarray

    @property
    def validation_y(self) -> np.ndarray:
        return self.validation.y


def train_model(store: EventStore, feature_set: FeatureSet, plan: TrainingPlan = TrainingPlan(),
                *, features: pa.Table | None = None,
                progress: Progress = null_progress) -> TrainingResult:
    """Backfill the features, assemble the mature windows, train, calibrate, choose the policy.

    ``features`` is an existing backfill of ``feature_set`` over the store (checked by its
    definition hash), to avoid computing it again.
    """
    started = time.perf_counter()
    if not 0 < plan.review_headroom <= 1:
        raise ValueError("The 'review_headroom' parameter of TrainingPlan must be in (0, 1];"
                         f" got {plan.review_headroom!r}")
    for name in ("train_days", "validation_days", "label_delay_days"):
        if getattr(plan, name) < (0 if name == "label_delay_days" else 1):
            raise ValueError(f"The {name!r} parameter of TrainingPlan must be a positive number of"
                             f" days; got {getattr(plan, name)!r}")
    tenants = None if plan.tenant is None else [plan.tenant]
    span = store.event_span(plan.tenant)
    if span is None:
        scope = "the workspace" if plan.tenant is None else f"tenant {plan.tenant!r}"
        raise InputError(f"{scope} holds no transactions to train on; ingest or simulate some")
    oldest, newest = span
    as_of = plan.as_of or newest
    mature_end = as_of - timedelta(days=plan.label_delay_days)
    valid_start = mature_end - timedelta(days=plan.validation_days)
    train_start = valid_start - timedelta(days=plan.train_days)
    if oldest > train_start:
        raise InputError(
            f"the training window needs history from {train_start:%Y-%m-%d %H:%M} but the"
            f" {'store' if plan.tenant is None else f'tenant {plan.tenant!r}'} starts at"
            f" {oldest:%Y-%m-%d %H:%M}: shorten train_days ({plan.train_days}),"
            f" validation_days ({plan.validation_days}) or label_delay_days"
            f" ({plan.label_delay_days}), or train later")
    progress("features", 0, 3)
    if features is None:
        table = OfflineEngine(store).backfill(feature_set, tenants=tenants, start=train_start,
                                              end=mature_end, progress=progress)
    else:
        table = backfill_window(features, feature_set, tenants=tenants, start=train_start,
                                end=mature_end)
    progress("dataset", 1, 3)
    data = build_dataset(store, table, labels_as_of=as_of, tenants=tenants)
    valid_from = np.datetime64(valid_start.astimezone(UTC).replace(tzinfo=None), "us")
    in_valid = data.event_time >= valid_from
    train, valid = data.subset(np.flatnonzero(~in_valid)), data.subset(np.flatnonzero(in_valid))
    _check_windows(train, valid, plan)
    progress("train", 2, 3)
    trainer = FraudTrainer(model=plan.model, feature_selection=plan.feature_selection,
                           random_state=plan.random_state)
    trainer.fit(train, valid, progress=progress)
    kept = trainer.feature_names_
    draft = trainer.to_model(feature_set_name=feature_set.name,
                             definition_hash=feature_set.definition_hash())
    probability = draft.predict_proba(valid.select(kept).X)
    policy = choose_policy(valid.y, probability, valid.event_time,
                           review_capacity_per_day=plan.review_capacity_per_day
                           * plan.review_headroom,
                           prevent_precision=plan.prevent_precision)
    # the policy records the team's real capacity (what the gate holds it to) and the headroom
    policy = replace(policy, constraints={
        **policy.constraints, "review_capacity_per_day": plan.review_capacity_per_day,
        "review_headroom": plan.review_headroom})
    metrics = evaluate(valid, probability, threshold=policy.review_threshold)
    model = trainer.to_model(feature_set_name=feature_set.name,
                             definition_hash=feature_set.definition_hash(), policy=policy,
                             metrics=metrics.to_dict())
    # the period the model learned from and when its labels were read (its lineage)
    model = replace(model, params={
        **model.params, "train_window": [train_start.isoformat(), valid_start.isoformat()],
        "labels_as_of": as_of.isoformat()})
    progress("done", 3, 3)
    return TrainingResult(model, metrics, policy, plan, as_of, (train_start, valid_start),
                          (valid_start, mature_end), len(train), len(valid),
                          int(train.y.sum()), int(valid.y.sum()),
                          round(time.perf_counter() - started, 2), valid, probability)


def _check_windows(train: Dataset, valid: Dataset, plan: TrainingPlan) -> None:
    for name, part in (("training", train), ("validation", valid)):
        if len(part) == 0:
            raise InputError(f"the {name} window holds no transactions: the store has too"
                             f" little mature history for train_days={plan.train_days},"
                             f" validation_days={plan.validation_days},"
                             f" label_delay_days={plan.label_delay_days}")
        if int(part.y.sum()) == 0:
            raise InputError(f"the {name} window holds no known fraud (labels as known at"
                             " training time): nothing to learn from or calibrate on; widen the"
                             " window or wait for labels")


def register_training(registry: ModelRegistry, result: TrainingResult, *,
                      role: str | None = "candidate", model_name: str | None = None
                      ) -> VersionInfo:
    """Log the run (params, metrics, features, lineage, plots, the top false positives and
    negatives, the artifact) and register a version.

    ``role`` is given to the new version (``candidate`` by default; ``None`` for none). The
    version that is ``live`` when the run is logged is recorded as its parent.
    """
    name = model_name or registry.model_name
    try:
        parent = registry.role("live", model_name=name)
    except RegistryUnavailable:
        raise
    except RegistryError:  # the first version of this model
        parent = None
    with tempfile.TemporaryDirectory(prefix="fraudops-model-") as folder:
        artifact = result.model.save(Path(folder) / "model")
        plots = write_training_plots(Path(folder) / "plots", result.validation_y,
                                     result.validation_probability, result.model.importances)
        threshold = result.policy.review_threshold
        mistakes = error_analysis(result.validation.select(result.model.feature_names),
                                  result.validation_probability,
                                  threshold=0.5 if threshold is None else threshold)
        plots["error_analysis"] = Path(folder) / "plots" / "error_analysis.csv"
        pcsv.write_csv(mistakes, plots["error_analysis"])
        params = {**{f"plan.{k}": v for k, v in asdict(result.plan).items()},
                  **{f"model.{k}": v for k, v in result.model.params.items()},
                  "labels_as_of": result.labels_as_of.isoformat(),
                  "train_rows": result.train_rows, "validation_rows": result.validation_rows,
                  "train_frauds": result.train_frauds,
                  "validation_frauds": result.validation_frauds}
        run = registry.log_training_run(
            artifact, name=f"train-{name}", params=params,
            metrics={"validation": result.metrics.flat(), "seconds": result.seconds},
            feature_set=result.model.feature_set_name,
            definition_hash=result.model.definition_hash,
            data_fingerprint=result.model.data_fingerprint,
            features=result.model.feature_names,
            parent_version=parent, plots=plots)
    version = registry.register(run.run_id, model_name=name)
    if role is not None:
        registry.set_role(version.version, role, model_name=name)
    return version
