"""The state stores keep the one contract the online engine relies on, on real back ends.

Redis tests use the server at 127.0.0.1:6379 with a unique key prefix per test and delete
their keys afterwards; they are skipped (with the reason) only when Redis is unreachable.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fraudops.core import StoreError, StoreTimeout
from fraudops.features import (
    Aggregation,
    Entity,
    EntityState,
    FeatureGroup,
    FeatureSet,
    MemoryStore,
    OnlineEngine,
    Op,
    RedisStore,
    SQLiteStore,
    StoreSettings,
    as_known,
    days,
)

from ._redis import REDIS_URL, needs_redis

FAST = StoreSettings(sqlite_timeout=0.2, redis_socket_timeout=0.5, redis_connect_timeout=0.2)


StoreFactory = Callable[[], Any]


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Open stores of one kind; each call opens another client on the same data."""
    opened: list[Any] = []
    memory = MemoryStore()

    def make() -> Any:
        if request.param == "memory":
            store: Any = memory
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "state.db", settings=FAST)
        else:
            store = RedisStore(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"),
                               settings=FAST)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_absent_keys_read_as_none(make_store: StoreFactory) -> None:
    store = make_store()
    store.put_many({"a": b"1"})
    assert store.get_many(["x", "a", "x"]) == [None, b"1", None]


def test_put_none_deletes(make_store: StoreFactory) -> None:
    store = make_store()
    store.put_many({"a": b"1", "b": b"2"})
    store.put_many({"a": None, "b": b"3"})
    assert store.get_many(["a", "b"]) == [None, b"3"]


def test_update_writes_and_returns_the_result(make_store: StoreFactory) -> None:
    store = make_store()
    store.put_many({"a": b"1"})
    result = store.update(["a", "b"], lambda values: ({"a": None, "b": b"x", "c": b"y"},
                                                      values))
    assert result == [b"1", None]
    assert store.get_many(["a", "b", "c"]) == [None, b"x", b"y"]


def test_failing_update_writes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    store.put_many({"a": b"1"})

    def fail(values: list[bytes | None]) -> tuple[dict[str, bytes | None], None]:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        store.update(["a"], fail)
    assert store.get_many(["a"]) == [b"1"]
    store.update(["a"], lambda values: ({"a": b"2"}, None))  # the store is still usable
    assert store.get_many(["a"]) == [b"2"]


def test_store_is_a_context_manager(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.put_many({"k": b"v"})
    with pytest.raises(StoreError, match="closed"):
        store.get_many(["k"])


def _increment(store: Any, key: str, times: int) -> None:
    for _ in range(times):
        store.update([key], lambda values: ({key: str(int(values[0] or 0) + 1).encode()},
                                            None))


def test_concurrent_updates_of_one_key_are_not_lost(make_store: StoreFactory) -> None:
    """Two clients (threads, each its own connection) read-modify-write the same key."""
    stores = [make_store(), make_store()]
    threads = [threading.Thread(target=_increment, args=(s, "n", 150)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].get_many(["n"]) == [b"300"]


def _sqlite_increments(path: str, times: int) -> None:
    with SQLiteStore(path) as store:
        _increment(store, "n", times)


def test_sqlite_updates_from_two_processes_are_not_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    SQLiteStore(path).close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_sqlite_increments, args=(path, 100)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    with SQLiteStore(path) as store:
        assert store.get_many(["n"]) == [b"200"]


def test_update_recomputes_when_another_client_wrote_meanwhile(make_store: StoreFactory,
                                                                request: pytest.FixtureRequest
                                                                ) -> None:
    """SQLite and Redis run ``modify`` on a plain read; a key changed before the commit makes
    it run again on the new value, so the other writer's change is kept."""
    if "memory" in request.node.name:
        pytest.skip("the memory store holds its lock while modify runs")
    store, other = make_store(), make_store()
    store.put_many({"n": b"1"})
    seen: list[bytes | None] = []

    def add_one(values: list[bytes | None]) -> tuple[dict[str, bytes | None], int]:
        seen.append(values[0])
        if len(seen) == 1:   # another process increments between our read and our commit
            other.put_many({"n": b"10"})
        total = int(values[0] or 0) + 1
        return {"n": str(total).encode()}, total

    assert store.update(["n"], add_one) == 11
    assert seen == [b"1", b"10"]
    assert other.get_many(["n"]) == [b"11"]


def test_sqlite_lock_held_too_long_is_a_store_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path, settings=StoreSettings(sqlite_timeout=0.05))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreTimeout, match="locked by another process"):
            store.update(["a"], lambda values: ({"a": b"1"}, None))
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()


# -- the engine over several processes / replicas ------------------------------------------
def _engine_features() -> FeatureSet:
    card = Entity("card", keys=("card_id",))
    terminal = Entity("terminal", keys=("terminal_id",))
    return FeatureSet("concurrency", groups=[
        FeatureGroup(card, [Aggregation(None, Op.COUNT, windows=[days(1)]),
                            Aggregation("amount", Op.SUM, windows=[days(7)])]),
        FeatureGroup(terminal, [Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)],
                                            labels=as_known())]),
    ])


def _events(n: int) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i:04d}", "event_time": 1_000_000_000 * (i + 1), "tenant": "t",
             "amount_cents": 100 + i, "card_id": f"K{i % 3}", "terminal_id": f"T{i % 5}"}
            for i in range(n)]


def _process(store: Any, events: list[dict[str, Any]]) -> None:
    engine = OnlineEngine(_engine_features(), store, max_lateness=timedelta(days=365))
    for event in events:
        engine.process_one(event)


def _process_sqlite(path: str, events: list[dict[str, Any]]) -> None:
    with SQLiteStore(path) as store:
        _process(store, events)


def _final_state(store: Any, keys: list[str]) -> dict[str, Any]:
    """Every key's value, entity states decoded (their label dicts compare unordered)."""
    columns = {"card": 1, "terminal": 0}
    out: dict[str, Any] = {}
    for key, data in zip(keys, store.get_many(keys), strict=True):
        entity = key.split("|")[2] if "|s|" in key else None
        out[key] = data if entity is None else EntityState.decode(data, columns[entity])
    return out


@pytest.mark.parametrize("split", ["disjoint", "overlapping"])
def test_sqlite_engine_in_two_processes_ends_as_one(tmp_path: Path, split: str) -> None:
    """Two processes share one SQLite file; the final state is that of one process."""
    events = _events(120)
    halves = ([events[0::2], events[1::2]] if split == "disjoint"
              else [events[:80], events[40:]])
    path = str(tmp_path / "state.db")
    SQLiteStore(path).close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_process_sqlite, args=(path, half)) for half in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    alone = MemoryStore()
    _process(alone, events)
    with SQLiteStore(path) as shared:
        assert sorted(shared.stored_keys()) == sorted(alone.stored_keys())
        assert _final_state(shared, alone.stored_keys()) == _final_state(alone, alone.stored_keys())


@needs_redis
def test_redis_replicas_scoring_the_same_card_lose_no_event(redis_prefix: str) -> None:
    """Two replicas (threads with their own client) process disjoint events of few cards."""
    events = _events(160)
    stores = [RedisStore(REDIS_URL, prefix=redis_prefix, settings=FAST) for _ in range(2)]
    threads = [threading.Thread(target=_process, args=(store, events[i::2]))
               for i, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine = OnlineEngine(_engine_features(), stores[0], max_lateness=timedelta(days=365))
    held = [engine.read_state("card", "t", [f"K{k}"]) for k in range(3)]
    assert sorted(i for state in held if state for i in state.ids) == [e["event_id"]
                                                                      for e in events]
    for store in stores:
        store.close()


def test_redis_unreachable_is_a_store_error_naming_the_url() -> None:
    with RedisStore("redis://127.0.0.1:1/0", settings=FAST) as store, \
            pytest.raises(StoreError, match=r"Redis unreachable at redis://127\.0\.0\.1:1/0"):
        store.get_many(["k"])


def test_redis_error_hides_the_password() -> None:
    with RedisStore("redis://user:secret@127.0.0.1:1/0", settings=FAST) as store, \
            pytest.raises(StoreError) as caught:
        store.update(["k"], lambda values: ({}, None))
    assert "secret" not in str(caught.value)
    assert "user:***@127.0.0.1:1" in str(caught.value)


# -- idle keys expire -------------------------------------------------------------------------
class _Clock:
    """A clock the test moves (Redis keeps its own: there the test sleeps)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def expiring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Callable[[float], None]]]:
    """A store and ``advance(seconds)``, which moves its clock on."""
    clock = _Clock()

    def advance(seconds: float) -> None:
        if request.param == "redis":
            time.sleep(seconds)
        clock.now += seconds

    if request.param == "memory":
        store: Any = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "state.db", settings=FAST, clock=clock)
    else:
        store = RedisStore(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"), settings=FAST)
    yield store, advance
    store.close()


def test_a_key_not_written_for_its_ttl_is_gone(expiring: tuple[Any, Callable[[float], None]]) -> None:
    store, advance = expiring
    store.put_many({"a": b"1", "b": b"2"}, ttl_ms=300)
    store.put_many({"forever": b"3"})
    advance(0.15)
    store.update(["b"], lambda values: ({"b": values[0] + b"!"}, None), ttl_ms=300)  # refreshed
    assert store.get_many(["a", "b", "forever"]) == [b"1", b"2!", b"3"]
    advance(0.25)
    assert store.get_many(["a", "b", "forever"]) == [None, b"2!", b"3"]
    # an expired key reads as absent inside a read-modify-write too
    assert store.update(["a"], lambda values: ({}, values)) == [None]
    advance(0.2)
    assert store.get_many(["a", "b", "forever"]) == [None, None, b"3"]


def test_a_write_without_ttl_keeps_the_key_again(expiring: tuple[Any, Callable[[float], None]]) -> None:
    store, advance = expiring
    store.put_many({"a": b"1"}, ttl_ms=100)
    store.put_many({"a": b"2"})
    advance(0.2)
    assert store.get_many(["a"]) == [b"2"]


def test_memory_store_reclaims_expired_keys_as_it_writes() -> None:
    clock = _Clock()
    store = MemoryStore(clock=clock)
    store.put_many({f"k{i}": b"x" for i in range(1000)}, ttl_ms=1000)
    clock.now += 2
    store.put_many({"new": b"y"}, ttl_ms=1000)
    assert store._data.keys() == {"new"}
    assert store._deadlines.keys() == {"new"}
    assert len(store) == 1


def _rows(path: Path) -> dict[str, int | None]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, expires_ms FROM entity_state"))


def test_sqlite_sweep_deletes_only_expired_keys(tmp_path: Path) -> None:
    clock = _Clock()
    with SQLiteStore(tmp_path / "state.db", settings=FAST, clock=clock) as store:
        store.put_many({f"old{i:04d}": b"x" for i in range(2500)}, ttl_ms=1000)
        store.put_many({"forever": b"y"})
        clock.now += 0.5
        store.put_many({"young": b"z"}, ttl_ms=1000)
        clock.now += 0.7
        assert len(_rows(tmp_path / "state.db")) == 2502   # expired, not yet reclaimed
        assert store.sweep(page=1000) == 2500               # over three pages
        assert sorted(_rows(tmp_path / "state.db")) == ["forever", "young"]
        assert store.sweep() == 0


def test_sqlite_store_sweeps_in_the_background(tmp_path: Path) -> None:
    clock = _Clock()
    settings = StoreSettings(sqlite_timeout=0.2, sqlite_sweep_interval=0.05)
    with SQLiteStore(tmp_path / "state.db", settings=settings, clock=clock) as store:
        store.put_many({"a": b"1", "b": b"2"}, ttl_ms=1000)
        clock.now += 2
        deadline = time.monotonic() + 10
        while _rows(tmp_path / "state.db") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _rows(tmp_path / "state.db") == {}


def test_sqlite_state_of_an_older_version_gains_expiry(tmp_path: Path) -> None:
    """A file written before keys could expire keeps its keys, which never expire."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE entity_state (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
                   " WITHOUT ROWID")
        db.execute("INSERT INTO entity_state VALUES ('old', x'31')")
    clock = _Clock()
    with SQLiteStore(path, settings=FAST, clock=clock) as store:
        store.put_many({"new": b"2"}, ttl_ms=1000)
        clock.now += 2
        assert store.get_many(["old", "new"]) == [b"1", None]
        assert store.sweep() == 1


@needs_redis
def test_redis_keys_carry_their_ttl(redis_prefix: str) -> None:
    import redis

    with RedisStore(REDIS_URL, prefix=redis_prefix, settings=FAST) as store:
        store.update([], lambda values: ({"a": b"1"}, None), ttl_ms=60_000)
        store.put_many({"b": b"2"}, ttl_ms=60_000)
        store.put_many({"c": b"3"})
        client = redis.Redis.from_url(REDIS_URL)
        assert 59_000 < client.pttl(redis_prefix + "a") <= 60_000
        assert 59_000 < client.pttl(redis_prefix + "b") <= 60_000
        assert client.pttl(redis_prefix + "c") == -1   # no TTL


def _one_card() -> FeatureSet:
    card = Entity("card", keys=("card_id",))
    return FeatureSet("idle", groups=[FeatureGroup(card, [
        Aggregation(None, Op.COUNT, windows=[days(1)]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(2)], labels=as_known())])])


def test_engine_state_of_an_idle_entity_expires_without_changing_features() -> None:
    """The default TTL is the longest horizon + lateness: an entity idle that long (on the
    store's clock, which live event times follow) has nothing left in any window."""
    clock = _Clock()
    store = MemoryStore(clock=clock)
    engine = OnlineEngine(_one_card(), store, max_lateness=timedelta(hours=1))
    assert engine.idle_ttl == timedelta(days=2, hours=1)
    day_us = 86_400 * 10**6
    t0 = int(clock.now * 10**6)

    def event(name: str, card: str, t_us: int) -> dict[str, Any]:
        return {"event_id": name, "event_time": t_us, "tenant": "t", "card_id": card}

    engine.process_one(event("a1", "A", t0))
    engine.process_one(event("b1", "B", t0))
    assert engine.label_one({"tenant": "t", "event_id": "a1", "is_fraud": True,
                             "label_time": t0 + 1}) == 1
    clock.now += 2 * 86_400
    engine.process_one(event("b2", "B", t0 + 2 * day_us))    # B is busy: its TTL starts again
    clock.now += 3_600 + 1
    assert engine.read_state("card", "t", ["A"]) is None     # A idle for 2 days + 1 h: gone
    assert engine.read_state("card", "t", ["B"]) is not None
    # B's state and b2's label index; b1's index went with the last window that could read b1
    assert sorted(key.split("|")[1:3] for key in store.stored_keys()) == [["i", '["t", "b2"]'],
                                                                         ["s", "card"]]
    fresh = OnlineEngine(_one_card(), MemoryStore(), max_lateness=timedelta(hours=1))
    late = event("a2", "A", t0 + 2 * day_us + 3_600 * 10**6 + 1)
    assert engine.process_one(late) == fresh.process_one(late)


def test_engine_refuses_a_ttl_shorter_than_its_horizon() -> None:
    with pytest.raises(ValueError, match=r"idle_ttl.*2 days, 1:00:00"):
        OnlineEngine(_one_card(), MemoryStore(), idle_ttl=timedelta(days=2))
    assert OnlineEngine(_one_card(), MemoryStore(), idle_ttl=None).idle_ttl is None
