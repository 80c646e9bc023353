"""Shadow scoring off the request path.

Shadows score the event after the live answer is decided, on a thread of their own with a
bounded queue: a shadow that raises is logged with its error, a slow one fills the queue and
its jobs are dropped (counted), and neither delays or changes an answer. Their scores are
written to the decision log in batches (a killed server may lose the last batch of shadow
scores, never a decision).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ._metrics import ServingMetrics
from ._model_pool import LoadedModel
from ._records import ShadowScore


class ShadowSink(Protocol):
    def record_shadows(self, scores: Sequence[ShadowScore]) -> None: ...


@dataclass(frozen=True)
class ShadowJob:
    tenant: str
    event_id: str
    features: Mapping[str, Any]
    models: tuple[LoadedModel, ...]


class ShadowRunner:
    """A daemon thread that scores queued :class:`ShadowJob` s and logs them in batches.

    ``submit`` never blocks: when ``max_queue`` jobs wait, the job is dropped and counted.
    """

    def __init__(self, sink: ShadowSink | None, *, metrics: ServingMetrics | None = None,
                 max_queue: int = 10_000, batch_size: int = 256, flush_every_s: float = 0.2,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self._sink = sink
        self._metrics = metrics
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._flush_every_s = flush_every_s
        self._on_error = on_error
        self.dropped = 0
        self.scored = 0
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="fraudops-shadows", daemon=True)
        self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue a job; False (and counted) when the queue is full."""
        try:
            self._idle.clear()
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.shadow_dropped.inc()
            return False

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is scored and logged (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.01):
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued, log it, stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[ShadowScore] = []
        last_flush = time.monotonic()
        while True:
            try:
                job = self._queue.get(timeout=self._flush_every_s)
            except queue.Empty:
                job = _NOTHING
            if job is None:
                self._flush(pending)
                self._idle.set()
                return
            if job is not _NOTHING:
                pending.extend(self._score(job))
            due = time.monotonic() - last_flush >= self._flush_every_s
            if pending and (len(pending) >= self._batch_size or due or self._queue.empty()):
                self._flush(pending)
                pending = []
                last_flush = time.monotonic()
            if self._queue.empty() and not pending:
                self._idle.set()

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


_NOTHING: Any = ShadowJob("", "", {}, ())
