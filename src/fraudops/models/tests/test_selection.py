"""select_features: noise out, signal in, reasons recorded, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.models._dataset import Dataset
from fraudops.models._selection import select_features

from .test_trainer import START, synthetic_dataset


@pytest.fixture(scope="module")
def split() -> tuple[Dataset, Dataset]:
    data = synthetic_dataset(20_000, days=28, noise=5, seed=1)
    x = np.column_stack([data.X, np.full(len(data), 3.0)])  # a constant column
    data = Dataset(X=x, feature_names=(*data.feature_names, "constant"), y=data.y, event_id=data.event_id,
                   tenant=data.tenant, event_time=data.event_time, card_id=data.card_id, amount=data.amount)
    cut = START + np.timedelta64(21, "D")
    return data.subset(data.event_time < cut), data.subset(data.event_time >= cut)


def test_selection_keeps_the_signal_and_drops_pure_noise(split):
    selection = select_features(*split, num_threads=1)
    assert set(selection.kept) == {"signal_a", "signal_b", "signal_step"}
    assert all(name.startswith("noise_") or name == "constant" for name in selection.dropped)
    assert len(selection.kept) + len(selection.dropped) == len(split[0].feature_names)


def test_every_dropped_feature_has_a_reason(split):
    selection = select_features(*split, num_threads=1)
    assert selection.dropped["constant"] == "constant in the training window"
    assert all("rank" in reason for name, reason in selection.dropped.items() if name.startswith("noise_"))


def test_selection_is_deterministic(split):
    assert select_features(*split, num_threads=1) == select_features(*split, num_threads=1)


def test_down_sampling_still_keeps_every_signal(split):
    selection = select_features(*split, num_threads=1, max_rows=4_000)
    assert {"signal_a", "signal_b"} <= set(selection.kept)


def test_bad_tolerance_is_refused(split):
    with pytest.raises(ValueError, match=r"'tolerance' parameter of select_features must be in \[0, 1\)"):
        select_features(*split, tolerance=-0.1)
