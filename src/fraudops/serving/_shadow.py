"""Shadow scoring off the request path.

Shadows score the event after the live answer is decided, on a thread of their own with a
bounded queue: a shadow that raises is logged with its error, a slow one fills the queue and
its jobs are dropped (counted), and neither delays or changes an answer. Their scores are
written to the decision log in batches (a killed server may lose the last batch of shadow
scores, never a decision).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ._metrics import ShadowMetrics
from ._model_pool import LoadedModel
from ._records import ShadowScore


class ShadowSink(Protocol):
    def record_shadows(self, scores: Sequence[ShadowScore]) -> None: ...


#: the longest pause between two polls of an idle shadow thread, in seconds
IDLE_POLL_S = 0.2
#: how often a shadow thread that steps aside looks again whether the decision is done, and
#: the longest it steps aside before scoring one job anyway (so shadows progress under any
#: load), in seconds
ASIDE_POLL_S = 0.0002
MAX_ASIDE_S = 0.002


@dataclass(frozen=True)
class ShadowJob:
    tenant: str
    event_id: str
    features: Mapping[str, Any]
    models: tuple[LoadedModel, ...]


class Shadows(Protocol):
    """What the engine needs of a shadow scorer: a thread (:class:`ShadowRunner`) or a process
    of its own (:class:`~fraudops.serving._shadow_process.ShadowProcess`)."""

    def submit_many(self, jobs: Sequence[ShadowJob]) -> int:
        """Queue the jobs without blocking; how many were queued (the others are dropped)."""
        ...

    def deciding(self) -> AbstractContextManager[None]:
        """Around a decision: shadows that share its interpreter keep off it meanwhile."""
        ...

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is scored and logged."""
        ...

    def close(self, timeout: float = 10.0) -> None:
        """Score and log what is queued, then stop."""
        ...


class ShadowRunner:
    """A daemon thread that scores queued :class:`ShadowJob` s and logs them in batches.

    ``submit`` never blocks and never wakes the thread: it appends to a bounded deque that the
    thread empties every ``poll_s`` (a wake-up per job, through a ``queue.Queue``, cost about
    a sixth of a worker's CPU in GIL hand-offs at 500 decisions a second; a wake-up every
    5 ms, 2.6 % of a core per idle worker on a slow VM). No one waits for a shadow score, so
    20 ms is short enough; with nothing queued the poll slows down, doubling up to 0.2 s.
    When ``max_queue`` jobs wait, the job is dropped and counted.

    Scores are committed in batches of ``batch_size`` or every ``flush_every_s``: small
    enough that a batch holds a SQLite log's write lock for a fraction of a millisecond
    (decisions wait for it), large enough to cost one commit per tens of scores.

    The thread steps aside while a decision runs (:meth:`deciding`): it checks between two jobs
    and waits for the decision to end, for at most ``MAX_ASIDE_S``. Otherwise each time the
    deciding thread let go of the GIL (every SQLite or Redis call) the shadow thread could take
    it, and the decision waited up to a switch interval to get it back: in process, the shadow
    raised a decision's p99 by about half. Once a tenth of ``max_queue`` is waiting, it stops
    stepping aside until the backlog is below that again: under a load that keeps decisions
    always in progress, shadows then keep their share of the interpreter instead of being
    dropped.
    """

    def __init__(self, sink: ShadowSink | None, *, metrics: ShadowMetrics | None = None,
                 max_queue: int = 10_000, batch_size: int = 16, flush_every_s: float = 0.02,
                 poll_s: float = 0.02,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self._sink = sink
        self._metrics = metrics
        self._jobs: deque[ShadowJob] = deque()
        self._max_queue = max_queue
        self._backlog = max(1, max_queue // 10)   # beyond it, no stepping aside
        self._batch_size = batch_size
        self._flush_every_s = flush_every_s
        self._poll_s = poll_s
        self._on_error = on_error
        self.dropped = 0
        self.scored = 0
        self._idle = threading.Event()
        self._idle.set()
        self._flush_now = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()   # drain() and close() do not wait for the next poll
        self._deciding = 0               # decisions in progress (see deciding())
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fraudops-shadows", daemon=True)
        self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue a job; False (and counted) when the queue is full."""
        if len(self._jobs) >= self._max_queue:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.shadow_dropped.inc()
            return False
        self._jobs.append(job)
        return True

    def submit_many(self, jobs: Sequence[ShadowJob]) -> int:
        return sum(map(self.submit, jobs))

    def deciding(self) -> _Deciding:
        """``with runner.deciding():`` around a decision: shadows wait until it is done."""
        return _Deciding(self)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is scored and logged (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        self._flush_now.set()
        self._wake.set()
        while time.monotonic() < deadline:
            if self._jobs:   # a poll, not a spin: a spinning caller held the GIL from the thread
                time.sleep(0.002)
            elif self._idle.wait(0.01) and not self._jobs:
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued, log it, stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[ShadowScore] = []
        first = 0.0
        poll = self._poll_s
        while True:
            self._wake.wait(poll)
            self._wake.clear()
            stopping = self._stop.is_set()
            poll = self._poll_s if self._jobs or pending else min(poll * 2, IDLE_POLL_S)
            while self._jobs:
                self._idle.clear()   # before the pop: drain() must not see an empty deque idle
                if not stopping:
                    self._step_aside()
                job = self._jobs.popleft()
                if not pending:
                    first = time.monotonic()
                pending.extend(self._score(job))
                if len(pending) >= self._batch_size:
                    self._flush(pending)
                    pending = []
            if pending and (stopping or self._flush_now.is_set()
                            or time.monotonic() - first >= self._flush_every_s):
                self._flush(pending)
                pending = []
            if not pending:
                self._flush_now.clear()
                self._idle.set()
            if stopping:
                return

    def _step_aside(self) -> None:
        """Wait while a decision runs and the backlog is short, at most ``MAX_ASIDE_S``."""
        until = time.monotonic() + MAX_ASIDE_S
        while self._deciding and len(self._jobs) < self._backlog and time.monotonic() < until:
            time.sleep(ASIDE_POLL_S)

    def _score(self, job: ShadowJob) -> list[ShadowScore]:
        out = []
        for loaded in job.models:
            start = time.perf_counter_ns()
            name = str(loaded.ref)
            try:
                p = loaded.model.predict_one(loaded.model.vector(job.features))
                latency = (time.perf_counter_ns() - start) // 1000
                out.append(ShadowScore(job.tenant, job.event_id, loaded.ref.name,
                                       loaded.ref.version, datetime.now(UTC), p,
                                       loaded.policy.score(p), loaded.policy.action(p), latency))
            except Exception as e:   # a shadow must never take the server down
                latency = (time.perf_counter_ns() - start) // 1000
                out.append(ShadowScore(job.tenant, job.event_id, loaded.ref.name,
                                       loaded.ref.version, datetime.now(UTC), None, None, None,
                                       latency, error=f"{type(e).__name__}: {e}"[:500]))
                if self._metrics is not None:
                    self._metrics.shadow_errors.labels(name).inc()
            if self._metrics is not None:
                self._metrics.shadow_latency.labels(name).observe(latency / 1e6)
        self.scored += len(out)
        return out

    def _flush(self, pending: list[ShadowScore]) -> None:
        if not pending or self._sink is None:
            return
        try:
            self._sink.record_shadows(pending)
        except Exception as e:   # the log being down must not kill the shadow thread
            if self._on_error is not None:
                self._on_error(e)


class _Deciding:
    """The context of :meth:`ShadowRunner.deciding` (a class: cheaper than a generator)."""

    __slots__ = ("_runner",)

    def __init__(self, runner: ShadowRunner) -> None:
        self._runner = runner

    def __enter__(self) -> None:
        runner = self._runner
        with runner._count_lock:
            runner._deciding += 1

    def __exit__(self, *_: object) -> None:
        runner = self._runner
        with runner._count_lock:
            runner._deciding -= 1
