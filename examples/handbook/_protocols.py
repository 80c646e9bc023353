"""The handbook's evaluation protocols over one :class:`~fraudops.models.Dataset`.

Helpers for ``reproduce.py``: the Chapter 3 split and the Chapter 5 validation and test folds
(BASELINES.md), the rows each model may train on, labels as known when a model is trained,
and the three metrics the handbook publishes.

Every fold has three consecutive windows: training (ending at ``split.delay_start``), the
7-day label delay (never used), and the assessed week, from which the cards already known to
be compromised are removed (:func:`fraudops.models.remove_known_compromised`, on the true
labels, as the handbook does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fraudops.events import EventStore
from fraudops.models import (
    Dataset,
    TimeSplit,
    build_dataset,
    evaluate,
    model_selection_folds,
    remove_known_compromised,
    time_split,
)

#: Chapter 3: training starts 2018-07-25; Chapter 5 anchors its folds on the same day.
ANCHOR = date(2018, 7, 25)
CH3 = "ch3"
CH5_VALIDATION = "ch5-validation"
CH5_TEST = "ch5-test"
METRICS = ("auc", "ap", "cp100")

Scorer = Callable[[Dataset], npt.NDArray[np.float64]]
#: Fit on a training dataset, return a function that scores a dataset.
Fitter = Callable[[Dataset], Scorer]


@dataclass(frozen=True)
class Fold:
    """One assessed week of a protocol: ``protocol`` is ``ch3``, ``ch5-validation`` or ``ch5-test``."""

    protocol: str
    index: int
    split: TimeSplit
    #: rows assessed: the split's test week without the known-compromised cards
    assessed: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.protocol}[{self.index}] test {self.split.test_start}"

    def labels_known_at(self) -> datetime:
        """The instant the model is used from: the start of the assessed week (UTC)."""
        return datetime.combine(self.split.test_start, datetime.min.time(), tzinfo=UTC)

    def training_rows(self, dataset: Dataset, weeks: int) -> np.ndarray:
        """Rows of the ``weeks`` weeks that end where the label delay starts."""
        days = dataset.event_time.astype("datetime64[D]")
        end = np.datetime64(self.split.delay_start, "D")
        start = end - np.timedelta64(7 * weeks, "D")
        mask: np.ndarray = (days >= start) & (days < end)
        return mask


def handbook_folds(dataset: Dataset) -> list[Fold]:
    """The Chapter 3 split, then the Chapter 5 validation folds, then its test folds."""
    ch3 = time_split(dataset, train_start=ANCHOR)
    ch5 = model_selection_folds(dataset, start_date_training=ANCHOR)
    splits = [(CH3, 0, ch3)]
    splits += [(CH5_VALIDATION, i, s) for i, s in enumerate(ch5.validation)]
    splits += [(CH5_TEST, i, s) for i, s in enumerate(ch5.test)]
    return [Fold(p, i, s, s.test & remove_known_compromised(dataset, s)) for p, i, s in splits]


class LabelsAsOf:
    """Training labels as known at a fold's start, from the event store's label events.

    The handbook's protocol assumes that the labels of the training period are known when
    the model is used; here they are read *as of* the first assessed day, which is all a model
    put in service then could have learnt from. ``differences`` counts the training labels
    that differ from the final ones (0 when every label arrives within the 7-day delay).
    """

    def __init__(self, store: EventStore, keys: pa.Table) -> None:
        self.store = store
        self.keys = keys.select(["tenant", "event_id", "event_time"])
        self.differences: dict[str, int] = {}

    def apply(self, dataset: Dataset, rows: np.ndarray, fold: Fold) -> Dataset:
        """``dataset.subset(rows)`` with its labels as known at ``fold.labels_known_at()``."""
        train = dataset.subset(rows)
        first, last = train.event_time.min(), train.event_time.max()
        known = build_dataset(
            self.store, self.keys, feature_names=(), labels_as_of=fold.labels_known_at(),
            start=_aware(first), end=_aware(last) + timedelta(microseconds=1))
        if not np.array_equal(known.event_id, train.event_id):
            raise RuntimeError(f"{fold.label}: labelled rows do not match the training rows")
        self.differences[fold.label] = int((known.y != train.y).sum())
        return Dataset(X=train.X, feature_names=train.feature_names, y=known.y,
                       event_id=train.event_id, tenant=train.tenant, event_time=train.event_time,
                       card_id=train.card_id, amount=train.amount)


def _aware(value: np.datetime64) -> datetime:
    micros = int(value.astype("datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def assess(dataset: Dataset, fold: Fold, score: npt.NDArray[np.float64]) -> dict[str, float]:
    """AUC ROC, average precision and Card Precision@100 of ``score`` on the assessed rows."""
    overall = evaluate(dataset.subset(fold.assessed), score).overall
    return {"auc": overall.roc_auc, "ap": overall.average_precision,
            "cp100": overall.card_precision_at_k}


@dataclass(frozen=True)
class FoldResult:
    """A model's score and metrics on one fold, and the seconds its fit took."""

    fold: Fold
    event_id: np.ndarray
    score: npt.NDArray[np.float64]
    metrics: dict[str, float]
    fit_seconds: float
    train_rows: int


def run_fold(dataset: Dataset, fold: Fold, train: Dataset, fit: Fitter) -> FoldResult:
    """Fit on ``train``, score the fold's assessed rows and measure them."""
    started = time.perf_counter()
    scorer = fit(train)
    seconds = time.perf_counter() - started
    assessed = dataset.subset(fold.assessed)
    score = np.asarray(scorer(assessed), dtype=np.float64)
    return FoldResult(fold=fold, event_id=assessed.event_id, score=score,
                      metrics=assess(dataset, fold, score), fit_seconds=seconds,
                      train_rows=len(train))


def summarise(results: Sequence[FoldResult]) -> dict[str, tuple[float, float]]:
    """Per metric, the mean and the standard deviation over folds (numpy's, ddof 0)."""
    out = {}
    for name in METRICS:
        values = np.array([r.metrics[name] for r in results], dtype=np.float64)
        out[name] = (float(values.mean()), float(values.std()) if len(values) > 1 else math.nan)
    return out
