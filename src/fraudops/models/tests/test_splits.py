from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from fraudops.models._dataset import Dataset
from fraudops.models._splits import (
    inner_validation,
    model_selection_folds,
    prequential_folds,
    remove_known_compromised,
    time_split,
)


def _dataset(times: list[str], cards: list[str], y: list[int], tenants: list[str] | None = None
             ) -> Dataset:
    n = len(times)
    return Dataset(X=np.zeros((n, 0)), feature_names=(), y=np.array(y, dtype=np.int8),
                   event_id=np.array([str(i) for i in range(n)], dtype=object),
                   tenant=np.array(tenants or ["t"] * n, dtype=object),
                   event_time=np.array(times, dtype="datetime64[us]"),
                   card_id=np.array(cards, dtype=object), amount=np.ones(n))


def _random_dataset(seed: int, n: int = 3000, n_days: int = 40, n_cards: int = 60) -> Dataset:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2018-07-01T00:00:00", "us")
    seconds = np.sort(rng.integers(0, n_days * 86400, n))
    times = (start + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    return Dataset(X=np.zeros((n, 0)), feature_names=(), y=(rng.random(n) < 0.08).astype(np.int8),
                   event_id=np.array([str(i) for i in range(n)], dtype=object),
                   tenant=np.array(["t"] * n, dtype=object), event_time=times,
                   card_id=np.array([f"c{i}" for i in rng.integers(0, n_cards, n)], dtype=object),
                   amount=np.ones(n))


EMPTY = _dataset([], [], [])


def test_time_split_windows_match_the_handbook_definition() -> None:
    """Train [d0, d0+7), delay the next 7 days, test days d0+14 … d0+20 (get_train_test_set)."""
    ds = _random_dataset(0)
    split = time_split(ds, train_start=date(2018, 7, 5))
    d0 = datetime(2018, 7, 5)
    for i, t in enumerate(ds.event_time.astype(datetime)):
        day = (t - d0).days if t >= d0 else -1
        assert split.train[i] == (d0 <= t < d0 + timedelta(days=7))
        assert split.delay[i] == (7 <= day < 14)
        assert split.test[i] == (14 <= day <= 20)
    assert split.test_start == date(2018, 7, 19)
    assert split.test_end == date(2018, 7, 26)


def test_time_split_rejects_a_time_of_day() -> None:
    with pytest.raises(ValueError, match=r"'train_start'.*midnight"):
        time_split(EMPTY, train_start=datetime(2018, 7, 25, 12))


def test_time_split_rejects_zero_train_days() -> None:
    with pytest.raises(ValueError, match="'train_days' and 'test_days' must be >= 1"):
        time_split(EMPTY, train_start="2018-07-25", train_days=0)


def test_prequential_fold_i_moves_back_by_i_test_periods() -> None:
    folds = prequential_folds(EMPTY, train_start="2018-08-15", n_folds=3, test_days=5)
    assert [f.train_start for f in folds] == [date(2018, 8, 15), date(2018, 8, 10), date(2018, 8, 5)]


def test_model_selection_folds_reproduce_the_handbook_chapter_5_tables() -> None:
    folds = model_selection_folds(EMPTY, start_date_training=date(2018, 7, 25))
    test = [(f.train_start.isoformat(), f.test_start.isoformat()) for f in folds.test]
    validation = [(f.train_start.isoformat(), f.test_start.isoformat()) for f in folds.validation]
    assert test == [("2018-08-15", "2018-08-29"), ("2018-08-08", "2018-08-22"),
                    ("2018-08-01", "2018-08-15"), ("2018-07-25", "2018-08-08")]
    assert validation == [("2018-07-11", "2018-07-25"), ("2018-07-04", "2018-07-18"),
                          ("2018-06-27", "2018-07-11"), ("2018-06-20", "2018-07-04")]


def _handbook_test_rows(ds: Dataset, d0: date, delta_train: int = 7, delta_delay: int = 7,
                        delta_test: int = 7) -> list[int]:
    """get_train_test_set's test set, line by line with plain Python."""
    day_of = [(t.date() - d0).days for t in ds.event_time.astype(datetime)]
    rows = range(len(ds))
    known = {ds.card_id[i] for i in rows if 0 <= day_of[i] < delta_train and ds.y[i] == 1}
    kept = []
    for day in range(delta_test):
        known |= {ds.card_id[i] for i in rows if day_of[i] == delta_train + day - 1 and ds.y[i] == 1}
        kept += [i for i in rows if day_of[i] == delta_train + delta_delay + day
                 and ds.card_id[i] not in known]
    return sorted(kept)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_known_compromised_removal_matches_the_handbook_loop(seed: int) -> None:
    ds = _random_dataset(seed)
    split = time_split(ds, train_start="2018-07-03")
    keep = remove_known_compromised(ds, split)
    assert np.flatnonzero(keep).tolist() == _handbook_test_rows(ds, date(2018, 7, 3))
    assert keep.sum() < split.test.sum()


def test_known_compromised_on_a_hand_built_example() -> None:
    """d0 = Jul 1 (train 1-2, delay 3, test 4-5; train_days=2, delay_days=1, test_days=2).

    A: fraud in training → dropped on both test days. B: fraud on Jul 2 (d0+train+0−1, the
    last training day) → already known. C: fraud on Jul 3 (delay day, d0+train+1−1) → known
    only from test day 1 (Jul 5): its Jul 4 transaction stays. D: fraud on Jul 4 itself (a
    test day) → not known on Jul 5 (only days up to d0+train+i−1 are added). E: never fraud.
    """
    rows = [("2018-07-01T10:00", "A", 1), ("2018-07-02T10:00", "B", 1),
            ("2018-07-03T10:00", "C", 1), ("2018-07-04T01:00", "A", 0),
            ("2018-07-04T02:00", "B", 0), ("2018-07-04T03:00", "C", 0),
            ("2018-07-04T04:00", "D", 1), ("2018-07-04T05:00", "E", 0),
            ("2018-07-05T01:00", "A", 0), ("2018-07-05T02:00", "C", 0),
            ("2018-07-05T03:00", "D", 0), ("2018-07-05T04:00", "E", 0)]
    ds = _dataset([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    split = time_split(ds, train_start="2018-07-01", train_days=2, delay_days=1, test_days=2)
    keep = remove_known_compromised(ds, split)
    kept = [(rows[i][0][:10], rows[i][1]) for i in np.flatnonzero(keep)]
    assert kept == [("2018-07-04", "C"), ("2018-07-04", "D"), ("2018-07-04", "E"),
                    ("2018-07-05", "D"), ("2018-07-05", "E")]


def test_known_cards_are_per_tenant() -> None:
    ds = _dataset(["2018-07-01T10:00", "2018-07-15T10:00", "2018-07-15T11:00"], ["X", "X", "X"],
                  [1, 0, 0], tenants=["a", "a", "b"])
    keep = remove_known_compromised(ds, time_split(ds, train_start="2018-07-01"))
    assert keep.tolist() == [False, False, True]


def test_inner_validation_takes_the_last_days_with_a_gap() -> None:
    ds = _random_dataset(3, n_days=20)
    train = time_split(ds, train_start="2018-07-01", train_days=10).train
    fit, valid = inner_validation(ds, train, valid_days=3, gap_days=1)
    day = ds.event_time.astype("datetime64[D]")
    assert (day[valid] >= np.datetime64("2018-07-08")).all()
    assert valid.sum() > 0
    assert (day[valid] <= np.datetime64("2018-07-10")).all()
    assert (day[fit] <= np.datetime64("2018-07-06")).all()
    assert fit.sum() > 0
    assert not (fit & valid).any()
    assert not ((fit | valid) & ~train).any()
    assert not (train & (day == np.datetime64("2018-07-07")) & (fit | valid)).any()


def test_inner_validation_needs_enough_days() -> None:
    ds = _random_dataset(4, n_days=5)
    with pytest.raises(ValueError, match="too few for valid_days=5"):
        inner_validation(ds, np.ones(len(ds), bool), valid_days=5)
