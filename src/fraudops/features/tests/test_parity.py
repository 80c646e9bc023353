"""Parity, proven: the online engine returns exactly the offline values, for every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from fraudops.events import (
    EventStore,
    SimulationConfig,
    TenantProfile,
    simulate,
    write_simulation,
)
from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    HourOfDay,
    IsNight,
    IsWeekend,
    MemoryStore,
    OnlineEngine,
    Op,
    Ratio,
    RedisStore,
    SQLiteStore,
    StateStore,
    ZScore,
    after_delay,
    as_known,
    check_parity,
    days,
    hours,
    replay_stream,
    values_agree,
)

CARD = Entity("card", ("card_id",))
TERMINAL = Entity("terminal", ("terminal_id",))
EMAIL = Entity("email", ("email",))
DEVICE = Entity("device", ("device_id",))

#: Every operation, plain, lagged and exclude-current windows, both label modes, transforms.
ALL_OPS = FeatureSet("all_ops", groups=[
    FeatureGroup(CARD, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7)]),
        Aggregation("amount", Op.SUM, windows=[days(1), days(7)]),
        Aggregation("amount", Op.MEAN, windows=[days(1), days(30)]),
        Aggregation("amount", Op.MIN, windows=[days(7)]),
        Aggregation("amount", Op.MAX, windows=[days(7)], exclude_current=True),
        Aggregation("amount", Op.STD, windows=[days(7), days(30)]),
        Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(1), days(7)]),
        Aggregation("amount", Op.LAST, windows=[days(7)], exclude_current=True),
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(30)]),
        Aggregation(None, Op.COUNT, windows=[days(7).lagged(days(7))]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)], labels=as_known()),
    ]),
    FeatureGroup(TERMINAL, [
        Aggregation(None, Op.COUNT, windows=[days(1).lagged(days(7)), days(7).lagged(days(7))]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1), days(7), days(30)],
                    labels=after_delay(days(7))),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)], labels=as_known()),
    ]),
    FeatureGroup(EMAIL, [Aggregation("card_id", Op.COUNT_DISTINCT, windows=[days(30)])]),
    FeatureGroup(DEVICE, [Aggregation("card_id", Op.COUNT_DISTINCT, windows=[days(7)]),
                          Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)],
                                      labels=after_delay(days(2)))]),
], transforms=[
    Column("amount", name="amount_value"), IsWeekend(), IsNight(), HourOfDay(),
    Ratio("amount", "amount_mean_30d_by_card", name="amount_to_card_mean"),
    ZScore("amount", "amount_mean_30d_by_card", "amount_std_30d_by_card", name="amount_z"),
])


@pytest.fixture(scope="module")
def event_store(tmp_path_factory: pytest.TempPathFactory) -> EventStore:
    """35 simulated days, two tenants, drift, late labels: the acceptance's 30 days and more."""
    config = SimulationConfig(n_days=35, seed=7, tenants=(
        TenantProfile(name="acme", n_customers=120, n_terminals=240),
        TenantProfile(name="globex", n_customers=80, n_terminals=160,
                      compromised_terminals_per_day=1.0, compromised_customers_per_day=1.0)))
    store = EventStore(tmp_path_factory.mktemp("events"))
    write_simulation(simulate(config), store, "sim")
    return store


def _redis_or_skip() -> RedisStore:
    store = RedisStore(prefix=f"fraudops:test:{uuid.uuid4().hex}:")
    try:
        store.get_many(["probe"])
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
    return store


@pytest.fixture(params=["memory", "sqlite", "redis"])
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        store: StateStore = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "state.sqlite")
    else:
        store = _redis_or_skip()
    yield store
    if isinstance(store, RedisStore):
        store.clear()
    store.close()


def test_online_equals_offline_for_every_feature_and_event(event_store: EventStore,
                                                           state_store: StateStore) -> None:
    report = check_parity(event_store, ALL_OPS, lambda: OnlineEngine(ALL_OPS, state_store))
    failures = [(f.name, f.mismatches, f.missing_online, f.extra_online, f.examples[:2])
                for f in report.features if not f.ok]
    assert not failures
    assert report.ok
    assert report.transactions > 8_000
    assert {f.name for f in report.features} == set(ALL_OPS.names)


def test_label_aware_features_see_fraud(event_store: EventStore) -> None:
    """Parity of all-zero label features would prove nothing: they must be non-trivial."""
    from fraudops.features import OfflineEngine

    table = OfflineEngine(event_store).backfill(ALL_OPS)
    for name in ("fraud_ratio_7d_delay7d_by_terminal", "fraud_count_30d_by_card",
                 "fraud_ratio_7d_by_terminal"):
        assert max(v or 0.0 for v in table.column(name).to_pylist()) > 0, name


def test_parity_detects_a_wrong_online_value(event_store: EventStore) -> None:
    class Skewed:
        def __init__(self) -> None:
            self.engine = OnlineEngine(ALL_OPS, MemoryStore())

        def label_one(self, label: dict[str, object]) -> None:
            self.engine.label_one(label)

        def process_one(self, event: dict[str, object]) -> dict[str, float | None]:
            vector = self.engine.process_one(event)
            if event["event_id"].endswith("7"):  # type: ignore[union-attr]
                vector["count_1d_by_card"] = (vector["count_1d_by_card"] or 0.0) + 1.0
            vector.pop("is_night")
            vector["surprise"] = 1.0
            return vector

    report = check_parity(event_store, ALL_OPS, Skewed, tenants=["globex"])
    by_name = {f.name: f for f in report.features}
    assert not report.ok
    assert by_name["count_1d_by_card"].mismatches > 0
    assert by_name["count_1d_by_card"].max_abs_diff == 1.0
    assert by_name["amount_sum_1d_by_card"].ok
    assert report.missing_features == ["is_night"]
    assert report.extra_features == ["surprise"]


def test_parity_of_the_first_days_only(event_store: EventStore) -> None:
    from datetime import UTC, datetime

    end = datetime(2018, 4, 11, tzinfo=UTC)
    report = check_parity(event_store, ALL_OPS, lambda: OnlineEngine(ALL_OPS, MemoryStore()),
                          end=end)
    assert report.ok
    assert 0 < report.transactions < 4_000


def test_values_agree_rule() -> None:
    assert values_agree(None, None)
    assert values_agree(1.0, 1.0 + 1e-12)
    assert values_agree(0.0, 1e-13)
    assert not values_agree(1.0, 1.0 + 1e-6)
    assert not values_agree(None, 0.0)
    assert not values_agree(0.0, None)


def test_replay_puts_labels_before_transactions_at_equal_times() -> None:
    from datetime import UTC, datetime

    at = datetime(2020, 1, 1, tzinfo=UTC)
    transactions = pa.table({"event_id": ["b", "a"], "event_time": [at, at], "tenant": ["t", "t"]})
    labels = pa.table({"event_id": ["x"], "label_time": [at], "tenant": ["t"]})
    order = [(kind, row["event_id"]) for kind, row in replay_stream(transactions, labels)]
    assert order == [("label", "x"), ("event", "a"), ("event", "b")]


def test_replay_delivers_a_label_no_earlier_than_its_transaction() -> None:
    from datetime import UTC, datetime, timedelta

    at = datetime(2020, 1, 1, tzinfo=UTC)
    transactions = pa.table({"event_id": ["a", "b"], "event_time": [at, at + timedelta(hours=1)],
                             "tenant": ["t", "t"]})
    labels = pa.table({"event_id": ["b", "a"], "label_time": [at, at], "tenant": ["t", "t"]})
    order = [(kind, row["event_id"]) for kind, row in replay_stream(transactions, labels)]
    assert order == [("event", "a"), ("label", "a"), ("event", "b"), ("label", "b")]


def test_parity_holds_for_labels_at_or_before_their_transaction(tmp_path: Path) -> None:
    """Labels stamped at the transaction's own time (or earlier: bad data) count from then."""
    from datetime import UTC, datetime, timedelta

    from fraudops.events import UTC_TIME

    start = datetime(2020, 1, 1, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in range(12)]
    ids = [f"e{h:02d}" for h in range(12)]
    store = EventStore(tmp_path)
    store.append_transactions(pa.table({
        "event_id": ids, "event_time": pa.array(times, UTC_TIME), "tenant": ["t"] * 12,
        "amount_cents": [100] * 12, "card_id": ["c"] * 12, "terminal_id": ["T"] * 12}), batch_id="b")
    store.append_labels(pa.table({
        "event_id": ids[:6], "tenant": ["t"] * 6, "is_fraud": [True] * 6,
        "label_time": pa.array([times[0], times[1] - timedelta(hours=2), times[2], times[5],
                                times[4], times[9]], UTC_TIME)}), batch_id="b")
    report = check_parity(store, ALL_OPS, lambda: OnlineEngine(ALL_OPS, MemoryStore()))
    assert report.ok, [f for f in report.features if not f.ok]
