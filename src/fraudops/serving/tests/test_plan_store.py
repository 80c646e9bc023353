"""The plan store serves one plan per tenant and audits every change, on SQLite and PostgreSQL.

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``) with a schema of their
own, dropped afterwards; they are skipped (with the reason) only when it is unreachable.
"""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fraudops.core import InputError
from fraudops.serving import CanarySpec, ModelRef, PlanStore, ShadowSpec, TenantPlan
from fraudops.serving import _sql as sql

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/plans.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str) -> Iterator[PlanStore]:
    with PlanStore.open(url) as opened:
        yield opened


def plan(tenant: str = "acme", live: int = 1, *, shadow: int | None = None,
         canary: int | None = None) -> TenantPlan:
    model = f"fraud-{tenant}"
    return TenantPlan(tenant, ModelRef(model, live),
                      () if shadow is None else (ShadowSpec(ModelRef(model, shadow), 0.5),),
                      None if canary is None else CanarySpec(ModelRef(model, canary), 0.1))


def test_empty_store_is_at_revision_zero(store: PlanStore) -> None:
    assert store.revision() == 0
    assert store.plans() == (0, {})
    assert store.get("acme") is None
    assert store.history() == []


def test_applied_plan_is_served_and_audited(store: PlanStore) -> None:
    before = datetime.now(UTC)
    change = store.apply(plan(shadow=2, canary=3), actor="ana", reason="first model")
    assert (change.revision, change.tenant, change.actor, change.reason) == (1, "acme", "ana",
                                                                             "first model")
    assert change.previous is None
    assert change.plan == plan(shadow=2, canary=3).to_dict()
    assert before <= change.changed_at <= datetime.now(UTC)
    assert store.get("acme") == plan(shadow=2, canary=3)
    assert store.plans() == (1, {"acme": plan(shadow=2, canary=3)})
    assert store.history() == [change]


def test_change_records_the_plan_it_replaced(store: PlanStore) -> None:
    store.apply(plan(live=1), actor="ana")
    change = store.apply(plan(live=2, shadow=1), actor="bob", reason="promote v2")
    assert change.previous == plan(live=1).to_dict()
    assert change.plan == plan(live=2, shadow=1).to_dict()
    assert store.get("acme") == plan(live=2, shadow=1)


def test_removed_tenant_is_no_longer_served(store: PlanStore) -> None:
    store.apply(plan("acme"), actor="ana")
    store.apply(plan("globex"), actor="ana")
    change = store.remove("acme", actor="bob", reason="contract ended")
    assert (change.revision, change.plan, change.previous) == (3, None, plan("acme").to_dict())
    assert store.get("acme") is None
    assert store.plans() == (3, {"globex": plan("globex")})


def test_removing_a_tenant_without_plan_names_it_and_changes_nothing(store: PlanStore) -> None:
    store.apply(plan("acme"), actor="ana")
    with pytest.raises(InputError, match="tenant 'globex' has no plan"):
        store.remove("globex", actor="bob")
    assert store.revision() == 1
    assert len(store.history()) == 1


def test_change_without_actor_is_refused(store: PlanStore) -> None:
    with pytest.raises(InputError, match="needs an 'actor'"):
        store.apply(plan(), actor=" ")
    assert store.revision() == 0


def test_history_is_newest_first_per_tenant_and_limited(store: PlanStore) -> None:
    for live, tenant in enumerate(["acme", "globex", "acme", "globex", "acme"], start=1):
        store.apply(plan(tenant, live), actor="ana")
    assert [c.revision for c in store.history()] == [5, 4, 3, 2, 1]
    assert [c.revision for c in store.history("acme")] == [5, 3, 1]
    assert [c.revision for c in store.history("acme", limit=2)] == [5, 3]
    assert [c.previous["live"]["version"] for c in store.history("globex")
            if c.previous] == [2]


def test_change_is_visible_from_another_connection(url: str, store: PlanStore) -> None:
    """What a second serving process sees when it polls the revision."""
    with PlanStore.open(url) as other:
        assert other.revision() == 0
        store.apply(plan(live=2), actor="ana")
        assert other.revision() == 1
        assert other.plans() == (1, {"acme": plan(live=2)})


def test_concurrent_threads_get_distinct_revisions(store: PlanStore) -> None:
    revisions: list[int] = []

    def work(n: int) -> None:
        for i in range(5):
            revisions.append(store.apply(plan(f"t{n}", i + 1), actor=f"worker{n}").revision)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(revisions) == list(range(1, 31))
    assert sorted(c.revision for c in store.history(limit=100)) == list(range(1, 31))
    assert store.plans() == (30, {f"t{n}": plan(f"t{n}", 5) for n in range(6)})


def test_opening_beside_a_change_in_progress_does_not_wait(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarting server opens the store while another one holds a change uncommitted."""
    PlanStore.open(url).close()
    monkeypatch.setattr(sql, "LOCK_TIMEOUT_SECONDS", 0.2)
    if url.startswith("sqlite"):
        holder: Any = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(url.replace("?schema=", "?options=-csearch_path%3D"))
    holder.execute("UPDATE plan_revision SET revision = revision + 1 WHERE id = 1")
    try:
        with PlanStore.open(url) as store:
            assert store.revision() == 0
    finally:
        holder.rollback()
        holder.close()


APPLIER = """
import sys
from fraudops.serving import ModelRef, PlanStore, TenantPlan
url, worker = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
store = PlanStore.open(url)
for i in range(1, 101):
    change = store.apply(TenantPlan("acme", ModelRef(f"fraud-{worker}", i)), actor=worker)
    print(change.revision, flush=True)
"""


def test_two_processes_applying_get_distinct_revisions(url: str) -> None:
    """Each change's audit row names the plan it really replaced, whoever wrote that one."""
    procs = [subprocess.Popen([sys.executable, "-c", APPLIER, url, worker], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for worker in ("a", "b")]
    for p in procs:  # both have imported fraudops: let them open and apply at the same moment
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n", p.communicate()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    revisions = [int(line) for out, _ in outputs for line in out.split()]
    assert sorted(revisions) == list(range(1, 201))
    with PlanStore.open(url) as store:
        history = store.history(limit=1000)[::-1]
        assert [c.revision for c in history] == list(range(1, 201))
        for before, after in itertools.pairwise(history):
            assert after.previous == before.plan
