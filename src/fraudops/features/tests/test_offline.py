"""The offline engine against a slow, obvious reference of docs/features.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudops.core import DefinitionError, SchemaError
from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate
from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    HourOfDay,
    IsNight,
    IsWeekend,
    OfflineEngine,
    Op,
    Ratio,
    Window,
    ZScore,
    after_delay,
    as_known,
    days,
    hours,
    minutes,
    write_backfill,
)

from ._offline_reference import Point, Reference, assert_same, micros

T0 = datetime(2024, 3, 1, tzinfo=UTC)
card = Entity("card", keys=("card_id",))
terminal = Entity("terminal", keys=("terminal_id",))
pair = Entity("pair", keys=("card_id", "terminal_id"))


def _transactions(rows: list[dict]) -> pa.Table:
    base = {"event_id": pa.string(), "event_time": pa.timestamp("us", tz="UTC"),
            "tenant": pa.string(), "amount_cents": pa.int64(), "card_id": pa.string(),
            "terminal_id": pa.string()}
    extra = {"items": pa.int64(), "score": pa.float64(), "online": pa.bool_(),
             "channel": pa.string()}
    names = [n for n in {**base, **extra} if n in base or any(n in r for r in rows)]
    schema = pa.schema([pa.field(n, {**base, **extra}[n]) for n in names])
    return pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=schema)


def _labels(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"source": "test", "fraud_type": None, **r} for r in rows],
        schema=pa.schema([("event_id", pa.string()), ("tenant", pa.string()),
                          ("is_fraud", pa.bool_()), ("label_time", pa.timestamp("us", tz="UTC")),
                          ("source", pa.string()), ("fraud_type", pa.string())]))


def _store(path: Path, transactions: list[dict], labels: list[dict] | None = None) -> EventStore:
    store = EventStore(path)
    store.append_transactions(_transactions(transactions), batch_id="tx")
    if labels:
        store.append_labels(_labels(labels), batch_id="labels")
    return store


def _event(i: int, minute: float, card_id: str | None = "c1", amount: int = 1000,
           terminal_id: str | None = "t1", tenant: str = "a", **extra: object) -> dict:
    return {"event_id": f"e{i:04d}", "event_time": T0 + timedelta(minutes=minute),
            "tenant": tenant, "amount_cents": amount, "card_id": card_id,
            "terminal_id": terminal_id, **extra}


def _random_events(seed: int, n: int = 260) -> tuple[list[dict], list[dict]]:
    """Events on a coarse clock (many same-microsecond ties and exact window edges), null
    keys and values, and labels that arrive early, late, flip and flip back."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        events.append(_event(
            i, float(rng.integers(0, 48)) * 15,  # 15-minute clock over 12 hours
            card_id=None if rng.random() < 0.05 else f"c{rng.integers(0, 6)}",
            terminal_id=None if rng.random() < 0.05 else f"t{rng.integers(0, 4)}",
            tenant=str(rng.choice(["a", "b"])), amount=int(rng.integers(1, 50_000)),
            items=None if rng.random() < 0.2 else int(rng.integers(0, 5)),
            score=None if rng.random() < 0.2 else float(rng.normal()),
            online=None if rng.random() < 0.2 else bool(rng.random() < 0.5),
            channel=None if rng.random() < 0.2 else str(rng.choice(["web", "pos", "app"]))))
    labels = []
    for event in events:
        if rng.random() < 0.4:
            when = event["event_time"] + timedelta(minutes=float(rng.integers(-1, 24)) * 15)
            labels.append({"event_id": event["event_id"], "tenant": event["tenant"],
                           "is_fraud": bool(rng.random() < 0.7), "label_time": when})
            if rng.random() < 0.3:  # a later label that flips it
                labels.append({"event_id": event["event_id"], "tenant": event["tenant"],
                               "is_fraud": not labels[-1]["is_fraud"],
                               "label_time": when + timedelta(minutes=float(rng.integers(0, 12)) * 15)})
    return events, labels


def _compare(store: EventStore, features: FeatureSet, **backfill: object) -> pa.Table:
    table = OfflineEngine(store).backfill(features, **backfill)  # type: ignore[arg-type]
    expected = Reference(store.read_transactions(), store.read_labels()).backfill(features)
    assert table.num_rows == len(expected)
    for row in table.to_pylist():
        wanted = expected[(row["tenant"], row["event_id"])]
        for name in features.names:
            assert_same(row[name], wanted[name], f"{row['event_id']} {name}")
    return table


_WINDOWS = {"plain": {}, "lagged": {"lag": True}, "exclude_current": {"exclude_current": True}}


def _op_features(op: Op, kind: str) -> FeatureSet:
    windows: list[Window] = [minutes(30), hours(2), hours(6)]
    if kind == "lagged":
        windows = [w.lagged(hours(1)) for w in windows]
    column = {Op.COUNT: "items", Op.COUNT_DISTINCT: "channel", Op.LAST: "score"}.get(op, "amount")
    if not op.needs_column and op is not Op.COUNT:
        column = None
    labels = as_known() if op.reads_labels else None
    if op is Op.TIME_SINCE_PREVIOUS:
        windows = windows[-1:]
    groups = []
    for entity in (card, terminal, pair):
        aggregations = [Aggregation(column, op, windows=windows, labels=labels,
                                    exclude_current=kind == "exclude_current")]
        if op.needs_column and column != "items" and op is not Op.COUNT_DISTINCT:
            aggregations.append(Aggregation("items", op, windows=windows[:1], labels=labels,
                                            exclude_current=kind == "exclude_current"))
        if op in (Op.SUM, Op.MEAN, Op.STD, Op.MIN, Op.MAX, Op.LAST):
            aggregations += [Aggregation(other, op, windows=windows[:1],
                                         exclude_current=kind == "exclude_current")
                             for other in ("score", "online", "amount") if other != column]
        groups.append(FeatureGroup(entity, aggregations))
    if op.reads_labels:
        groups.append(FeatureGroup(terminal, [Aggregation(None, op, windows=windows[:2],
                                                          labels=after_delay(hours(1)))]))
    return FeatureSet(f"{op.value}_{kind}", groups=groups)


@pytest.mark.parametrize("kind", sorted(_WINDOWS))
@pytest.mark.parametrize("op", list(Op), ids=str)
def test_every_op_and_window_kind_matches_the_reference(tmp_path: Path, op: Op, kind: str) -> None:
    events, labels = _random_events(seed=7)
    store = _store(tmp_path, events, labels)
    _compare(store, _op_features(op, kind))


def test_all_ops_match_the_reference_across_random_stores(tmp_path: Path) -> None:
    """The property, over several random stores: every op and window kind in one set."""
    by_name: dict[str, FeatureGroup] = {}
    for op in Op:
        for kind in _WINDOWS:
            for group in _op_features(op, kind).groups:
                for aggregation in group.aggregations:
                    single = FeatureGroup(group.entity, [aggregation])
                    by_name.setdefault(FeatureSet("x", groups=[single]).names[0], single)
    features = FeatureSet("all_ops", groups=list(by_name.values()))
    for seed in (1, 2):
        _compare(_store(tmp_path / str(seed), *_random_events(seed, n=90)), features)


def test_simulated_store_matches_the_reference(tmp_path: Path) -> None:
    simulation = simulate(SimulationConfig(n_days=8, tenants=(
        TenantProfile("sim", n_customers=60, n_terminals=120),)))
    store = EventStore(tmp_path)
    store.append_transactions(simulation.transactions, batch_id="tx")
    store.append_labels(simulation.labels, batch_id="labels")
    features = FeatureSet("sim", groups=[
        FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[hours(1), days(1)]),
                            Aggregation("amount", Op.MEAN, windows=[days(1)]),
                            Aggregation("amount", Op.STD, windows=[days(7)]),
                            Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(7)]),
                            Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(7)])]),
        FeatureGroup(terminal, [
            Aggregation(None, Op.FRAUD_RATIO, windows=[days(3)], labels=after_delay(days(2))),
            Aggregation(None, Op.FRAUD_COUNT, windows=[days(7)], labels=as_known())]),
    ], transforms=[Column("amount"), IsWeekend(), IsNight(), HourOfDay(),
                   Ratio("amount", "amount_mean_1d_by_card"),
                   ZScore("amount", "amount_mean_1d_by_card", "amount_std_7d_by_card")])
    _compare(store, features)


def _one(store: EventStore, aggregation: Aggregation, entity: Entity = card) -> dict[str, float]:
    features = FeatureSet("one", groups=[FeatureGroup(entity, [aggregation])])
    table = OfflineEngine(store).backfill(features)
    return dict(zip(table.column("event_id").to_pylist(),
                    table.column(features.names[0]).to_pylist(), strict=True))


def test_later_event_of_the_same_microsecond_is_not_in_the_window(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 0), _event(3, 0)])
    assert _one(store, Aggregation(None, Op.COUNT, windows=[hours(1)])) == {
        "e0001": 1.0, "e0002": 2.0, "e0003": 3.0}


def test_window_excludes_the_event_exactly_its_length_before(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 60), _event(3, 60.5)])
    assert _one(store, Aggregation(None, Op.COUNT, windows=[hours(1)])) == {
        "e0001": 1.0, "e0002": 1.0, "e0003": 2.0}


def test_lagged_window_holds_every_event_at_its_upper_edge(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 0), _event(3, 60)])
    counts = _one(store, Aggregation(None, Op.COUNT, windows=[hours(1).lagged(hours(1))]))
    assert counts == {"e0001": 0.0, "e0002": 0.0, "e0003": 2.0}


def test_exclude_current_leaves_the_event_out_of_its_own_window(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0, amount=100), _event(2, 1, amount=250)])
    sums = _one(store, Aggregation("amount", Op.SUM, windows=[hours(1)], exclude_current=True))
    assert sums == {"e0001": 0.0, "e0002": 1.0}


def test_missing_key_gives_missing_features_and_enters_no_window(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 1, card_id=None), _event(3, 2)])
    assert _one(store, Aggregation(None, Op.COUNT, windows=[hours(1)])) == {
        "e0001": 1.0, "e0002": None, "e0003": 2.0}


def test_missing_values_are_skipped(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0, items=4), _event(2, 1, items=None), _event(3, 2, items=None)])
    assert _one(store, Aggregation("items", Op.MEAN, windows=[hours(1)])) == {
        "e0001": 4.0, "e0002": 4.0, "e0003": 4.0}
    assert _one(store, Aggregation("items", Op.LAST, windows=[hours(1)]))["e0003"] == 4.0
    assert _one(store, Aggregation("items", Op.COUNT, windows=[hours(1)]))["e0003"] == 1.0


def test_empty_windows_follow_the_table_of_docs(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0)])
    expected = {Op.SUM: 0.0, Op.MEAN: None, Op.MIN: None, Op.MAX: None, Op.STD: None,
                Op.COUNT_DISTINCT: 0.0, Op.LAST: None}
    for op, value in expected.items():
        aggregation = Aggregation("amount", op, windows=[hours(1)], exclude_current=True)
        assert _one(store, aggregation) == {"e0001": value}, op


def test_time_since_previous_is_missing_beyond_the_window(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0), _event(2, 0), _event(3, 30), _event(4, 100)])
    seconds = _one(store, Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[hours(1)]))
    assert seconds == {"e0001": None, "e0002": 0.0, "e0003": 1800.0, "e0004": None}


def _fraud_store(path: Path, label_minutes: list[tuple[int, float, bool]]) -> EventStore:
    events = [_event(1, 0), _event(2, 60), _event(3, 120), _event(4, 180), _event(5, 240)]
    labels = [{"event_id": f"e{i:04d}", "tenant": "a", "is_fraud": fraud,
               "label_time": T0 + timedelta(minutes=minute)} for i, minute, fraud in label_minutes]
    return _store(path, events, labels)


def test_label_from_the_future_is_invisible(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 150, True)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()))
    assert counts == {"e0001": 0.0, "e0002": 0.0, "e0003": 0.0, "e0004": 1.0, "e0005": 1.0}


def test_label_known_at_the_instant_of_the_transaction_counts(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 120, True)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()))
    assert counts["e0002"] == 0.0
    assert counts["e0003"] == 1.0


def test_fraud_label_flipped_to_genuine_stops_counting(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 30, True), (1, 150, False), (1, 210, True)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()))
    assert counts == {"e0001": 0.0, "e0002": 1.0, "e0003": 1.0, "e0004": 0.0, "e0005": 1.0}


def test_fraud_wins_a_tie_of_label_times(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 30, True), (1, 30, False)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()))
    assert counts["e0002"] == 1.0


def test_delay_mode_counts_only_events_older_than_the_delay(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 30, True), (2, 90, True)])
    ratio = _one(store, Aggregation(None, Op.FRAUD_RATIO, windows=[hours(3)],
                                    labels=after_delay(hours(2))))
    # e0005 (240 min) reads (-60, 120]: e0001 and e0002 fraud, e0003 not
    assert ratio == {"e0001": 0.0, "e0002": 0.0, "e0003": 1.0, "e0004": 1.0, "e0005": 2 / 3}


def test_delay_mode_counts_a_late_label_from_its_arrival(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 200, True)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)],
                                     labels=after_delay(hours(1))))
    assert counts == {"e0001": 0.0, "e0002": 0.0, "e0003": 0.0, "e0004": 0.0, "e0005": 1.0}


def test_label_time_mode_counts_a_label_as_soon_as_it_arrives(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, 61, True)])
    as_known_counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)],
                                              labels=as_known()))
    delayed = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)],
                                      labels=after_delay(hours(3))))
    assert as_known_counts["e0003"] == 1.0
    assert delayed["e0003"] == 0.0


def test_own_label_is_never_read(tmp_path: Path) -> None:
    store = _fraud_store(tmp_path, [(1, -10, True)])
    counts = _one(store, Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()))
    assert counts["e0001"] == 0.0
    assert counts["e0002"] == 1.0


def test_training_set_reads_features_as_of_each_timestamp(tmp_path: Path) -> None:
    events, labels = _random_events(seed=3, n=160)
    store = _store(tmp_path, events, labels)
    features = FeatureSet("asof", groups=[
        FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[hours(1), hours(2).lagged(hours(1))]),
                            Aggregation("amount", Op.SUM, windows=[hours(2)], exclude_current=True),
                            Aggregation("score", Op.LAST, windows=[hours(3)]),
                            Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[hours(2)]),
                            Aggregation(None, Op.FRAUD_RATIO, windows=[hours(6)], labels=as_known())]),
        FeatureGroup(terminal, [Aggregation(None, Op.FRAUD_COUNT, windows=[hours(6)],
                                            labels=after_delay(hours(1)))]),
    ], transforms=[HourOfDay(), Column("amount")])
    rng = np.random.default_rng(0)
    spine_rows = [{"tenant": str(rng.choice(["a", "b"])), "card_id": f"c{rng.integers(0, 6)}",
                   "terminal_id": f"t{rng.integers(0, 4)}",
                   "timestamp": T0 + timedelta(minutes=float(rng.integers(0, 60)) * 15)}
                  for _ in range(60)]
    spine = pa.Table.from_pylist(spine_rows, schema=pa.schema([
        ("tenant", pa.string()), ("card_id", pa.string()), ("terminal_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC"))]))
    table = OfflineEngine(store).training_set(features, spine)
    reference = Reference(store.read_transactions(), store.read_labels())
    assert table.column_names == spine.column_names + features.names
    for row in table.to_pylist():
        point = Point(row["tenant"], micros(row["timestamp"]), 2, "",
                      {**row, "event_time": row["timestamp"]})
        expected = reference.features(features, point)
        for name in features.names:
            assert_same(row[name], expected[name], f"{row['timestamp']} {name}")


def test_start_end_and_tenants_select_rows_but_keep_history(tmp_path: Path) -> None:
    events, labels = _random_events(seed=5, n=120)
    store = _store(tmp_path, events, labels)
    features = _op_features(Op.FRAUD_RATIO, "plain")
    full = OfflineEngine(store).backfill(features)
    start, end = T0 + timedelta(hours=4), T0 + timedelta(hours=8)
    part = OfflineEngine(store).backfill(features, tenants=["a"], start=start, end=end)
    times = part.column("event_time").to_pylist()
    assert set(part.column("tenant").to_pylist()) == {"a"}
    assert all(start <= t < end for t in times)
    keep = {(r["tenant"], r["event_id"]): r for r in full.to_pylist()}
    assert [keep[(r["tenant"], r["event_id"])] for r in part.to_pylist()] == part.to_pylist()


def test_backfill_is_ordered_and_typed(tmp_path: Path) -> None:
    events, labels = _random_events(seed=9, n=80)
    table = OfflineEngine(_store(tmp_path, events, labels)).backfill(_op_features(Op.MEAN, "plain"))
    keys = list(zip(table.column("tenant").to_pylist(), table.column("event_time").to_pylist(),
                    table.column("event_id").to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert all(f.type == pa.float64() for f in table.schema if f.name not in
               ("tenant", "event_id", "event_time"))


def test_write_backfill_round_trips(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", [_event(1, 0), _event(2, 1)])
    features = FeatureSet("w", groups=[FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[hours(1)])])])
    table = OfflineEngine(store).backfill(features)
    path = write_backfill(table, tmp_path / "out")
    assert pq.read_table(path).equals(table)


def test_unknown_column_is_a_definition_error(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0)])
    features = FeatureSet("bad", groups=[FeatureGroup(card, [Aggregation("amt", Op.SUM, windows=[days(1)])])])
    with pytest.raises(DefinitionError, match="'amt' is not a column of transactions"):
        OfflineEngine(store).backfill(features)


def test_sum_of_a_text_column_is_a_definition_error(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0, channel="web")])
    features = FeatureSet("bad", groups=[
        FeatureGroup(card, [Aggregation("channel", Op.SUM, windows=[days(1)])])])
    with pytest.raises(DefinitionError, match="'channel' is string, not a number"):
        OfflineEngine(store).backfill(features)


def test_spine_without_an_entity_key_is_a_schema_error(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0)])
    features = FeatureSet("s", groups=[FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[days(1)])])])
    spine = pa.table({"tenant": ["a"], "timestamp": pa.array([T0], pa.timestamp("us", tz="UTC"))})
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['card_id'\]"):
        OfflineEngine(store).training_set(features, spine)


def test_naive_start_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, [_event(1, 0)])
    features = FeatureSet("s", groups=[FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[days(1)])])])
    with pytest.raises(ValueError, match="'start' must be a timezone-aware datetime"):
        OfflineEngine(store).backfill(features, start=datetime(2024, 1, 1))
