"""Time splits with a label-delay gap, prequential folds and known-compromised card removal.

These follow the Fraud Detection Handbook's protocol (``get_train_test_set`` and
``prequentialSplit``; see the handbook baselines): train on ``train_days`` days, skip
``delay_days`` days whose labels are not yet known when the model is trained, and test on the
``test_days`` days after that. Days are UTC calendar days of ``event_time``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from ._dataset import Dataset, factorize


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """Train, delay and test windows over a :class:`Dataset`, as boolean row masks.

    Attributes
    ----------
    train_start : date
        First training day (the handbook's ``d0``).
    train_days, delay_days, test_days : int
        Lengths of the three consecutive windows, in days.
    train, delay, test : ndarray of bool, shape (n,)
        Rows whose event day falls in ``[d0, d0+train)``, ``[d0+train, d0+train+delay)`` and
        ``[d0+train+delay, d0+train+delay+test)``. ``test`` is the raw window: the handbook's
        test set also drops known-compromised cards, see :func:`remove_known_compromised`.
    """

    train_start: date
    train_days: int
    delay_days: int
    test_days: int
    train: np.ndarray
    delay: np.ndarray
    test: np.ndarray

    @property
    def delay_start(self) -> date:
        """First day of the label-delay gap."""
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        """First test (assessment) day."""
        return self.delay_start + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        """The day after the last test day."""
        return self.test_start + timedelta(days=self.test_days)


@dataclass(frozen=True)
class ModelSelectionFolds:
    """Prequential folds for choosing hyper-parameters, and the later folds to test them on.

    ``validation`` fold 0 assesses on the training week of the oldest ``test`` fold, so the
    hyper-parameters are chosen on data the test folds never assess on.
    """

    validation: tuple[TimeSplit, ...]
    test: tuple[TimeSplit, ...]


def _day(value: date | datetime | str, name: str, caller: str) -> date:
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"The {name!r} parameter of {caller} must be a date ('YYYY-MM-DD'); "
                             f"got {value!r}") from None
    if isinstance(value, datetime):
        if value.utcoffset() not in (None, timedelta(0)) or value.time() != datetime.min.time():
            raise ValueError(f"The {name!r} parameter of {caller} must be a date or a midnight UTC "
                             f"datetime (windows are whole UTC days); got {value.isoformat()}")
        return value.date()
    if isinstance(value, date):
        return value
    raise ValueError(f"The {name!r} parameter of {caller} must be a date; got {value!r}")


def _positive_days(caller: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"The {name!r} parameter of {caller} must be an integer >= 0; "
                             f"got {value!r}")
    if values.get("train_days", 1) == 0 or values.get("test_days", 1) == 0:
        raise ValueError(f"{caller}: 'train_days' and 'test_days' must be >= 1; got {values}")


def event_days(dataset: Dataset) -> np.ndarray:
    """The UTC calendar day (``datetime64[D]``) of every row."""
    return dataset.event_time.astype("datetime64[D]")


def time_split(dataset: Dataset, *, train_start: date | datetime | str, train_days: int = 7,
               delay_days: int = 7, test_days: int = 7) -> TimeSplit:
    """Split by event day into train, label-delay gap and test, as the handbook does.

    The delay gap models the time fraud labels take to arrive: a model trained at the end of
    the training window is used for ``delay_days`` days before its test window starts, and it
    could not have learnt from that gap's labels. With the defaults, the test days are
    ``d0 + 14 … d0 + 20`` (the handbook's ``get_train_test_set``).

    Examples
    --------
    >>> from datetime import date
    >>> import numpy as np
    >>> from fraudops.models._dataset import Dataset
    >>> times = np.array(["2018-07-25T10:00", "2018-08-01T00:00", "2018-08-08T23:59"],
    ...                  dtype="datetime64[us]")
    >>> ds = Dataset(X=np.zeros((3, 0)), feature_names=(), y=np.zeros(3, np.int8),
    ...              event_id=np.array(["a", "b", "c"], object), tenant=np.array(["t"] * 3, object),
    ...              event_time=times, card_id=np.array(["x"] * 3, object), amount=np.ones(3))
    >>> split = time_split(ds, train_start=date(2018, 7, 25))
    >>> split.train.tolist(), split.delay.tolist(), split.test.tolist()
    ([True, False, False], [False, True, False], [False, False, True])
    >>> split.test_start
    datetime.date(2018, 8, 8)
    """
    caller = "time_split"
    d0 = _day(train_start, "train_start", caller)
    _positive_days(caller, train_days=train_days, delay_days=delay_days, test_days=test_days)
    offset = (event_days(dataset) - np.datetime64(d0, "D")).astype(np.int64)
    train = (offset >= 0) & (offset < train_days)
    delay = (offset >= train_days) & (offset < train_days + delay_days)
    test = (offset >= train_days + delay_days) & (offset < train_days + delay_days + test_days)
    return TimeSplit(train_start=d0, train_days=int(train_days), delay_days=int(delay_days),
                     test_days=int(test_days), train=train, delay=delay, test=test)


def prequential_folds(dataset: Dataset, *, train_start: date | datetime | str, n_folds: int = 4,
                      train_days: int = 7, delay_days: int = 7,
                      test_days: int = 7) -> list[TimeSplit]:
    """``n_folds`` time splits, fold ``i`` shifted back by ``i * test_days`` days.

    Fold 0 trains from ``train_start``; each older fold moves its whole window back by one
    assessment period (the handbook's ``prequentialSplit``), so the folds assess consecutive,
    non-overlapping periods and a mean over folds shows how stable a model is over time.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 1:
        raise ValueError(f"The 'n_folds' parameter of prequential_folds must be an integer >= 1; "
                         f"got {n_folds!r}")
    d0 = _day(train_start, "train_start", "prequential_folds")
    return [time_split(dataset, train_start=d0 - timedelta(days=i * test_days),
                       train_days=train_days, delay_days=delay_days, test_days=test_days)
            for i in range(n_folds)]


def model_selection_folds(dataset: Dataset, *, start_date_training: date | datetime | str,
                          n_folds: int = 4, train_days: int = 7, delay_days: int = 7,
                          test_days: int = 7, validation_days: int = 7) -> ModelSelectionFolds:
    """Validation and test folds anchored as in the handbook's Chapter 5 model selection.

    ``start_date_training`` is the handbook's anchor: the training start of the *oldest* test
    fold. Test fold 0 trains from ``start_date_training + (n_folds − 1) · test_days``;
    validation fold 0 trains from ``start_date_training − (delay_days + validation_days)``, so
    its assessment week is the oldest test fold's training week. With the anchor 2018-07-25
    and the defaults, test folds train from 2018-08-15, 08-08, 08-01, 07-25 and validation
    folds from 2018-07-11, 07-04, 06-27, 06-20.
    """
    d0 = _day(start_date_training, "start_date_training", "model_selection_folds")
    _positive_days("model_selection_folds", test_days=test_days, validation_days=validation_days)
    test = prequential_folds(dataset, train_start=d0 + timedelta(days=(n_folds - 1) * test_days),
                             n_folds=n_folds, train_days=train_days, delay_days=delay_days,
                             test_days=test_days)
    validation = prequential_folds(
        dataset, train_start=d0 - timedelta(days=delay_days + validation_days), n_folds=n_folds,
        train_days=train_days, delay_days=delay_days, test_days=validation_days)
    return ModelSelectionFolds(validation=tuple(validation), test=tuple(test))


def remove_known_compromised(dataset: Dataset, split: TimeSplit) -> np.ndarray:
    """The test mask without the transactions of cards already known to be compromised.

    A card confirmed as compromised is blocked in practice, so scoring its later transactions
    would inflate the metrics. Exactly as the handbook's ``get_train_test_set``: the known set
    starts as every card with a fraud in the training window; for test day ``i`` (0-based),
    the frauds of day ``d0 + train_days + i − 1`` are added first, then that test day's
    transactions of known cards are dropped. Cards are ``(tenant, card_id)``.

    Notes
    -----
    Frauds are read from ``dataset.y``. The handbook uses the true labels (``TX_FRAUD``):
    build the dataset with ``labels_as_of=None`` to reproduce it; with labels as known at some
    instant, only the frauds labelled by then make a card known.
    """
    if split.train.shape != (len(dataset),):
        raise ValueError(f"the split's masks have {split.train.shape[0]} rows, the dataset "
                         f"{len(dataset)}: was the split made on another dataset?")
    cards = factorize(dataset.tenant, dataset.card_id)
    known = np.zeros(int(cards.max()) + 1 if len(cards) else 0, dtype=bool)
    fraud = dataset.y == 1
    known[cards[split.train & fraud]] = True
    offset = (event_days(dataset) - np.datetime64(split.train_start, "D")).astype(np.int64)
    keep = np.zeros(len(dataset), dtype=bool)
    first_test = split.train_days + split.delay_days
    for i in range(split.test_days):
        known[cards[fraud & (offset == split.train_days + i - 1)]] = True
        today = split.test & (offset == first_test + i)
        keep[today] = ~known[cards[today]]
    return keep


def inner_validation(dataset: Dataset, train: np.ndarray, *, valid_days: int,
                     gap_days: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split a training mask into a fit part and its last ``valid_days`` days, for early stopping.

    The validation days are the last ``valid_days`` calendar days of the training period
    (ending at the last day that has a training row); with ``gap_days`` the days just before
    them are left out of both parts, like the label-delay gap between train and test.

    Returns
    -------
    fit, valid : ndarray of bool
        Masks over ``dataset``, both subsets of ``train``.
    """
    train = np.asarray(train)
    if train.dtype != bool or train.shape != (len(dataset),):
        raise ValueError(f"The 'train' parameter of inner_validation must be a boolean mask of "
                         f"shape ({len(dataset)},); got dtype {train.dtype}, shape {train.shape}")
    _positive_days("inner_validation", valid_days=valid_days, gap_days=gap_days)
    if valid_days < 1:
        raise ValueError(f"The 'valid_days' parameter of inner_validation must be >= 1; got {valid_days}")
    if not train.any():
        raise ValueError("inner_validation: the 'train' mask selects no rows")
    days = event_days(dataset)
    first, last = days[train].min(), days[train].max()
    valid_start = last - np.timedelta64(valid_days - 1, "D")
    fit_end = valid_start - np.timedelta64(gap_days, "D")  # exclusive
    if fit_end <= first:
        raise ValueError(f"inner_validation: the training period {first} … {last} has "
                         f"{int((last - first).astype(int)) + 1} day(s), too few for "
                         f"valid_days={valid_days} and gap_days={gap_days} and a fit part")
    return train & (days < fit_end), train & (days >= valid_start)
