"""The online engine returns, at every event, what docs/features.md says, on every store.

The reference below is slow and obvious: for each event and feature it walks the entity's
events with plain loops and applies the contract's sentences literally, in exact rational
arithmetic. The engine must match it within 1e-9 at every event.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudops.core import InputError, StoreError
from fraudops.events import SimulationConfig, TenantProfile, simulate
from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    FeatureSpec,
    HourOfDay,
    IsNight,
    IsWeekend,
    MemoryStore,
    OnlineEngine,
    Op,
    Ratio,
    ZScore,
    after_delay,
    as_known,
    days,
    hours,
)
from fraudops.features._online import _json_list
from fraudops.features._state import FORMAT_VERSION, EntityState

from . import test_stores
from .test_stores import StoreFactory

# the store fixtures of test_stores (memory, sqlite, redis), shared until they move to a conftest
make_store = test_stores.make_store
H = 3_600_000_000  # one hour in µs
D = 24 * H
card = Entity("card", keys=("card_id",))
terminal = Entity("terminal", keys=("terminal_id",))
pair = Entity("card_terminal", keys=("card_id", "terminal_id"))

EVERY_OP = FeatureSet("every_op", groups=[
    FeatureGroup(card, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7)]),
        Aggregation("amount", Op.SUM, windows=[days(1)]),
        Aggregation("amount", Op.MEAN, windows=[days(1), days(7)]),
        Aggregation("amount", Op.MEAN, windows=[days(7)], exclude_current=True),
        Aggregation("amount", Op.MIN, windows=[days(1)]),
        Aggregation("amount", Op.MAX, windows=[days(1)]),
        Aggregation("amount", Op.STD, windows=[days(7)]),
        Aggregation("amount", Op.LAST, windows=[days(1)], exclude_current=True),
        Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(7)]),
        Aggregation("score", Op.COUNT, windows=[days(1)]),
        Aggregation("score", Op.SUM, windows=[days(7)]),
        Aggregation("score", Op.STD, windows=[days(7)]),
        Aggregation("score", Op.LAST, windows=[days(1)]),
        Aggregation(None, Op.COUNT, windows=[days(1).lagged(days(1))]),
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(7)]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(7)], labels=as_known()),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)], labels=as_known()),
    ]),
    FeatureGroup(terminal, [
        Aggregation(None, Op.COUNT, windows=[days(1).lagged(days(7)), days(7).lagged(days(7))]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1), days(7)], labels=after_delay(days(7))),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(7)], labels=after_delay(days(3))),
    ]),
    FeatureGroup(pair, [Aggregation(None, Op.COUNT, windows=[days(30)])]),
], transforms=[Column("amount", name="tx_amount"), Column("score"), IsWeekend(), IsNight(),
               HourOfDay(), Ratio("amount", "amount_mean_7d_by_card"),
               ZScore("amount", "amount_mean_7d_by_card", "amount_std_7d_by_card")])


# -- the slow, obvious reference ------------------------------------------------------------
def _order(event: dict[str, Any]) -> tuple[int, str]:
    return event["event_time"], event["event_id"]


def _column(event: dict[str, Any], column: str) -> Fraction | str | None:
    value = event.get("amount_cents") if column == "amount" else event.get(column)
    if value is None or isinstance(value, str):
        return value
    return Fraction(value, 100) if column == "amount" else Fraction(value)


def _known_fraud(labels: list[dict[str, Any]], t: int) -> bool:
    """The label as known at t: the latest label_time <= t; fraud wins a tie."""
    known = [lab for lab in labels if lab["label_time"] <= t]
    if not known:
        return False
    latest = max(lab["label_time"] for lab in known)
    return any(lab["is_fraud"] for lab in known if lab["label_time"] == latest)


def reference_value(spec: FeatureSpec, event: dict[str, Any], seen: Iterable[dict[str, Any]],
                    labels: dict[str, list[dict[str, Any]]]) -> float | None:
    keys = spec.entity.keys
    if any(event.get(k) is None for k in keys):
        return None
    t = event["event_time"]
    lag, length = spec.effective.lag_us, spec.effective.length_us
    window = []
    for other in sorted(seen, key=_order):
        if any(other.get(k) != event.get(k) for k in keys) or other["tenant"] != event["tenant"]:
            continue
        if not (t - lag - length < other["event_time"] <= t - lag):
            continue
        if lag == 0 and _order(other) > _order(event):
            continue  # comes after the current event
        if other["event_id"] == event["event_id"] and not spec.includes_current:
            continue
        window.append(other)
    op = spec.op
    if op is Op.TIME_SINCE_PREVIOUS:
        return (t - window[-1]["event_time"]) / 1e6 if window else None
    if op in (Op.FRAUD_COUNT, Op.FRAUD_RATIO):
        frauds = sum(_known_fraud(labels.get(o["event_id"], []), t) for o in window)
        if op is Op.FRAUD_COUNT:
            return float(frauds)
        return frauds / len(window) if window else 0.0
    if spec.column is None:
        return float(len(window))
    values = [v for v in (_column(o, spec.column) for o in window) if v is not None]
    if op is Op.COUNT:
        return float(len(values))
    if op is Op.COUNT_DISTINCT:
        return float(len(set(values)))
    numbers = [v for v in values if isinstance(v, Fraction)]
    if op is Op.SUM:
        return float(sum(numbers))
    if not numbers:
        return None
    if op is Op.MEAN:
        return float(sum(numbers) / len(numbers))
    if op is Op.MIN:
        return float(min(numbers))
    if op is Op.MAX:
        return float(max(numbers))
    if op is Op.LAST:
        return float(numbers[-1])
    if op is Op.STD:
        return statistics.stdev(numbers) if len(numbers) > 1 else None
    raise AssertionError(op)


def reference_vector(features: FeatureSet, event: dict[str, Any],
                     seen: Iterable[dict[str, Any]],
                     labels: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    seen = list(seen)
    out = {spec.name: reference_value(spec, event, seen, labels)
           for spec in features.aggregations}
    when = datetime.fromtimestamp(event["event_time"] / 1e6, UTC)

    def read(name: str) -> float | None:
        if name in out:
            return out[name]
        value = _column(event, name)
        return None if value is None else float(value)

    for transform in features.transforms:
        value: float | None
        if isinstance(transform, Column):
            value = read(transform.column)
        elif isinstance(transform, IsWeekend):
            value = float(when.weekday() >= 5)
        elif isinstance(transform, IsNight):
            value = float(transform.start_hour <= when.hour <= transform.end_hour)
        elif isinstance(transform, HourOfDay):
            value = float(when.hour)
        elif isinstance(transform, Ratio):
            a, b = read(transform.numerator), read(transform.denominator)
            value = None if a is None or not b else a / b
        else:
            assert isinstance(transform, ZScore)
            v, m, s = read(transform.value), read(transform.mean), read(transform.std)
            value = None if v is None or m is None or not s else (v - m) / s
        out[transform.output] = value
    return out


def assert_same(online: dict[str, float | None], expected: dict[str, float | None],
                where: str) -> None:
    assert list(online) == list(expected), where
    for name, want in expected.items():
        got = online[name]
        if want is None or got is None:
            assert got == want, f"{where}: {name} = {got}, expected {want}"
        elif abs(got - want) > 1e-9 * max(abs(got), abs(want)) and max(abs(got),
                                                                        abs(want)) > 1e-12:
            raise AssertionError(f"{where}: {name} = {got!r}, expected {want!r}")


# -- streams ---------------------------------------------------------------------------------
def _simulated_stream() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A small simulated month with nulls, a float attribute, late labels and flips."""
    config = SimulationConfig(n_days=20, seed=3,
                              tenants=(TenantProfile(n_customers=50, n_terminals=100),))
    simulation = simulate(config)
    rng = random.Random(7)
    events = []
    for row in simulation.transactions.to_pylist():
        row["event_time"] = (row["event_time"] - datetime(1970, 1, 1, tzinfo=UTC)) \
            // timedelta(microseconds=1)
        row["score"] = None if rng.random() < 0.2 else rng.choice([rng.random(), 0.5, 2.25])
        if rng.random() < 0.05:
            row["card_id"] = None
        events.append(row)
    labels = []
    for row in simulation.labels.to_pylist():
        label_time = (row["label_time"] - datetime(1970, 1, 1, tzinfo=UTC)) \
            // timedelta(microseconds=1)
        labels.append({"tenant": row["tenant"], "event_id": row["event_id"], "is_fraud": True,
                       "label_time": label_time})
        if rng.random() < 0.2:  # a flip: reviewed and found genuine later
            labels.append({"tenant": row["tenant"], "event_id": row["event_id"],
                           "is_fraud": False, "label_time": label_time + rng.choice([0, D])})
    # a few genuine events labelled fraud, then flipped back at the same time (fraud wins)
    for event in rng.sample(events, 10):
        for flag in (True, False):
            labels.append({"tenant": event["tenant"], "event_id": event["event_id"],
                           "is_fraud": flag, "label_time": event["event_time"] + 2 * D})
    return events, labels


def _merged(events: list[dict[str, Any]], labels: list[dict[str, Any]],
            early: float, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """Transactions and labels by time, labels first at equal times; a share ``early`` of
    labels is delivered right after its transaction, long before its label_time."""
    rng = random.Random(seed)
    when = {e["event_id"]: _order(e) for e in events}
    stream: list[tuple[tuple[int, int, str], str, dict[str, Any]]] = []
    for event in events:
        stream.append(((event["event_time"], 1, event["event_id"]), "event", event))
    for label in labels:
        if rng.random() < early:
            t, event_id = when[label["event_id"]]
            stream.append(((t, 2, event_id), "label", label))
        else:
            stream.append(((label["label_time"], 0, ""), "label", label))
    stream.sort(key=lambda item: item[0])
    return [(kind, item) for _, kind, item in stream]


def _check_stream(engine: OnlineEngine, stream: list[tuple[str, dict[str, Any]]],
                  all_labels: list[dict[str, Any]]) -> set[str]:
    """Check every event against the reference; returns the features that were ever
    non-zero (so a test can show that its stream exercises them)."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in all_labels:
        by_id[label["event_id"]].append(label)
    # the reference sees, per event, the tenant's events of the same entities: index them
    members: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    nonzero: set[str] = set()
    for kind, item in stream:
        if kind == "label":
            engine.label_one(item)
            continue
        for entity in engine.feature_set.entities:
            members[(entity.name, *(item.get(k) for k in entity.keys))].append(item)
        seen = {id(e): e for entity in engine.feature_set.entities
                for e in members[(entity.name, *(item.get(k) for k in entity.keys))]}
        online = engine.process_one(item)
        nonzero.update(name for name, value in online.items() if value)
        assert_same(online, reference_vector(engine.feature_set, item, seen.values(), by_id),
                    f"event {item['event_id']}")
    return nonzero


# -- parity with the reference ---------------------------------------------------------------
def test_every_op_matches_the_reference_at_every_event(make_store: StoreFactory) -> None:
    """Simulated stream; labels late, early (future label_time), flipped; nulls; every op."""
    events, labels = _simulated_stream()
    engine = OnlineEngine(EVERY_OP, make_store())
    nonzero = _check_stream(engine, _merged(events, labels, early=0.3), labels)
    assert len(events) > 800
    assert nonzero == set(EVERY_OP.names)


def _event(event_id: str, t: int, amount: int = 100, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_time": t, "tenant": "t", "amount_cents": amount,
            "card_id": "K1", "terminal_id": "T1", **fields}


def test_hand_built_edge_cases_match_the_reference(make_store: StoreFactory) -> None:
    """Same-microsecond ties, window edges to the microsecond, nulls, labels at t exactly."""
    t0 = 1_700_000_000_000_000
    events = [
        _event("b", t0, 100), _event("a", t0, 250), _event("c", t0 + 1, 0, score=None),
        _event("d", t0 + H, 300, score=1.5), _event("e", t0 + D, 10, card_id=None),
        _event("f", t0 + D + 1, 20), _event("g", t0 + 7 * D, 5, score=-2.0),
        _event("h", t0 + 7 * D + 1, 7), _event("i", t0 + 8 * D + 2, 9, terminal_id=None),
        _event("j", t0 + 14 * D + H, 11), _event("k", t0 + 14 * D + H, 12),
    ]
    labels = [
        {"tenant": "t", "event_id": "a", "is_fraud": True, "label_time": t0 + H},
        {"tenant": "t", "event_id": "b", "is_fraud": True, "label_time": t0 + 7 * D + 1},
        {"tenant": "t", "event_id": "b", "is_fraud": False, "label_time": t0 + 8 * D + 2},
        {"tenant": "t", "event_id": "d", "is_fraud": True, "label_time": t0 + 20 * D},
    ]
    events.sort(key=_order)
    engine = OnlineEngine(EVERY_OP, make_store())
    assert _check_stream(engine, _merged(events, labels, early=0.5), labels)


# -- behaviours, one per test ----------------------------------------------------------------
COUNTS = FeatureSet("counts", groups=[FeatureGroup(card, [
    Aggregation(None, Op.COUNT, windows=[hours(1)]),
    Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)], labels=as_known()),
    Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)], labels=after_delay(days(7)))])])


def _label(event_id: str, label_time: int, is_fraud: bool = True) -> dict[str, Any]:
    return {"tenant": "t", "event_id": event_id, "is_fraud": is_fraud, "label_time": label_time}


def test_same_microsecond_events_see_only_smaller_event_ids() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    assert engine.process_one(_event("b", 10))["count_1h_by_card"] == 1.0
    # 'a' comes before 'b' in (event_time, event_id) order: it does not see 'b'
    assert engine.process_one(_event("a", 10))["count_1h_by_card"] == 1.0
    assert engine.process_one(_event("c", 10))["count_1h_by_card"] == 3.0


def test_event_with_missing_key_gets_missing_features_and_enters_no_state() -> None:
    store = MemoryStore()
    engine = OnlineEngine(COUNTS, store)
    features = engine.process_one(_event("a", 10, card_id=None))
    assert features == dict.fromkeys(COUNTS.names)
    assert len(store) == 0


def test_label_from_the_future_is_invisible() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    engine.process_one(_event("a", 0))
    assert engine.label_one(_label("a", 5 * H)) == 1  # delivered early, dated 5h ahead
    assert engine.process_one(_event("b", 5 * H - 1))["fraud_count_30d_by_card"] == 0.0
    assert engine.process_one(_event("c", 5 * H))["fraud_count_30d_by_card"] == 1.0


def test_latest_label_wins_and_fraud_wins_a_tie() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    engine.process_one(_event("a", 0))
    engine.label_one(_label("a", H))
    engine.label_one(_label("a", 2 * H, is_fraud=False))
    engine.label_one(_label("a", 3 * H, is_fraud=False))
    engine.label_one(_label("a", 3 * H))
    got = [engine.process_one(_event(f"x{t}", t * H + 1))["fraud_count_30d_by_card"]
           for t in (1, 2, 3)]
    assert got == [1.0, 0.0, 1.0]


def test_delay_mode_counts_a_late_label_only_from_its_arrival() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    engine.process_one(_event("a", 0))
    engine.label_one(_label("a", 10 * D))  # arrives 10 days after the event, delay is 7
    name = "fraud_count_30d_delay7d_by_card"
    assert engine.process_one(_event("b", 8 * D))[name] == 0.0
    assert engine.process_one(_event("c", 10 * D))[name] == 1.0


def test_label_for_an_unknown_event_is_ignored() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    assert engine.label_one(_label("never-seen", 0)) == 0


def test_retried_event_is_scored_again_and_counted_once() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    first = engine.process_one(_event("a", 10))
    assert engine.process_one(_event("a", 10)) == first
    assert engine.process_one(_event("b", 11))["count_1h_by_card"] == 2.0


def test_datetime_and_microsecond_event_times_are_the_same() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    engine.process_one(_event("a", 1_000_000))
    when = datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert engine.process_one(_event("b", when))["count_1h_by_card"] == 2.0


def test_naive_event_time_is_refused() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    with pytest.raises(InputError, match="naive datetime"):
        engine.process_one(_event("a", datetime(2024, 1, 1)))


# -- out-of-order events ---------------------------------------------------------------------
def test_late_event_within_max_lateness_is_scored_exactly(make_store: StoreFactory) -> None:
    """Events shuffled by up to 30 min: each equals the reference over the events processed
    before it plus itself, labels as known at its own time."""
    events, labels = _simulated_stream()
    rng = random.Random(5)
    shuffled = sorted(events, key=lambda e: e["event_time"] + rng.randrange(30 * 60 * 10**6))
    shuffled = shuffled[:700]
    engine = OnlineEngine(EVERY_OP, make_store(), max_lateness=timedelta(hours=1))
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        by_id[label["event_id"]].append(label)
    stream = [item for event in shuffled for item in
              [("event", event), *(("label", label) for label in by_id[event["event_id"]])]]
    assert sum(a["event_time"] > b["event_time"] for a, b in pairwise(shuffled)) > 100
    assert _check_stream(engine, stream, labels)


def test_event_later_than_max_lateness_is_rejected_and_changes_nothing() -> None:
    store = MemoryStore()
    engine = OnlineEngine(COUNTS, store, max_lateness=timedelta(minutes=5))
    engine.process_one(_event("a", 10 * H))
    before = {key: store.get_many([key]) for key in store.stored_keys()}
    with pytest.raises(InputError, match=r"max_lateness=0:05:00.*not processed"):
        engine.process_one(_event("b", 10 * H - 6 * 60 * 10**6))
    assert {key: store.get_many([key]) for key in store.stored_keys()} == before
    # within the lateness it is accepted and sees only what came before it in order
    assert engine.process_one(_event("c", 10 * H - 4 * 60 * 10**6))["count_1h_by_card"] == 1.0


# -- state -----------------------------------------------------------------------------------
def test_state_is_bounded_by_the_longest_window_plus_lateness() -> None:
    store = MemoryStore()
    features = FeatureSet("bounded", groups=[FeatureGroup(card, [
        Aggregation(None, Op.COUNT, windows=[hours(6)]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[hours(6)], labels=after_delay(hours(12)))])])
    engine = OnlineEngine(features, store, max_lateness=timedelta(hours=1))
    for i in range(24 * 20):  # one event an hour for 20 days, each labelled
        engine.process_one(_event(f"e{i:04d}", i * H))
        engine.label_one(_label(f"e{i:04d}", i * H + 1))
    state = engine.read_state("card", "t", ["K1"])
    assert state is not None
    assert len(state) == 6 + 12 + 1  # events in (newest − 19h, newest]
    assert len(state.labels) == len(state)
    assert len(store) == 1 + len(state)  # the state and one label index entry per event


def test_state_round_trips_through_its_encoding() -> None:
    state = EntityState.empty(3)
    state.insert(0, 5, "b", [1250, None, "x"])
    state.insert(0, 5, "a", [-3, 0.1, "é"])
    state.insert(2, 9, "c", [2**62, float("inf"), None])
    state.add_label(5, "a", 7, True)
    state.add_label(5, "a", 8, False)
    again = EntityState.decode(state.encode(), 3)
    assert again == state
    assert again.ids == ["a", "b", "c"]
    assert again.labels == {"a": [5, 7, 1, 8, 0]}


def test_state_of_another_format_version_is_refused() -> None:
    data = EntityState.empty(1).encode().replace(b"[1,", b"[99,", 1)
    assert FORMAT_VERSION != 99
    with pytest.raises(StoreError, match="format version 99"):
        EntityState.decode(data, 1, key="k")


# -- batches ---------------------------------------------------------------------------------
def test_a_batch_gives_what_one_by_one_gives(make_store: StoreFactory) -> None:
    """Random batches of a shuffled stream (late events refused, retries, labels between
    batches) give each event the features, or the refusal, of one-by-one processing, and
    leave the same state."""
    events, labels = _simulated_stream()
    rng = random.Random(11)
    shuffled = sorted(events[:600], key=lambda e: e["event_time"] + rng.randrange(3 * H))
    shuffled[100:100] = [dict(shuffled[50]), dict(shuffled[60], event_time=shuffled[60][
        "event_time"] + 1)]   # a retry, and a re-stamped retry
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        by_id[label["event_id"]].append(label)
    single = OnlineEngine(EVERY_OP, MemoryStore(), max_lateness=timedelta(hours=1))
    batched = OnlineEngine(EVERY_OP, make_store(), max_lateness=timedelta(hours=1))
    i = refused = 0
    while i < len(shuffled):
        batch = shuffled[i:i + rng.choice([1, 2, 5, 17, 40])]
        i += len(batch)
        got = batched.process_many(batch)
        for event, result in zip(batch, got, strict=True):
            try:
                expected: Any = single.process_one(event)
            except InputError as exc:
                expected = exc
            if isinstance(expected, InputError):
                refused += 1
                assert isinstance(result, InputError)
                assert str(result) == str(expected)
                continue
            assert not isinstance(result, InputError), result
            assert_same(result, expected, f"event {event['event_id']}")
        for event in batch:
            for label in by_id[event["event_id"]]:
                assert batched.label_one(label) == single.label_one(label)
    assert refused > 10
    for event in shuffled:
        for entity in (card, terminal, pair):
            key = [event.get(k) for k in entity.keys]
            if None not in key:
                assert batched.read_state(entity.name, event["tenant"], key) == \
                    single.read_state(entity.name, event["tenant"], key)


def test_an_empty_batch_reads_nothing() -> None:
    engine = OnlineEngine(COUNTS, MemoryStore())
    assert engine.process_many([]) == []


@given(st.lists(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.none(),
                          st.booleans()), min_size=1, max_size=4))
def test_state_keys_are_the_json_of_their_values(values: list[Any]) -> None:
    """The fast key encoding must never change a key: stored state would be lost."""
    assert _json_list(values) == json.dumps(values)
