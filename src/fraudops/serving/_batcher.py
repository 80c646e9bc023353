"""Micro-batches: the scoring requests that reach a server process together, decided together.

A decision's fixed costs (the retry read of the log, the feature state's read and commit, the
log commit, and with several workers the wait for the state's write lock) are paid once per
batch. Requests arriving while a worker is busy wait in its socket buffers; the next turn of
the event loop reads them all and decides them in one batch, so a worker that falls behind
catches up faster instead of queueing. At light load every batch holds one request and nothing
waits: there is no timer, only the current turn of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._engine import ScoreResult

DecideMany = Callable[[Sequence[Mapping[str, Any]], Sequence[bool]],
                      Sequence[ScoreResult | Exception]]


class MicroBatcher:
    """Collects :meth:`decide` calls made during one turn of the event loop and runs them
    through ``decide_many`` at the start of the next, in arrival order (at most ``max_size``
    at a time). Each caller gets its own result or error; an error of the whole batch (a store
    that does not answer) goes to every caller of the batch.
    """

    def __init__(self, decide_many: DecideMany, max_size: int = 32) -> None:
        if max_size < 1:
            raise ValueError(f"The 'max_size' parameter of MicroBatcher must be >= 1; got {max_size!r}")
        self.decide_many = decide_many
        self.max_size = max_size
        self._events: list[Mapping[str, Any]] = []
        self._explain: list[bool] = []
        self._waiting: list[asyncio.Future[ScoreResult]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def decide(self, event: Mapping[str, Any], explain: bool = False) -> ScoreResult:
        loop = asyncio.get_running_loop()
        if self._waiting and self._loop is not loop:
            # a batch left by a loop that stopped before its turn came (its callers are gone,
            # nothing of it was decided): without this, no flush would ever be scheduled again
            self._events, self._explain, self._waiting = [], [], []
        waiting: asyncio.Future[ScoreResult] = loop.create_future()
        if not self._waiting:
            self._loop = loop
            loop.call_soon(self._flush)
        self._events.append(event)
        self._explain.append(explain)
        self._waiting.append(waiting)
        if len(self._waiting) >= self.max_size:
            self._flush()
        return await waiting

    def _flush(self) -> None:
        events, explain, waiting = self._events, self._explain, self._waiting
        if not waiting:
            return   # flushed at max_size already; this was its scheduled call
        self._events, self._explain, self._waiting = [], [], []
        try:
            results = self.decide_many(events, explain)
        except Exception as exc:   # the whole batch failed: each caller answers with it
            for future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(waiting, results, strict=True):
            if future.done():   # the caller went away
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
