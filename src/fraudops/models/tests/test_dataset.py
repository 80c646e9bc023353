from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate
from fraudops.features import Aggregation, Entity, FeatureGroup, FeatureSet, Op, days
from fraudops.models._dataset import Dataset, build_dataset, factorize

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    """Four transactions of tenant 'acme' and one of 'beta', with label events over time."""
    store = EventStore(tmp_path / "store")
    store.append_transactions(pa.table({
        "event_id": ["a", "b", "c", "d", "e"],
        "event_time": pa.array([_at(0), _at(1), _at(2), _at(3), _at(0)], pa.timestamp("us", "UTC")),
        "tenant": ["acme", "acme", "acme", "acme", "beta"],
        "amount_cents": [1050, 200, 99, 10000, 5],
        "card_id": ["c1", None, "c1", None, "c9"],
        "customer_id": ["u1", "u2", "u1", None, "u9"],
    }), batch_id="t1")
    store.append_labels(pa.table({
        "event_id": ["a", "b", "b", "c", "c", "e"],
        "tenant": ["acme", "acme", "acme", "acme", "acme", "beta"],
        # a: fraud known at 10h; b: fraud at 5h, cleared at 20h; c: fraud and genuine at the
        # same instant (fraud wins); e: fraud known only at 100h
        "is_fraud": [True, True, False, True, False, True],
        "label_time": pa.array([_at(10), _at(5), _at(20), _at(7), _at(7), _at(100)],
                               pa.timestamp("us", "UTC")),
    }), batch_id="l1")
    return store


def _features(values: dict[str, list[float | None]] | None = None) -> pa.Table:
    """A backfill-shaped table, deliberately not in (tenant, event_time, event_id) order."""
    values = values or {"f1": [5.0, None, 1.0, 2.0, 3.0]}
    return pa.table({
        "tenant": ["beta", "acme", "acme", "acme", "acme"],
        "event_id": ["e", "d", "c", "b", "a"],
        "event_time": pa.array([_at(0), _at(3), _at(2), _at(1), _at(0)], pa.timestamp("us", "UTC")),
        **{name: pa.array(v, pa.float64()) for name, v in values.items()},
    })


def _labels(ds: Dataset) -> dict[str, int]:
    return dict(zip(ds.event_id.tolist(), ds.y.tolist(), strict=True))


def test_rows_are_ordered_by_tenant_time_and_id(store: EventStore) -> None:
    ds = build_dataset(store, _features())
    assert ds.event_id.tolist() == ["a", "b", "c", "d", "e"]
    assert ds.tenant.tolist() == ["acme"] * 4 + ["beta"]
    assert ds.event_time.dtype == np.dtype("datetime64[us]")
    assert ds.event_time[1] == np.datetime64("2024-03-01T01:00:00", "us")


def test_features_follow_their_rows_and_null_is_nan(store: EventStore) -> None:
    ds = build_dataset(store, _features())
    assert ds.feature_names == ("f1",)
    np.testing.assert_array_equal(ds.X[:, 0], [3.0, 2.0, 1.0, np.nan, 5.0])


def test_current_labels_take_the_latest_and_fraud_wins_ties(store: EventStore) -> None:
    ds = build_dataset(store, _features())
    assert _labels(ds) == {"a": 1, "b": 0, "c": 1, "d": 0, "e": 1}
    assert ds.y.dtype == np.int8


def test_label_from_the_future_is_invisible(store: EventStore) -> None:
    """As of 8h: a's label (10h) and e's (100h) are not known yet; b is still fraud."""
    ds = build_dataset(store, _features(), labels_as_of=_at(8))
    assert _labels(ds) == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0}


def test_label_at_exactly_as_of_is_known(store: EventStore) -> None:
    assert _labels(build_dataset(store, _features(), labels_as_of=_at(10)))["a"] == 1


def test_labels_as_of_sees_a_later_correction(store: EventStore) -> None:
    assert _labels(build_dataset(store, _features(), labels_as_of=_at(20)))["b"] == 0


def test_card_falls_back_to_customer_then_to_the_event(store: EventStore) -> None:
    ds = build_dataset(store, _features())
    assert ds.card_id.tolist() == ["c1", "u2", "c1", "event:d", "c9"]


def test_amount_is_in_major_units(store: EventStore) -> None:
    np.testing.assert_array_equal(build_dataset(store, _features()).amount,
                                  [10.5, 2.0, 0.99, 100.0, 0.05])


def test_tenants_start_and_end_filter_rows(store: EventStore) -> None:
    ds = build_dataset(store, _features(), tenants=["acme"], start=_at(1), end=_at(3))
    assert ds.event_id.tolist() == ["b", "c"]


def test_feature_names_choose_and_order_columns(store: EventStore) -> None:
    table = _features({"f1": [1.0] * 5, "f2": [2.0] * 5})
    ds = build_dataset(store, table, feature_names=["f2", "f1"])
    assert ds.feature_names == ("f2", "f1")
    assert ds.X[0].tolist() == [2.0, 1.0]


def test_unknown_feature_name_is_an_error(store: EventStore) -> None:
    with pytest.raises(ValueError, match=r"'feature_names'.*\['nope'\].*\['f1'\]"):
        build_dataset(store, _features(), feature_names=["nope"])


def test_naive_as_of_is_an_error(store: EventStore) -> None:
    with pytest.raises(ValueError, match=r"'labels_as_of'.*timezone-aware"):
        build_dataset(store, _features(), labels_as_of=datetime(2024, 3, 1))


def test_feature_row_without_transaction_is_an_error(store: EventStore) -> None:
    table = pa.table({"tenant": ["acme"], "event_id": ["zz"],
                      "event_time": pa.array([T0], pa.timestamp("us", "UTC")), "f1": [1.0]})
    with pytest.raises(ValueError, match="no transaction in the store"):
        build_dataset(store, table)


def test_a_feature_set_is_backfilled(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "sim")
    simulation = simulate(SimulationConfig(n_days=4, tenants=(
        TenantProfile("t", n_customers=30, n_terminals=60),)))
    store.append_transactions(simulation.transactions, batch_id="b")
    store.append_labels(simulation.labels, batch_id="l")
    features = FeatureSet("demo", groups=[FeatureGroup(Entity("card", keys=("card_id",)), [
        Aggregation(None, Op.COUNT, windows=[days(1)])])])
    ds = build_dataset(store, features)
    assert len(ds) == simulation.transactions.num_rows
    assert ds.feature_names == ("count_1d_by_card",)
    assert int(ds.y.sum()) == len(set(simulation.labels.column("event_id").to_pylist()))
    assert (ds.X[:, 0] >= 1).all()


def _tiny() -> Dataset:
    return Dataset(
        X=np.array([[1.0, np.nan], [0.5, -2.0], [3.0, 4.0]]), feature_names=("f", "g"),
        y=np.array([0, 1, 0], dtype=np.int8), event_id=np.array(["a", "b", "c"], dtype=object),
        tenant=np.array(["t", "t", "u"], dtype=object),
        event_time=np.array(["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-02T00:00"],
                            dtype="datetime64[us]"),
        card_id=np.array(["x", "y", "x"], dtype=object), amount=np.array([1.0, 2.5, 3.0]))


def test_fingerprint_is_stable_across_runs() -> None:
    """A pinned value: the same data must give the same fingerprint on any machine, any day."""
    assert _tiny().fingerprint() == \
        "b5c93d6bb7afb50e28c65ea53e409e7c227a6a5e171dc9a0b83a95c5fec901d7"


def test_fingerprint_ignores_memory_layout_and_nan_payload() -> None:
    ds = _tiny()
    other_nan = np.array([np.nan]).view(np.int64) | 1
    x = np.asfortranarray(ds.X.copy())
    x[0, 1] = other_nan.view(np.float64)[0]
    same = Dataset(X=x, feature_names=ds.feature_names, y=ds.y, event_id=ds.event_id,
                   tenant=ds.tenant, event_time=ds.event_time, card_id=ds.card_id, amount=ds.amount)
    assert same.fingerprint() == ds.fingerprint()


@pytest.mark.parametrize("change", ["label", "value", "name", "order", "id", "card"])
def test_fingerprint_changes_with_the_data(change: str) -> None:
    ds = _tiny()
    if change == "label":
        other = Dataset(**{**ds.__dict__, "y": np.array([1, 1, 0], dtype=np.int8)})
    elif change == "value":
        x = ds.X.copy()
        x[2, 0] = np.nextafter(3.0, 4.0)
        other = Dataset(**{**ds.__dict__, "X": x})
    elif change == "name":
        other = Dataset(**{**ds.__dict__, "feature_names": ("f", "h")})
    elif change == "order":
        other = ds.subset(np.array([1, 0, 2]))
    elif change == "id":
        other = Dataset(**{**ds.__dict__, "event_id": np.array(["a", "bc", ""], dtype=object)})
    else:
        other = Dataset(**{**ds.__dict__, "card_id": np.array(["x", "y", "y"], dtype=object)})
    assert other.fingerprint() != ds.fingerprint()


def test_subset_and_select() -> None:
    ds = _tiny()
    part = ds.subset(ds.y == 0).select(["g"])
    assert part.event_id.tolist() == ["a", "c"]
    np.testing.assert_array_equal(part.X, [[np.nan], [4.0]])
    assert len(ds.subset(np.array([], dtype=int))) == 0


def test_select_unknown_feature_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\['zz'\] are not in the dataset"):
        _tiny().select(["zz"])


def test_misaligned_columns_are_an_error() -> None:
    with pytest.raises(ValueError, match="'amount' must have shape"):
        Dataset(**{**_tiny().__dict__, "amount": np.zeros(2)})


def test_factorize_codes_tuples() -> None:
    codes = factorize(np.array(["t", "t", "u", "t"], object), np.array(["x", "y", "x", "x"], object))
    assert codes[0] == codes[3]
    assert len(set(codes.tolist())) == 3
