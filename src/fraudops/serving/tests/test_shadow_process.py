"""Shadows scored in a child process: the scores a thread logs, never a wait, a dead child replaced."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudops.serving import (
    DecisionLog,
    ModelRef,
    ShadowJob,
    ShadowRunner,
    ShadowSpec,
    TenantPlan,
    _shadow_process,
)
from fraudops.serving._shadow_process import ShadowProcess, _ChildLoop

from .conftest import MODEL, TENANT, Served, World, first_events, start

V1, V2 = ModelRef(MODEL, 1), ModelRef(MODEL, 2)
SHADOWED = TenantPlan(TENANT, V1, shadows=(ShadowSpec(V2),))


def _start(workspace: Path, name: str, *, process: bool) -> Served:
    copy = Path(shutil.copytree(workspace, workspace.parent / name,
                                ignore=shutil.ignore_patterns("serving")))
    return start(copy, plan=SHADOWED, shadow_process=process)


def _process(s: Served) -> ShadowProcess:
    runner = s.runtime.shadow_runner
    assert isinstance(runner, ShadowProcess)
    return runner


def _logged(s: Served) -> list[tuple[Any, ...]]:
    with DecisionLog.open(s.runtime.config.database_url()) as log:
        table = log.shadow_scores(tenant=TENANT)
    columns = ("event_id", "model_version", "probability", "score", "action", "error")
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


@pytest.fixture
def shadowed(workspace: Path) -> Iterator[Served]:
    s = _start(workspace, "in-process", process=True)
    yield s
    s.runtime.close()


def test_a_shadow_process_logs_the_scores_a_thread_logs(world: World, workspace: Path) -> None:
    events = first_events(world, 200)
    seen = {}
    for process in (False, True):
        s = _start(workspace, f"process-{process}", process=process)
        try:
            decisions = [s.runtime.engine.score(e).decision for e in events]
            assert s.runtime.shadow_runner is not None
            assert s.runtime.shadow_runner.drain(timeout=60)
            seen[process] = ([(d.event_id, d.probability, d.action) for d in decisions], _logged(s))
        finally:
            s.runtime.close()
    assert seen[True] == seen[False]
    _, logged = seen[True]
    assert len(logged) == len(events)
    assert {row[1] for row in logged} == {2}
    assert {row[5] for row in logged} == {None}


def test_the_shadow_process_runs_at_idle_priority(shadowed: Served) -> None:
    pid = _process(shadowed).pid
    assert pid is not None
    assert pid != os.getpid()
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE


def _jobs(world: World, s: Served, n: int) -> list[ShadowJob]:
    [event] = first_events(world, 1)
    features = s.runtime.engine.score(event, explain=True).features
    assert features is not None
    shadow = s.runtime.pool.get(V2)
    return [ShadowJob(TENANT, f"job-{i}", features, (shadow,)) for i in range(n)]


def test_a_stuck_shadow_process_drops_jobs_and_never_holds_the_server(world: World,
                                                                       shadowed: Served) -> None:
    runner = _process(shadowed)
    assert runner.drain(timeout=60)   # started, with nothing queued
    jobs = _jobs(world, shadowed, 100_000)
    assert runner.pid is not None
    os.kill(runner.pid, signal.SIGSTOP)
    try:   # the socket fills up; submit returns all the same
        sent = [runner.submit_many([job]) for job in jobs[:50]]
        for job in jobs[50:]:
            sent.append(runner.submit_many([job]))
            if not sent[-1]:
                break
        sent += [runner.submit_many([job]) for job in jobs[len(sent):len(sent) + 50]]
    finally:
        os.kill(runner.pid, signal.SIGCONT)
    assert sent[:50] == [1] * 50
    assert sent[-50:] == [0] * 50
    assert runner.dropped == sent.count(0)
    assert runner.drain(timeout=60)
    # every job is either logged or counted as dropped (the event itself is logged too)
    assert len(_logged(shadowed)) == sum(sent) + 1


def test_a_dead_shadow_process_is_replaced(world: World, shadowed: Served,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shadow_process, "RESTART_EVERY_S", 0.0)
    runner = _process(shadowed)
    assert runner.drain(timeout=60)
    first = runner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    jobs = _jobs(world, shadowed, 2)
    assert runner._proc is not None
    runner._proc.join(10)
    assert runner.submit_many(jobs[:1]) == 0   # lost with the dead child, counted
    assert runner.dropped == 1
    assert runner.pid not in (None, first)
    assert runner.submit_many(jobs[1:]) == 1
    assert runner.drain(timeout=60)
    assert [row[0] for row in _logged(shadowed) if row[0].startswith("job-")] == ["job-1"]


def test_closing_logs_what_the_shadow_process_has_queued(world: World, workspace: Path) -> None:
    s = _start(workspace, "closing", process=True)
    try:
        events = first_events(world, 50)
        for event in events:
            s.runtime.engine.score(event)
    finally:
        s.runtime.close()   # no drain first
    assert len(_logged(s)) == len(events)


def test_the_shadow_process_forgets_models_no_job_names_any_more(world: World,
                                                                  shadowed: Served) -> None:
    # the child's loop, run here: jobs name the models by reference
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    runner = ShadowRunner(None)
    try:
        loop = _ChildLoop(theirs, shadowed.runtime.pool, runner)
        [job] = _jobs(world, shadowed, 1)
        loop._handle(pickle.dumps([(job.tenant, job.event_id, job.features, ((MODEL, 2),))]))
        assert runner.drain(timeout=10)
        assert runner.scored == 1
        loop._forget()   # used since the last sweep: kept
        assert set(loop.loaded) == {(MODEL, 2)}
        loop._forget()   # not used since: forgotten
        assert loop.loaded == {}
    finally:
        runner.close()
        ours.close()
        theirs.close()
