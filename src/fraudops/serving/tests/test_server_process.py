"""``fraudops serve`` as a real process: killed mid-load, several workers, plans changed live.

What a payment flow relies on: an answer it received is never lost nor changed (a retry gets
it again, even after a crash), every worker of a server answers alike, and a deployment plan
change reaches every worker within seconds, audited, without a restart.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudops.features import (
    EntityState,
    MemoryStore,
    OnlineEngine,
    RedisStore,
    SQLiteStore,
    StateStore,
)
from fraudops.features.tests._redis import REDIS_URL, needs_redis
from fraudops.serving import DecisionLog, ServingConfig, bucket

from ._server import Server, children, database_url, deploy, label_json, serving, transaction_json
from ._server import start_ready as start_ready_server
from .conftest import MODEL, TENANT, World, first_events

pytestmark = pytest.mark.slow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Item = tuple[str, dict[str, Any]]   # ("event", transaction) or ("label", label)
#: Fields that make a decision: what a payment flow acts on.
DECISION = ("event_id", "score", "probability", "action", "model", "role", "decided_at")


# -- streams ---------------------------------------------------------------------------------
def _stream(events: list[dict[str, Any]], *, every: int = 7,
            delay: timedelta = timedelta(minutes=20)) -> list[Item]:
    """``events`` in time order with late labels: every ``every``-th event is labelled
    ``delay`` after it (two in three as fraud), each label delivered at its ``label_time``,
    labels first at equal times (as ``replay_stream`` does). The simulation's own labels
    come days later; these make the label-aware features move within a short stream."""
    labels = [{"tenant": TENANT, "event_id": e["event_id"], "is_fraud": (i // every) % 3 != 2,
               "label_time": e["event_time"] + delay}
              for i, e in enumerate(events) if i % every == 0]
    timed = [((e["event_time"], 1, i), ("event", e)) for i, e in enumerate(events)]
    timed += [((lab["label_time"], 0, i), ("label", lab)) for i, lab in enumerate(labels)]
    return [item for _, item in sorted(timed, key=lambda pair: pair[0])]


def _events(stream: list[Item]) -> list[dict[str, Any]]:
    return [body for kind, body in stream if kind == "event"]


def _reference_features(world: World, stream: list[Item]) -> dict[str, dict[str, float | None]]:
    """The features of every event of ``stream`` sent once, in order, to a clean server: the
    online engine in this process over empty memory state, with the server's lateness."""
    lateness = timedelta(seconds=ServingConfig.max_lateness_s)
    engine = OnlineEngine(world.feature_set, MemoryStore(), max_lateness=lateness)
    out = {}
    for kind, body in stream:
        if kind == "label":
            engine.label_one(body)
        else:
            out[body["event_id"]] = engine.process_one(body)
    return out


def _post(client: httpx.Client, item: Item, *, explain: bool = False) -> httpx.Response:
    kind, body = item
    if kind == "label":
        return client.post("/v1/labels", json=label_json(body))
    return client.post("/v1/score", json=transaction_json(body),
                       params={"explain": "true"} if explain else None)


def _send_in_order(server: Server, key: str, stream: list[Item], *,
                   keepalive: bool = True) -> dict[str, dict[str, Any]]:
    """Send ``stream`` one request at a time, asking for the features; the answers by event id."""
    answers = {}
    with server.client(key, keepalive=keepalive) as client:
        for item in stream:
            r = _post(client, item, explain=True)
            assert r.status_code == 200, f"{item[0]} {item[1]['event_id']}: {r.status_code} {r.text}"
            if item[0] == "event":
                answers[item[1]["event_id"]] = r.json()
    return answers


def _decision(answer: dict[str, Any]) -> dict[str, Any]:
    return {field: answer[field] for field in DECISION}


def _feature_mismatches(got: dict[str, float | None] | None,
                        want: dict[str, float | None]) -> list[tuple[str, Any, Any]]:
    if got is None:
        return [("(no features)", None, "all")]
    out = []
    for name in sorted(set(got) | set(want)):
        a, b = got.get(name, "(missing)"), want.get(name, "(missing)")
        same = a == b or (isinstance(a, float) and isinstance(b, float)
                          and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12))
        if not same:
            out.append((name, a, b))
    return out


def _fresh_copy(world: World, target: Path) -> Path:
    """The template workspace with no serving state, decision log, plans nor keys."""
    return Path(shutil.copytree(world.root, target, ignore=shutil.ignore_patterns("serving")))


# -- 1. a crash loses no acknowledged decision ----------------------------------------------
KILL_AFTER_ACKS = 300


@dataclass
class _Load:
    """What a server acknowledged before it was killed."""

    decisions: dict[str, dict[str, Any]]   # the answers (200) by event id
    labels: list[tuple[dict[str, Any], int]]   # labels (200) and how many states they reached
    taken: int                             # items of the stream taken when the senders stopped


def _send_until_killed(server: Server, key: str, stream: list[Item], *, kill_after: int,
                       senders: int = 4) -> _Load:
    """Send ``stream`` from ``senders`` concurrent clients, each taking the next item; SIGKILL
    the server (all its processes) once ``kill_after`` decisions came back with a 200."""
    feed = iter(stream)
    lock = threading.Lock()
    load = _Load({}, [], 0)
    refused: list[str] = []
    enough = threading.Event()

    def send() -> None:
        with server.client(key) as client:
            while True:
                with lock:
                    item = next(feed, None)
                    load.taken += item is not None
                if item is None:
                    return
                try:
                    r = _post(client, item)
                except httpx.TransportError:
                    return   # the server is gone
                with lock:
                    if r.status_code != 200:
                        refused.append(f"{item[0]} {item[1]['event_id']}: {r.status_code} {r.text}")
                    elif item[0] == "label":
                        load.labels.append((item[1], r.json()["states_updated"]))
                    else:
                        load.decisions[item[1]["event_id"]] = r.json()
                        if len(load.decisions) >= kill_after:
                            enough.set()

    threads = [threading.Thread(target=send, daemon=True) for _ in range(senders)]
    for thread in threads:
        thread.start()
    while not enough.wait(0.05) and any(t.is_alive() for t in threads):
        pass
    server.kill()
    for thread in threads:
        thread.join(30)
    assert not refused, refused[:5]
    assert enough.is_set(), f"only {len(load.decisions)} decisions before the senders stopped"
    return load


def _not_in_state(world: World, store: StateStore, stream: list[Item], load: _Load) -> list[str]:
    """What the acknowledged answers promise that the stored online state lacks: each
    decided event in the state of each of its entities, each label in as many states as it
    was acknowledged to reach."""
    online = OnlineEngine(world.feature_set, store)   # the server's namespace: same definitions
    events = {e["event_id"]: e for e in _events(stream)}

    def states(event: dict[str, Any]) -> Iterator[tuple[str, EntityState | None]]:
        for entity in world.feature_set.entities:
            values = [event.get(k) for k in entity.keys]
            if None not in values:
                yield f"{entity.name} {values}", online.read_state(entity.name, TENANT, values)

    missing = [f"event {i} not in {where}" for i in load.decisions
               for where, state in states(events[i]) if state is None or i not in state.ids]
    for label, reached in load.labels:
        label_us = (label["label_time"] - _EPOCH) // timedelta(microseconds=1)
        holding = sum(1 for _, state in states(events[label["event_id"]]) if state is not None
                      and label_us in state.labels.get(label["event_id"], [])[1::2])
        if holding != reached:
            missing.append(f"label of {label['event_id']}: in {holding} states, acknowledged {reached}")
    return missing


def _state_store(workspace: Path, state: str, redis_prefix: str) -> StateStore:
    """The server's online state, opened from this process (the server is down)."""
    if state == "redis":
        return RedisStore(REDIS_URL, prefix=redis_prefix)
    return SQLiteStore(workspace / "serving" / "state.db")


@pytest.mark.parametrize("state", ["sqlite", pytest.param("redis", marks=needs_redis)])
def test_a_killed_server_loses_no_acknowledged_decision(world: World, workspace: Path,
                                                        redis_prefix: str, state: str) -> None:
    """SIGKILL under concurrent load, restart: every answer given is in the log and in the
    online state, a retry gets the same answer, and the state is that of a clean run."""
    keys = deploy(workspace)
    stream = _stream(first_events(world, 700))
    options: dict[str, Any] = {"state": state}
    if state == "redis":
        options["redis_prefix"] = redis_prefix
    with serving(workspace, **options) as server:
        load = _send_until_killed(server, keys.tenant, stream, kill_after=KILL_AFTER_ACKS)
    acked = load.decisions
    assert load.taken < len(stream) - 100, "the kill must come in the middle of the load"

    with DecisionLog.open(database_url(workspace)) as log:
        logged = {event_id: log.get(TENANT, event_id) for event_id in acked}
    assert [i for i, d in logged.items() if d is None] == [], "acknowledged but not logged"
    changed = [(i, acked[i], d) for i, d in logged.items() if d is not None and (
        d.score, d.probability, d.action, d.model_version) != (
        acked[i]["score"], acked[i]["probability"], acked[i]["action"], acked[i]["model_version"])]
    assert changed == []
    with _state_store(workspace, state, redis_prefix) as store:
        assert _not_in_state(world, store, stream, load) == []

    with serving(workspace, **options) as server:
        again = _send_in_order(server, keys.tenant, stream)   # every event, acked or not
    not_replayed = [(i, again[i]) for i in acked
                    if not again[i]["replayed"] or _decision(again[i]) != _decision(acked[i])]
    assert not_replayed == [], not_replayed[:3]
    never_sent = [body["event_id"] for kind, body in stream[load.taken:] if kind == "event"]
    assert not any(again[i]["replayed"] for i in never_sent)
    with DecisionLog.open(database_url(workspace)) as log:
        assert log.count(TENANT) == len(again), "one decision per event, none twice"

    # a retry too old for the state returns the logged decision without features
    reference = _reference_features(world, stream)
    mismatches = [(i, m) for i, answer in again.items() if answer["features"] is not None
                  for m in _feature_mismatches(answer["features"], reference[i])]
    assert mismatches == [], mismatches[:5]
    assert all(again[i]["features"] is not None for i in never_sent)


# -- 2. two workers answer as one ------------------------------------------------------------
SETUPS: dict[str, dict[str, Any]] = {
    "1 worker": {"workers": 1, "state": "memory"},
    "2 workers, sqlite": {"workers": 2, "state": "sqlite"},
    "2 workers, redis": {"workers": 2, "state": "redis"},
}


@needs_redis
def test_two_workers_decide_like_one(world: World, tmp_path: Path, redis_prefix: str) -> None:
    """The same stream (transactions and labels) through one worker, two workers sharing
    SQLite state and two sharing Redis state: the same decisions and features, event by event."""
    stream = _stream(first_events(world, 450))
    with ExitStack() as stack:
        servers, keys = {}, {}
        for name, options in SETUPS.items():
            ws = _fresh_copy(world, tmp_path / name.replace(" ", "").replace(",", "-"))
            keys[name] = deploy(ws)
            extra = {"redis_prefix": redis_prefix} if options["state"] == "redis" else {}
            servers[name] = Server.start(ws, **options, **extra)
            stack.callback(servers[name].stop)
        for server in servers.values():
            server.wait_ready()
        # a new connection per request: any worker may take it (one connection stays on one)
        with ThreadPoolExecutor(len(servers)) as pool:
            futures = {name: pool.submit(_send_in_order, server, keys[name].tenant, stream,
                                         keepalive=SETUPS[name]["workers"] == 1)
                       for name, server in servers.items()}
            answers = {name: future.result() for name, future in futures.items()}
        served_by = {name: servers[name].per_worker("fraudops_decisions")
                     for name in SETUPS if SETUPS[name]["workers"] == 2}

    for name, counts in served_by.items():
        assert len(counts) == 2, f"{name}: decisions per worker {counts}"
        assert min(counts.values()) > 0, f"{name}: decisions per worker {counts}"
    one = answers["1 worker"]
    assert any((a["features"]["fraud_count_30d_by_card"] or 0) > 0 for a in one.values()), \
        "the labels must reach the label-aware features"
    differences = []
    for name in ("2 workers, sqlite", "2 workers, redis"):
        for event_id, want in one.items():
            got = answers[name][event_id]
            for field in ("probability", "score", "action", "model", "role", "reasons"):
                if got[field] != want[field]:
                    differences.append((name, event_id, field, got[field], want[field]))
            differences += [(name, event_id, *m)
                            for m in _feature_mismatches(got["features"], want["features"])]
    assert differences == [], differences[:5]


# -- 2b. the supervisor of several workers ---------------------------------------------------
def test_a_dead_worker_is_replaced_and_workers_die_with_their_supervisor(
        workspace: Path) -> None:
    """kill -9 of one worker: the server keeps answering and starts another;
    kill -9 of the supervisor: its workers stop by themselves and the port closes."""
    keys = deploy(workspace)
    server = start_ready_server(workspace, workers=2, state="sqlite")
    try:
        before = server.workers()
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        with server.client(keys.tenant, keepalive=False) as client:
            _eventually(lambda: len(server.workers() - before) == 1 and victim not in server.workers(),
                        30.0, "a new worker in place of the killed one")
            _eventually(lambda: client.get("/readyz").status_code == 200, 30.0, "ready again")
            assert client.get("/healthz").status_code == 200
        workers = server.workers()
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        _eventually(lambda: not any(_alive(pid) for pid in workers), 15.0,
                    "the workers of a killed supervisor exit")
        _eventually(lambda: _refused(server.port), 15.0, "the port closes with the workers")
    finally:
        server.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# -- 3. plan changes reach every worker, audited ---------------------------------------------
#: A plan change must be in force on every worker within this. A worker takes it at its next
#: poll (every 1 s) plus the models' load (each builds its reasons' tables): 2.5 s on a slow
#: stretch of a 2-core VM, 3.5-5.3 s with three such servers side by side. A bound for a busy
#: CI machine, not a speed target.
SWITCH_WITHIN_S = 15.0
V1, V2 = {"name": MODEL, "version": 1}, {"name": MODEL, "version": 2}


def test_plan_changes_reach_every_worker_without_restart_and_are_audited(
        world: World, workspace: Path) -> None:
    """On a running two-worker server: live v2 with v1 shadowing, then a refused v99, then a
    30 % canary of v2; each change is in force on both workers within seconds. Shadows run
    in each worker's shadow process (the thread is every other test's default)."""
    keys = deploy(workspace)
    events = iter(first_events(world, 400))
    with serving(workspace, workers=2, state="sqlite", options=["--shadow-process"]) as server, \
            server.client(keys.tenant, keepalive=False) as tenant, \
            server.client(keys.admin, keepalive=False) as admin:
        # no connection stays open: each request goes to the worker with the fewest open
        # ones, ties taking turns, so both workers decide (an idle keep-alive connection
        # of the admin's would send every tenant request to the other worker)
        assert {a["model"]["version"] for a in _decide(tenant, events, 10)} == {1}
        _v2_live_with_v1_shadow(server, tenant, admin, events)
        _a_missing_model_is_refused(tenant, admin, events)
        _v2_canary_for_a_share_of_cards(server, tenant, admin, events)


def _v2_live_with_v1_shadow(server: Server, tenant: httpx.Client, admin: httpx.Client,
                            events: Iterator[dict[str, Any]]) -> None:
    """Every worker decides with v2; v1 scores the same events in the shadow; the history
    says who changed what, when, from which plan."""
    before = datetime.now(UTC)
    r = admin.put(f"/v1/plans/{TENANT}", json={"live": V2, "shadows": [{"model": V1}],
                                              "reason": "v2 passed the gate"})
    assert r.status_code == 200, r.text
    revision = r.json()["revision"]
    _all_workers_on(server, revision)
    decided = _decide(tenant, events, 40)
    assert {(a["model"]["version"], a["role"]) for a in decided} == {(2, "live")}
    v2_by_worker = server.per_worker("fraudops_decisions", model=f"{MODEL}/v2")
    assert len(v2_by_worker) == 2, f"every worker decides with v2: {v2_by_worker}"

    with DecisionLog.open(database_url(server.workspace)) as log:
        def shadowed() -> set[str]:
            rows = log.shadow_scores(tenant=TENANT).to_pylist()
            return {s["event_id"] for s in rows if s["model_version"] == 1 and s["error"] is None}
        ids = {a["event_id"] for a in decided}
        _eventually(lambda: ids <= shadowed(), 5.0, "v1 shadow scores of v2's decisions")
    # scored in the workers' shadow processes, whose metrics /metrics reports with the workers'
    assert len(_shadow_processes(server)) == 2
    text = admin.get("/metrics").text
    [count] = [line for line in text.splitlines()
               if line.startswith(f'fraudops_shadow_seconds_count{{model="{MODEL}/v1"}}')]
    assert float(count.split()[-1]) >= len(ids)

    history = tenant.get(f"/v1/plans/{TENANT}/history").json()
    assert [h["revision"] for h in history] == [revision, revision - 1]
    latest = history[0]
    assert latest["actor"].startswith("key:")
    assert latest["actor"].endswith("(admin)")
    assert before <= datetime.fromisoformat(latest["changed_at"]) <= datetime.now(UTC)
    assert latest["previous"]["live"] == V1
    assert latest["plan"]["live"] == V2
    assert latest["plan"]["shadows"] == [{"model": V1, "sample": 1.0}]
    assert latest["reason"] == "v2 passed the gate"


def _a_missing_model_is_refused(tenant: httpx.Client, admin: httpx.Client,
                                events: Iterator[dict[str, Any]]) -> None:
    """A plan naming a version that does not exist: 422 naming it; v2 keeps serving."""
    [before] = admin.get("/v1/plans").json()
    history = tenant.get(f"/v1/plans/{TENANT}/history").json()
    r = admin.put(f"/v1/plans/{TENANT}", json={"live": {"name": MODEL, "version": 99}})
    assert r.status_code == 422
    assert f"{MODEL}/v99" in r.json()["detail"]
    assert admin.get("/v1/plans").json() == [before]
    assert before["live"] == V2
    assert {a["model"]["version"] for a in _decide(tenant, events, 20)} == {2}
    assert tenant.get(f"/v1/plans/{TENANT}/history").json() == history


def _v2_canary_for_a_share_of_cards(server: Server, tenant: httpx.Client, admin: httpx.Client,
                                    events: Iterator[dict[str, Any]]) -> None:
    """v2 decides for about 30 % of the cards, the same ones on both workers: those the
    stable hash puts below 0.3; a card always sees one model."""
    r = admin.put(f"/v1/plans/{TENANT}", json={"live": V1, "canary": {"model": V2, "share": 0.3}})
    assert r.status_code == 200, r.text
    _all_workers_on(server, r.json()["revision"])
    seen: dict[str, set[tuple[int, str]]] = {}   # card -> (version, role) that decided for it
    for event in events:
        r = tenant.post("/v1/score", json=transaction_json(event))
        assert r.status_code == 200, r.text
        seen.setdefault(event["card_id"], set()).add((r.json()["model"]["version"], r.json()["role"]))
    assert {card: models for card, models in seen.items() if len(models) != 1} == {}, \
        "a card sees one model"
    on_canary = {card for card, models in seen.items() if models == {(2, "canary")}}
    assert {card for card, models in seen.items() if models == {(1, "live")}} == \
        set(seen) - on_canary
    assert 0.2 <= len(on_canary) / len(seen) <= 0.4, f"{len(on_canary)} of {len(seen)} cards"
    assert on_canary == {card for card in seen if bucket(TENANT, f"card_id={card}") < 0.3}


def _shadow_processes(server: Server) -> set[int]:
    """The workers' children that run at ``SCHED_IDLE`` (their shadow processes)."""
    found = set()
    for worker in server.workers():
        for child in children(worker):
            with suppress(OSError):
                if os.sched_getscheduler(child) == os.SCHED_IDLE:
                    found.add(child)
    return found


def _all_workers_on(server: Server, revision: int, *, within_s: float = SWITCH_WITHIN_S) -> None:
    """Wait until every worker reports plan ``revision`` (its ``fraudops_plan_revision``)."""
    deadline = time.monotonic() + within_s
    while True:
        revisions = server.per_worker("fraudops_plan_revision")
        if len(revisions) == 2 and set(revisions.values()) == {revision}:
            return
        assert time.monotonic() < deadline, \
            f"after {within_s} s the workers run revisions {revisions}, not {revision}"
        time.sleep(0.05)


def _decide(client: httpx.Client, events: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Decide on the next ``n`` events."""
    answers = []
    for event in (next(events) for _ in range(n)):
        r = client.post("/v1/score", json=transaction_json(event))
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def _eventually(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        time.sleep(0.05)
