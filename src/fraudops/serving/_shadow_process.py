"""Shadow models scored in a process of their own, at the lowest CPU priority.

On a thread (:class:`ShadowRunner` in the server process), a shadow shares the interpreter's
lock with the decisions: each time a decision lets go of it (every SQLite or Redis call, every
socket write) the shadow thread may take it, and the decision waits to get it back. Stepping
aside (``ShadowRunner.deciding``) halves that cost but cannot remove it.

Here the server process only pickles the shadow jobs of a micro-batch and sends them as one
datagram on a non-blocking Unix socket pair (a few µs per decision). A child process scores
them with its own copies of the models and writes the scores to the decision log, through the
same :class:`ShadowRunner` (same scores, batches, metrics and error handling). It runs at
``SCHED_IDLE``: it gets a core only when no decision wants one; under a load that leaves no
core idle its socket fills and the jobs that do not fit are dropped and counted
(``fraudops_shadow_dropped``), as a thread's full queue drops them. It isolates shadow models
(a crash, a heavy model), but it is not free: on 2 cores the third busy process raised the
median p99 at 1,000 req/s by ~1 ms against a shadow thread (docs/serving.md), so
``fraudops serve`` uses it only with ``--shadow-process``.

A child that dies is started again on the next submit, at most once per ``RESTART_EVERY_S``;
its queued jobs are lost (they are shadow scores: never a decision). A child stops when its
server process closes the socket or dies (it reads end-of-file).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from multiprocessing.process import BaseProcess
from typing import Any

from ._metrics import ShadowMetrics
from ._model_pool import LoadedModel, ModelPool
from ._plan import ModelRef
from ._shadow import IDLE_POLL_S, ShadowJob, ShadowRunner, ShadowSink

log = logging.getLogger("fraudops.serving")

#: jobs per datagram (a datagram must fit the socket's send buffer)
JOBS_PER_MESSAGE = 32
#: the send buffer asked for: ~3,000 single-job datagrams wait there while the child is busy
#: (the kernel caps it at ``net.core.wmem_max``; its usual default, 208 KiB, holds ~90)
SEND_BUFFER = 4 << 20
#: the largest datagram the child reads
MAX_MESSAGE = 4 << 20
#: how often the child reads what was sent, in seconds (doubling while nothing comes, up to
#: the shadow thread's idle poll)
POLL_S = 0.02
#: a model that no job named for so long is forgotten by the child, in seconds
FORGET_AFTER_S = 600.0
#: a dead child is started again at most this often, in seconds
RESTART_EVERY_S = 5.0
_DRAIN = b"drain"
_DRAINED = b"drained"
_READY = b"ready"

#: what the child opens at its start: the models, where scores go, the metrics, and what to
#: close at its end (opened by a picklable callable: it crosses into a spawned process)
ShadowParts = tuple[ModelPool, ShadowSink, ShadowMetrics, Callable[[], None]]


class ShadowProcess:
    """Scores shadow jobs in a child process; the :class:`~fraudops.serving._shadow.Shadows`
    of a server whose decisions must not share an interpreter with them.

    ``open_parts`` runs in the child (it must be picklable: a module-level function or a
    ``functools.partial`` of one); ``max_queue`` bounds the child's queue as a thread's.
    """

    def __init__(self, open_parts: Callable[[], ShadowParts], *,
                 metrics: ShadowMetrics | None = None, max_queue: int = 10_000) -> None:
        self._open_parts = open_parts
        self._metrics = metrics
        self._max_queue = max_queue
        self._spawn = multiprocessing.get_context("spawn")
        self._proc: BaseProcess | None = None
        self._channel: socket.socket | None = None
        self._started = 0.0
        self._restarting = threading.Lock()   # two requests that find it dead start one child
        self.dropped = 0
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        ours.setblocking(False)   # a full socket drops jobs; it never holds a decision
        proc = self._spawn.Process(target=_child, args=(self._open_parts, theirs, self._max_queue),
                                   name="fraudops-shadows", daemon=True)
        proc.start()
        theirs.close()
        old, self._channel, self._proc = self._channel, ours, proc
        self._started = time.monotonic()
        if old is not None:
            old.close()

    def submit_many(self, jobs: Sequence[ShadowJob]) -> int:
        """Send the jobs; how many were sent (the rest dropped: socket full or child gone)."""
        sent = 0
        for first in range(0, len(jobs), JOBS_PER_MESSAGE):
            chunk = jobs[first:first + JOBS_PER_MESSAGE]
            message = pickle.dumps([(j.tenant, j.event_id, j.features,
                                     tuple((m.ref.name, m.ref.version) for m in j.models))
                                    for j in chunk], protocol=pickle.HIGHEST_PROTOCOL)
            if self._send(message):
                sent += len(chunk)
        if sent < len(jobs):
            self._drop(len(jobs) - sent)
        return sent

    def _send(self, message: bytes) -> bool:
        channel = self._channel
        if channel is None:
            return False
        try:
            channel.send(message)
            return True
        except BlockingIOError:   # the child is behind: shadows never wait
            return False
        except OSError:   # the child is gone
            self._restart()
            return False

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self._metrics is not None:
            self._metrics.shadow_dropped.inc(n)

    def _restart(self) -> None:
        with self._restarting:
            if self._proc is not None and self._proc.is_alive():   # also reaps a dead one
                return
            if self._channel is None or time.monotonic() - self._started < RESTART_EVERY_S:
                return   # closed, or restarted a moment ago
            exitcode = None if self._proc is None else self._proc.exitcode
            log.error("the shadow process exited (%s); starting another", exitcode)
            self._start()

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Wait until the child has loaded what it needs (a server process calls this before it
        takes traffic: jobs sent earlier wait in the socket and overflow it)."""
        return self._reply(_READY, time.monotonic() + timeout)

    def _reply(self, expected: bytes, deadline: float) -> bool:
        channel = self._channel
        while channel is not None and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([channel], [], [], left)
            if not readable:
                return False
            try:
                message = channel.recv(64)
            except BlockingIOError:
                continue
            except OSError:
                return False
            if message == expected:
                return True
            if not message:   # the child is gone
                return False
        return False

    def deciding(self) -> AbstractContextManager[None]:
        return _NOTHING   # another process: nothing to keep off

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the child has scored and logged every job sent so far."""
        channel = self._channel
        if channel is None:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                channel.send(_DRAIN)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
            except OSError:
                return False
        return self._reply(_DRAINED, deadline)

    def close(self, timeout: float = 10.0) -> None:
        """Let the child score and log what it has, then stop it (killed after ``timeout``)."""
        channel, proc = self._channel, self._proc
        self._channel = self._proc = None
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.shutdown(socket.SHUT_WR)   # the child reads end-of-file
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if channel is not None:
            channel.close()


_NOTHING = nullcontext()


def _child(open_parts: Callable[[], ShadowParts], channel: socket.socket,
           max_queue: int) -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(AttributeError, OSError):   # Linux; threads started later inherit
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    pool, sink, metrics, close = open_parts()
    with contextlib.suppress(OSError):
        channel.send(_READY)
    runner = ShadowRunner(sink, metrics=metrics, max_queue=max_queue,
                          on_error=lambda e: log.error("shadow scores not logged: %s", e))
    try:
        _ChildLoop(channel, pool, runner).run()
    finally:
        runner.close()
        close()


class _ChildLoop:  # pragma: no cover - runs in the child
    """Reads what the server sent every ``POLL_S`` while jobs come, less often while none do
    (no wake-up per datagram: no one waits for a shadow score), hands the jobs to the runner,
    and forgets the models no job named for ``FORGET_AFTER_S`` (plans move on; the server's
    own pool forgets with each plan)."""

    def __init__(self, channel: socket.socket, pool: ModelPool, runner: ShadowRunner) -> None:
        self.channel = channel
        self.pool = pool
        self.runner = runner
        self.loaded: dict[tuple[str, int], LoadedModel] = {}
        self.used: set[tuple[str, int]] = set()
        self.swept = time.monotonic()

    def run(self) -> None:
        self.channel.setblocking(False)
        poll = POLL_S
        while True:
            time.sleep(poll)
            poll = min(poll * 2, IDLE_POLL_S)   # nothing sent: the next poll comes later
            while True:
                try:
                    message = self.channel.recv(MAX_MESSAGE)
                except BlockingIOError:
                    break
                except OSError:
                    return
                if not message:   # the server process closed its end or died
                    return
                self._handle(message)
                poll = POLL_S
            if time.monotonic() - self.swept > FORGET_AFTER_S:
                self._forget()

    def _handle(self, message: bytes) -> None:
        if message == _DRAIN:
            self.runner.drain()
            with contextlib.suppress(OSError):
                self.channel.send(_DRAINED)
            return
        jobs: list[tuple[str, str, dict[str, Any], tuple[tuple[str, int], ...]]] = \
            pickle.loads(message)
        for tenant, event_id, features, refs in jobs:
            try:
                models = tuple(map(self._model, refs))
            except Exception as e:   # the server loaded it: a broken cache, say
                log.error("shadow model not loaded in the shadow process: %s", e)
                continue
            self.runner.submit(ShadowJob(tenant, event_id, features, models))

    def _model(self, ref: tuple[str, int]) -> LoadedModel:
        found = self.loaded.get(ref)
        if found is None:
            found = self.loaded[ref] = self.pool.get(ModelRef(*ref))
        self.used.add(ref)
        return found

    def _forget(self) -> None:
        self.loaded = {ref: m for ref, m in self.loaded.items() if ref in self.used}
        self.pool.retain(ModelRef(*ref) for ref in self.loaded)
        self.used = set()
        self.swept = time.monotonic()
