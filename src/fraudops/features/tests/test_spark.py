"""The Spark offline engine against the DuckDB engine and the slow reference of docs/features.md.

Skipped when the ``spark`` extra (pyspark) is not installed; one local session serves the
whole module and is stopped at its end.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fraudops.core import DefinitionError
from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate, write_simulation
from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    HourOfDay,
    IsNight,
    IsWeekend,
    Op,
    Ratio,
    SparkEngine,
    ZScore,
    after_delay,
    as_known,
    days,
    hours,
    minutes,
)
from fraudops.features._offline import OfflineEngine

from ._offline_reference import Point, Reference, assert_same
from .test_offline import T0, _event, _op_features, _random_events, _store, card, pair, terminal

# pyspark's own warning about the pandas in the environment; the engine does not use pandas
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

customer = Entity("customer", keys=("customer_id",))
KINDS = ("plain", "lagged", "exclude_current")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local session (127.0.0.1, no UI, UTC) for the module, stopped at its end."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed:"
                                          " pip install 'fraudops[spark]'")
    from fraudops.features import local_session

    session = local_session(cores=2, driver_memory="1g",
                            conf={"spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _every_op_and_window_kind() -> FeatureSet:
    """Every op x every window kind, over int, float, bool and text columns, by card; the
    first of each by the two-key entity; label-aware ones by terminal in both label modes."""
    seen: set[str] = set()
    groups = []
    for op in Op:
        for kind in KINDS:
            for group in _op_features(op, kind).groups:
                if group.entity == terminal and not op.reads_labels:
                    continue
                chosen = group.aggregations[:1] if group.entity == pair else group.aggregations
                for aggregation in chosen:
                    one = FeatureSet("x", groups=[FeatureGroup(group.entity, [aggregation])])
                    if not seen & set(one.names):
                        seen |= set(one.names)
                        groups.append(FeatureGroup(group.entity, [aggregation]))
    return FeatureSet("every_op", groups=groups, transforms=[
        Column("amount"), Column("online"), IsWeekend(), IsNight(), HourOfDay(),
        Ratio("amount", "amount_mean_2h_by_card"),
        ZScore("score", "score_mean_30m_by_card", "amount_std_30m_by_card")])


def _assert_tables_agree(actual: pa.Table, expected: pa.Table, names: list[str]) -> None:
    assert actual.column_names == expected.column_names
    assert actual.schema == expected.schema
    for column in ("tenant", "event_id", "event_time"):
        assert actual.column(column).equals(expected.column(column)), column
    for name in names:
        got, wanted = actual.column(name).to_pylist(), expected.column(name).to_pylist()
        for event_id, a, b in zip(actual.column("event_id").to_pylist(), got, wanted, strict=True):
            assert_same(a, b, f"{event_id} {name}")


def _assert_matches_reference(table: pa.Table, store: EventStore, features: FeatureSet,
                              sample: int | None = None) -> None:
    reference = Reference(store.read_transactions(), store.read_labels())
    rows = {(e["tenant"], e["event_id"]): e for e in reference.events}
    picked = table.to_pylist()
    if sample is not None:
        picked = [picked[i] for i in np.random.default_rng(0).choice(len(picked), sample,
                                                                       replace=False)]
    for row in picked:
        event = rows[(row["tenant"], row["event_id"])]
        wanted = reference.features(features, Point(event["tenant"], event["_t"], 1,
                                                    event["event_id"], event))
        for name in features.names:
            assert_same(row[name], wanted[name], f"{row['event_id']} {name}")


def _one(spark: Any, store: EventStore, aggregation: Aggregation,
         entity: Entity = card) -> dict[str, float | None]:
    features = FeatureSet("one", groups=[FeatureGroup(entity, [aggregation])])
    table = SparkEngine(store, spark=spark).backfill(features)
    return dict(zip(table.column("event_id").to_pylist(),
                    table.column(features.names[0]).to_pylist(), strict=True))


# -- parity ----------------------------------------------------------------------------------
def test_every_op_and_window_kind_matches_duckdb_and_the_reference(spark: Any,
                                                                    tmp_path: Path) -> None:
    """Ties on a 15-minute clock, exact window edges, null keys and values, labels that
    arrive early, late, flip and flip back; two tenants."""
    store = _store(tmp_path, *_random_events(seed=11))
    features = _every_op_and_window_kind()
    table = SparkEngine(store, spark=spark).backfill(features)
    _assert_tables_agree(table, OfflineEngine(store).backfill(features), features.names)
    _assert_matches_reference(table, store, features)


def test_simulated_store_matches_duckdb_and_the_reference(spark: Any, tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    write_simulation(simulate(SimulationConfig(n_days=20, tenants=(
        TenantProfile(n_customers=150, n_terminals=300),))), store, batch_id="sim")
    windows = [hours(1), days(1), days(7)]
    groups = [FeatureGroup(customer, [
        Aggregation(None, Op.COUNT, windows=windows),
        Aggregation(None, Op.COUNT, windows=[w.lagged(days(1)) for w in windows]),
        Aggregation(None, Op.COUNT, windows=windows[:2], exclude_current=True),
        *(Aggregation("amount", op, windows=[days(1), days(7).lagged(days(1))])
          for op in (Op.SUM, Op.MEAN, Op.MIN, Op.MAX, Op.STD, Op.LAST)),
        *(Aggregation("amount", op, windows=[days(7)], exclude_current=True)
          for op in (Op.MEAN, Op.STD, Op.LAST)),
        Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(1), days(7).lagged(days(1))]),
        Aggregation("email", Op.COUNT_DISTINCT, windows=[days(7)], exclude_current=True),
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(7)]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(7)], labels=as_known()),
    ]), FeatureGroup(terminal, [
        Aggregation(None, Op.COUNT, windows=[days(1)]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1), days(7)], labels=after_delay(days(7))),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(3)], labels=after_delay(days(2))),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)], labels=as_known()),
    ])]
    features = FeatureSet("sim", groups=groups, transforms=[
        Column("amount"), IsWeekend(), IsNight(), HourOfDay(),
        Ratio("amount", "amount_mean_1d_by_customer"),
        ZScore("amount", "amount_mean_7d_excl_by_customer", "amount_std_7d_excl_by_customer")])
    table = SparkEngine(store, spark=spark).backfill(features)
    _assert_tables_agree(table, OfflineEngine(store).backfill(features), features.names)
    _assert_matches_reference(table, store, features, sample=25)


def test_tenants_start_and_end_select_rows_as_duckdb_does(spark: Any, tmp_path: Path) -> None:
    store = _store(tmp_path, *_random_events(seed=5, n=120))
    features = _op_features(Op.FRAUD_RATIO, "plain")
    selection: dict[str, Any] = {"tenants": ["a"], "start": T0 + timedelta(hours=4),
                                 "end": T0 + timedelta(hours=8)}
    table = SparkEngine(store, spark=spark).backfill(features, **selection)
    assert set(table.column("tenant").to_pylist()) == {"a"}
    _assert_tables_agree(table, OfflineEngine(store).backfill(features, **selection),
                         features.names)


# -- the contract on hand-built cases ----------------------------------------------------------
def test_same_microsecond_events_see_only_those_before_them(spark: Any, tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(3, 0, amount=300, terminal_id="t3"),
                              _event(1, 0, amount=100, terminal_id="t1"),
                              _event(2, 0, amount=200, terminal_id="t1"), _event(4, 59.99)])
    window = [hours(1)]
    assert _one(spark, store, Aggregation(None, Op.COUNT, windows=window)) == {
        "e0001": 1.0, "e0002": 2.0, "e0003": 3.0, "e0004": 4.0}
    assert _one(spark, store, Aggregation("amount", Op.LAST, windows=window)) == {
        "e0001": 1.0, "e0002": 2.0, "e0003": 3.0, "e0004": 10.0}
    assert _one(spark, store, Aggregation("amount", Op.MAX, windows=window,
                                          exclude_current=True)) == {
        "e0001": None, "e0002": 1.0, "e0003": 2.0, "e0004": 3.0}
    assert _one(spark, store, Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=window)) == {
        "e0001": 1.0, "e0002": 1.0, "e0003": 2.0, "e0004": 2.0}


def test_window_edge_and_lag_edge_are_exact(spark: Any, tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 0), _event(3, 60), _event(4, 60.5)])
    assert _one(spark, store, Aggregation(None, Op.COUNT, windows=[hours(1)])) == {
        "e0001": 1.0, "e0002": 2.0, "e0003": 1.0, "e0004": 2.0}
    assert _one(spark, store, Aggregation(None, Op.COUNT, windows=[hours(1).lagged(hours(1))])) \
        == {"e0001": 0.0, "e0002": 0.0, "e0003": 2.0, "e0004": 2.0}
    assert _one(spark, store, Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[hours(1)])) == {
        "e0001": None, "e0002": 0.0, "e0003": None, "e0004": 30.0}


def test_missing_keys_and_values(spark: Any, tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0, items=4), _event(2, 1, card_id=None, items=7),
                              _event(3, 2, items=None), _event(4, 3, items=2)])
    assert _one(spark, store, Aggregation("items", Op.MEAN, windows=[hours(1)])) == {
        "e0001": 4.0, "e0002": None, "e0003": 4.0, "e0004": 3.0}
    assert _one(spark, store, Aggregation("items", Op.STD, windows=[hours(1)]))["e0004"] == \
        pytest.approx(2 ** 0.5)
    assert _one(spark, store, Aggregation("items", Op.COUNT, windows=[hours(1)]))["e0004"] == 2.0
    assert _one(spark, store, Aggregation(None, Op.COUNT, windows=[minutes(30)]),
                pair)["e0002"] is None


def test_labels_count_only_as_known_at_each_event(spark: Any, tmp_path: Path) -> None:
    """A label from the future is invisible; a flip to genuine stops counting; a fraud label
    wins a tie; the delay mode counts a late label from its arrival; an event's own label is
    never read."""
    events = [_event(i, 60 * (i - 1)) for i in range(1, 6)]
    labels = [{"event_id": e, "tenant": "a", "is_fraud": fraud,
               "label_time": T0 + timedelta(minutes=minute)} for e, minute, fraud in [
        ("e0001", 30, True), ("e0001", 150, False), ("e0001", 210, True),
        ("e0002", 100, True), ("e0002", 100, False), ("e0003", 500, True),
        ("e0004", 170, True)]]
    store = _store(tmp_path, events, labels)
    known = _one(spark, store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)],
                                           labels=as_known()))
    assert known == {"e0001": 0.0, "e0002": 1.0, "e0003": 2.0, "e0004": 1.0, "e0005": 3.0}
    delayed = _one(spark, store, Aggregation(None, Op.FRAUD_RATIO, windows=[hours(3)],
                                             labels=after_delay(hours(1))))
    # e0005 (240 min) reads (0, 180]: e0002, e0003, e0004, of which e0002 and e0004 are known
    # fraud at 240 (e0003's label arrives at 500)
    assert delayed == {"e0001": 0.0, "e0002": 1.0, "e0003": 1.0, "e0004": 1 / 3, "e0005": 2 / 3}


# -- errors and edges ----------------------------------------------------------------------------
def test_missing_extra_says_how_to_install_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ImportError, match=r"pip install 'fraudops\[spark\]'"):
        SparkEngine(EventStore(tmp_path))


def test_empty_store_gives_an_empty_typed_table(spark: Any, tmp_path: Path) -> None:
    features = FeatureSet("empty", groups=[FeatureGroup(card, [
        Aggregation("amount", Op.MEAN, windows=[days(1)]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1)], labels=as_known())])])
    table = SparkEngine(EventStore(tmp_path), spark=spark).backfill(features)
    assert table.num_rows == 0
    assert table.schema == OfflineEngine(EventStore(tmp_path)).backfill(features).schema


def test_unknown_column_is_a_definition_error(spark: Any, tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0)])
    features = FeatureSet("bad", groups=[FeatureGroup(card, [
        Aggregation("amt", Op.SUM, windows=[days(1)])])])
    with pytest.raises(DefinitionError, match="'amt' is not a column of transactions"):
        SparkEngine(store, spark=spark).backfill(features)
