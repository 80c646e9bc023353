"""Micro-batches: requests that arrive together are decided together, each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest

from fraudops.core import InputError, StoreError
from fraudops.serving import create_app
from fraudops.serving._batcher import MicroBatcher

from .conftest import Served, World, first_events
from .test_api import _auth, _json


def _recording(batches: list[list[Any]], fail: type[Exception] | None = None) -> Any:
    def decide_many(events: Sequence[Mapping[str, Any]], explain: Sequence[bool]) -> list[Any]:
        batches.append([e["n"] for e in events])
        if fail is not None:
            raise fail("the store is down")
        return [InputError(f"bad {e['n']}") if e["n"] < 0 else (e["n"], x)
                for e, x in zip(events, explain, strict=True)]
    return decide_many


def _run(batcher: MicroBatcher, numbers: list[int]) -> list[Any]:
    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.decide({"n": n}, n % 2 == 0) for n in numbers),
                                    return_exceptions=True)
    return asyncio.run(main())


def test_calls_of_one_loop_turn_are_one_batch_in_order() -> None:
    batches: list[list[Any]] = []
    got = _run(MicroBatcher(_recording(batches)), [1, 2, -3, 4])
    assert batches == [[1, 2, -3, 4]]
    assert got[0] == (1, False)
    assert got[1] == (2, True)
    assert isinstance(got[2], InputError)   # an error reaches its own caller only
    assert str(got[2]) == "bad -3"
    assert got[3] == (4, True)


def test_a_batch_is_cut_at_its_maximum_size() -> None:
    batches: list[list[Any]] = []
    got = _run(MicroBatcher(_recording(batches), max_size=3), list(range(7)))
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert [g[0] for g in got] == list(range(7))


def test_a_failed_batch_fails_every_caller_of_that_batch() -> None:
    batches: list[list[Any]] = []
    got = _run(MicroBatcher(_recording(batches, fail=StoreError)), [1, 2])
    assert all(isinstance(g, StoreError) for g in got)


def test_calls_of_later_turns_are_later_batches() -> None:
    batches: list[list[Any]] = []
    batcher = MicroBatcher(_recording(batches))

    async def main() -> None:
        for n in range(3):
            await batcher.decide({"n": n})
    asyncio.run(main())
    assert batches == [[0], [1], [2]]
    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(_recording(batches), max_size=0)


def test_a_batch_left_by_a_stopped_loop_does_not_block_the_next_loop() -> None:
    batches: list[list[Any]] = []
    batcher = MicroBatcher(_recording(batches))
    loop = asyncio.new_event_loop()
    task = loop.create_task(batcher.decide({"n": 1}))
    loop.call_soon(loop.stop)   # the task queues its event, then the loop stops before the
    loop.run_forever()          # flush's turn...
    task.cancel()
    loop.close()                # ...which never comes: the loop is gone
    assert asyncio.run(asyncio.wait_for(batcher.decide({"n": 2}), 5)) == (2, False)
    assert batches == [[2]]


def test_concurrent_requests_are_decided_together_and_answered_each(
        world: World, served: Served) -> None:
    events = [_json(e) for e in first_events(world, 40)]
    events[7]["amount_cents"] = "lots"   # refused by validation before any batch
    events[9]["event_time"] = "2199-01-01T00:00:00Z"   # refused by the engine, inside a batch

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(served.runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/v1/score", json=e,
                                                      headers=_auth(served.tenant_key))
                                          for e in events))

    answers = asyncio.run(main())
    assert [a.status_code for a in answers] == [422 if i in (7, 9) else 200 for i in range(40)]
    assert "ahead of this server's clock" in answers[9].text
    for event, answer in zip(events, answers, strict=True):
        if answer.status_code == 200:
            assert answer.json()["event_id"] == event["event_id"]
            assert served.runtime.log.get("acme", event["event_id"]) is not None
    assert served.runtime.log.count() == 38
    sizes = served.runtime.metrics.batch_size.collect()[0].samples
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    total = next(s.value for s in sizes if s.name.endswith("_sum"))
    assert total == 39
    assert count < 39   # at least one batch held several requests
