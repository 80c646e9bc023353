"""The state stores keep the one contract the online engine relies on, on real back ends.

Redis tests use the server at 127.0.0.1:6379 with a unique key prefix per test and delete
their keys afterwards; they are skipped (with the reason) only when Redis is unreachable.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
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
