"""The models of ``reproduce_gate.py``: when each one is trained, on what, and how.

A :class:`Timeline` places everything relative to the gate moment ``as_of``::

    |-- train (4 wk) --|-- delay --|-- gate window --|-- label delay --|
                   train_end   gate_start        mature_end          as_of

A model trained at ``gate_start`` learns from the 4 weeks ending one label delay earlier, with
the labels as known at ``gate_start`` (every handbook label has arrived by then), so its
training never overlaps the gate window. Every model is a ``fraudops.models`` artifact whose
feature definitions are those of one merged feature set (``HANDBOOK`` + ``DEFAULT``): the gate
reads both models' features from one workspace feature set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from fraudops.events import EventStore
from fraudops.features import FeatureSet
from fraudops.models import Dataset, FraudTrainer, TrainedModel, build_dataset, choose_policy

DAY = timedelta(days=1)
TRAIN_WEEKS = 4
#: The policy every model is given: the review team's capacity and the blocking precision.
REVIEW_CAPACITY_PER_DAY = 100.0
PREVENT_PRECISION = 0.9


@dataclass(frozen=True)
class Timeline:
    """The gate's moments (defaults: ``GateConfig``'s 7-day window and 7-day label delay)."""

    as_of: datetime
    window_days: int = 7
    label_delay_days: int = 7

    @property
    def mature_end(self) -> datetime:
        return self.as_of - self.label_delay_days * DAY

    @property
    def gate_start(self) -> datetime:
        return self.mature_end - self.window_days * DAY

    @property
    def train_end(self) -> datetime:
        """End of the training data of a model put in service at ``gate_start``."""
        return self.gate_start - self.label_delay_days * DAY


@dataclass(frozen=True)
class TrainingSpec:
    """One model to train: its kind, features, training period and whether labels are noise."""

    kind: str                     # "lightgbm" or "logistic"
    feature_names: tuple[str, ...]
    train_end: datetime           # exclusive; labels are read as of train_end + label delay
    label_delay_days: int = 7
    shuffle_labels: bool = False  # permute the labels over the whole training set
    seed: int = 0

    @property
    def train_start(self) -> datetime:
        return self.train_end - TRAIN_WEEKS * 7 * DAY

    @property
    def labels_as_of(self) -> datetime:
        return self.train_end + self.label_delay_days * DAY


def merged_feature_set(parts: Sequence[FeatureSet], name: str = "handbook_gate") -> FeatureSet:
    """One feature set holding every feature of ``parts`` (their names must not collide)."""
    merged = FeatureSet(name, groups=[g for p in parts for g in p.groups],
                        transforms=[t for p in parts for t in p.transforms])
    names = [n for p in parts for n in p.names]
    if len(set(names)) != len(names):
        raise ValueError(f"feature names collide across {[p.name for p in parts]}")
    return merged


def training_data(store: EventStore, table: pa.Table, spec: TrainingSpec) -> Dataset:
    """The spec's 4 weeks of features, labels as known at ``spec.labels_as_of`` (or shuffled)."""
    data = build_dataset(store, table, feature_names=spec.feature_names,
                         labels_as_of=spec.labels_as_of, start=spec.train_start,
                         end=spec.train_end)
    if not spec.shuffle_labels:
        return data
    y = np.random.default_rng(spec.seed).permutation(data.y)
    return Dataset(X=data.X, feature_names=data.feature_names, y=y, event_id=data.event_id,
                   tenant=data.tenant, event_time=data.event_time, card_id=data.card_id,
                   amount=data.amount)


def train(store: EventStore, table: pa.Table, features: FeatureSet, spec: TrainingSpec,
          threads: int = 1) -> tuple[TrainedModel, dict[str, float]]:
    """Fit one model (last 7 days calibrate and stop boosting), choose its action policy on
    those 7 days, and return the artifact with a few training figures."""
    data = training_data(store, table, spec)
    trainer = FraudTrainer(model=spec.kind, validation_days=7, calibration="sigmoid",
                           num_threads=threads, random_state=spec.seed)
    trainer.fit(data)
    draft = trainer.to_model(feature_set_name=features.name,
                             definition_hash=features.definition_hash())
    start, _ = trainer.validation_window_
    valid = data.subset(data.event_time >= start)
    probability = draft.predict_proba(valid.select(draft.feature_names).X)
    policy = choose_policy(valid.y, probability, valid.event_time,
                           review_capacity_per_day=REVIEW_CAPACITY_PER_DAY,
                           prevent_precision=PREVENT_PRECISION)
    model = trainer.to_model(feature_set_name=features.name,
                             definition_hash=features.definition_hash(), policy=policy)
    figures = {"rows": float(len(data)), "frauds": float(data.y.sum()),
               "valid_ap": float(trainer.validation_metrics_["average_precision"])}
    return model, figures
