"""The scoring engine in process: canary split, shadows off the path, plans refused whole."""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fraudops.core import InputError
from fraudops.serving import (
    CanarySpec,
    ModelLoadError,
    ModelRef,
    ShadowJob,
    ShadowRunner,
    ShadowSpec,
    TenantPlan,
    UnknownTenant,
    bucket,
)
from fraudops.serving._model_pool import LoadedModel

from .conftest import MODEL, TENANT, Served, World, first_events, start

V1, V2 = ModelRef(MODEL, 1), ModelRef(MODEL, 2)


@pytest.fixture
def canary(workspace: Path) -> Iterator[Served]:
    s = start(workspace, plan=TenantPlan(TENANT, V1, canary=CanarySpec(V2, 0.3)))
    yield s
    s.runtime.close()


def test_canary_takes_its_share_of_cards_and_a_card_sees_one_model(world: World,
                                                                   canary: Served) -> None:
    seen: dict[str, set[str]] = {}
    for event in first_events(world, 1500):
        d = canary.runtime.engine.score(event).decision
        seen.setdefault(str(event["card_id"]), set()).add(f"{d.role}:{d.model_version}")
    assert all(len(models) == 1 for models in seen.values())
    on_canary = sum(models == {"canary:2"} for models in seen.values()) / len(seen)
    assert 0.2 < on_canary < 0.4
    assert {m for models in seen.values() for m in models} == {"live:1", "canary:2"}


def test_the_canary_split_is_stable_across_processes() -> None:
    # blake2b of the tenant and the card: no per-process hash seed, same on every replica
    assert bucket("acme", "card_id=C1") == pytest.approx(bucket("acme", "card_id=C1"))
    assert bucket("acme", "card_id=C1") != bucket("globex", "card_id=C1")
    shares = [bucket("acme", f"card_id=C{i}") for i in range(10_000)]
    assert 0.48 < sum(s < 0.5 for s in shares) / len(shares) < 0.52


def test_shadows_score_every_event_and_never_change_the_answer(world: World,
                                                               workspace: Path) -> None:
    plain = start(workspace, plan=TenantPlan(TENANT, V1))
    events = first_events(world, 300)
    try:
        without = [plain.runtime.engine.score(e).decision for e in events]
    finally:
        plain.runtime.close()
    other = workspace.parent / "shadowed"
    shutil.copytree(workspace, other, ignore=shutil.ignore_patterns("serving"))
    shadowed = start(other, plan=TenantPlan(TENANT, V1, shadows=(ShadowSpec(V2),)))
    try:
        engine = shadowed.runtime.engine
        with_shadow = [engine.score(e).decision for e in events]
        assert engine.shadows is not None
        assert engine.shadows.drain()
        logged = shadowed.runtime.log.shadow_scores(tenant=TENANT)
    finally:
        shadowed.runtime.close()
    assert [(d.probability, d.action) for d in with_shadow] == \
        [(d.probability, d.action) for d in without]
    assert logged.num_rows == len(events)
    assert set(logged.column("model_version").to_pylist()) == {2}
    assert sorted(logged.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)


class _Exploding:
    feature_names = ("x",)

    def vector(self, features: Any) -> list[float]:
        return [1.0]

    def predict_one(self, x: list[float]) -> float:
        raise RuntimeError("shadow model is broken")


def test_a_failing_shadow_is_logged_with_its_error(world: World, served: Served) -> None:
    logged: list[Any] = []

    class Sink:
        def record_shadows(self, scores: Any) -> None:
            logged.extend(scores)

    runner = ShadowRunner(Sink(), flush_every_s=0.01)
    good = served.runtime.pool.get(V1)
    bad = dataclasses.replace(good, ref=ModelRef(MODEL, 9), model=_Exploding())  # type: ignore[arg-type]
    features = served.runtime.engine.online.process_one(first_events(world, 1)[0])
    runner.submit(ShadowJob(TENANT, "e1", features, (good, bad)))
    assert runner.drain()
    runner.close()
    by_version = {s.model_version: s for s in logged}
    assert by_version[1].error is None
    assert by_version[1].probability is not None
    assert by_version[9].error == "RuntimeError: shadow model is broken"
    assert by_version[9].probability is None


def test_a_full_shadow_queue_drops_jobs_instead_of_waiting(served: Served) -> None:
    class Slow:
        def record_shadows(self, scores: Any) -> None:
            time.sleep(0.5)

    runner = ShadowRunner(Slow(), max_queue=2, flush_every_s=0.01)
    model: LoadedModel = served.runtime.pool.get(V1)
    features = dict.fromkeys(model.feature_names, 1.0)
    results = [runner.submit(ShadowJob(TENANT, f"e{i}", features, (model,))) for i in range(50)]
    assert not all(results)
    assert runner.dropped == results.count(False) > 0
    runner.close(timeout=5)


def _aside_runner(served: Served, monkeypatch: pytest.MonkeyPatch, max_aside_s: float,
                  **settings: Any) -> tuple[ShadowRunner, Callable[[str], ShadowJob]]:
    """A runner without a sink that steps aside for at most ``max_aside_s``, and a job maker."""
    monkeypatch.setattr("fraudops.serving._shadow.MAX_ASIDE_S", max_aside_s)
    model: LoadedModel = served.runtime.pool.get(V1)
    features = dict.fromkeys(model.feature_names, 1.0)
    return (ShadowRunner(None, poll_s=0.005, **settings),
            lambda event_id: ShadowJob(TENANT, event_id, features, (model,)))


def test_shadows_wait_while_a_decision_runs(served: Served,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    runner, job = _aside_runner(served, monkeypatch, 30.0)
    try:
        with runner.deciding():
            runner.submit(job("e1"))
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:   # the thread polls every 5 ms meanwhile
                time.sleep(0.01)
                assert runner.scored == 0
        assert runner.drain(timeout=5)
        assert runner.scored == 1
    finally:
        runner.close()


def test_a_decision_that_never_ends_holds_shadows_off_only_briefly(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, job = _aside_runner(served, monkeypatch, 0.01)
    try:
        with runner.deciding():
            for i in range(5):
                runner.submit(job(f"e{i}"))
            assert runner.drain(timeout=5)
            assert runner.scored == 5
    finally:
        runner.close()


def test_a_backlog_of_shadow_jobs_is_not_held_off(served: Served,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runner, job = _aside_runner(served, monkeypatch, 30.0, max_queue=100)   # backlog: 10 jobs
    try:
        with runner.deciding():   # decisions never stop, as under a heavy load
            for i in range(30):
                runner.submit(job(f"e{i}"))
            deadline = time.monotonic() + 10
            while runner.scored < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert runner.scored >= 20   # down to the backlog limit, without waiting
            time.sleep(0.1)
            assert runner.scored <= 21   # below it, the shadows wait again
        assert runner.drain(timeout=5)
        assert runner.scored == 30
    finally:
        runner.close()


def test_the_engine_holds_shadows_off_while_it_decides_online(world: World, workspace: Path) -> None:
    s = start(workspace, plan=TenantPlan(TENANT, V1, shadows=(ShadowSpec(V2),)))
    runner = s.runtime.shadow_runner
    assert runner is not None
    seen: list[int] = []
    online = s.runtime.engine.online
    process_many = online.process_many

    def spy(events: Any) -> Any:
        seen.append(runner._deciding)
        return process_many(events)

    try:
        online.process_many = spy  # type: ignore[method-assign]
        first, second = first_events(world, 2)
        s.runtime.engine.score(first)
        assert seen == [1]
        assert runner._deciding == 0   # and let go afterwards
        # batch scoring (throughput, not latency) leaves its shadows their share
        s.runtime.engine.score_many([second], source="batch")
        assert seen == [1, 0]
        assert runner.drain(timeout=5)
        assert runner.scored == 2
    finally:
        s.runtime.close()


def test_a_plan_with_a_model_that_cannot_load_is_refused_whole(served: Served) -> None:
    engine = served.runtime.engine
    before = engine.plans
    with pytest.raises(ModelLoadError, match=f"{MODEL}/v99"):
        engine.use_plans({TENANT: TenantPlan(TENANT, V2, shadows=(ShadowSpec(ModelRef(MODEL, 99)),))})
    assert engine.plans == before
    # the same through the plan store: the server keeps serving the old revision
    served.runtime.plan_store.apply(TenantPlan(TENANT, ModelRef(MODEL, 99)), actor="test")
    assert served.runtime.refresh() is False
    assert served.runtime.engine.plans == before
    assert served.runtime.last_error is not None
    assert "v99" in served.runtime.last_error


def test_an_unknown_tenant_is_named(world: World, served: Served) -> None:
    event = {**first_events(world, 1)[0], "tenant": "globex"}
    with pytest.raises(UnknownTenant, match="'globex' has no deployment plan"):
        served.runtime.engine.score(event)


def test_a_batch_decides_each_event_as_one_by_one(world: World, workspace: Path,
                                                  tmp_path: Path) -> None:
    """Random batches (with a canary, retries inside a batch and across batches, a re-stamped
    retry, refused events) give every event the answer of one-by-one scoring."""
    plan = TenantPlan(TENANT, V1, canary=CanarySpec(V2, 0.3))
    single = start(workspace, plan=plan)
    batched = start(Path(shutil.copytree(world.root, tmp_path / "ws2")), plan=plan)
    events: list[dict[str, Any]] = first_events(world, 700)
    events[300:300] = [dict(events[299]),                                    # same batch, likely
                       {**events[10], "amount_cents": 1},                    # logged long ago
                       {**events[20], "event_time": events[299]["event_time"]},  # re-stamped
                       {**events[30], "event_id": "future", "event_time":
                        events[30]["event_time"].replace(year=2199)},
                       {**events[40], "event_id": "elsewhere", "tenant": "globex"}]
    rng = random.Random(3)
    try:
        got: list[Any] = []
        while len(got) < len(events):
            chunk = events[len(got):len(got) + rng.choice([1, 3, 8, 32])]
            got += batched.runtime.engine.score_many(chunk)
        for event, result in zip(events, got, strict=True):
            try:
                expected: Any = single.runtime.engine.score(event)
            except (InputError, UnknownTenant) as exc:
                expected = exc
            if isinstance(expected, Exception):
                assert type(result) is type(expected)
                assert str(result) == str(expected)
                continue
            assert _answer(result) == _answer(expected), event["event_id"]
        assert sum(r.replayed for r in got if not isinstance(r, Exception)) == 3
        assert batched.runtime.log.count() == single.runtime.log.count() == 700
    finally:
        single.runtime.close()
        batched.runtime.close()


def _answer(result: Any) -> tuple[Any, ...]:
    d = result.decision
    return (d.event_id, d.role, d.model_version, d.probability, d.score, d.action, d.reasons,
            result.replayed)
