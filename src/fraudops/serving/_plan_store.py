"""The deployment plans that serve, one per tenant, and the audit of every change to them.

Every serving process polls :meth:`PlanStore.revision` (one indexed single-row read) and
reloads the plans when the number moves, so a change takes effect without a restart. A change
writes the plan, an audit row and the new revision in one transaction: the audit is complete
by construction, and two concurrent changes get two distinct, consecutive revisions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fraudops.core import InputError, StoreError

from ._plan import TenantPlan
from ._records import PlanChange
from ._sql import Database, OnDatabase, Row, Session, from_micros, to_micros

_DDL = (
    ("plan_changes", """CREATE TABLE IF NOT EXISTS plan_changes (
        revision BIGINT PRIMARY KEY, tenant TEXT NOT NULL, actor TEXT NOT NULL,
        changed_at_us BIGINT NOT NULL, previous TEXT, plan TEXT, reason TEXT NOT NULL)"""),
    ("plan_changes_by_tenant",
     "CREATE INDEX IF NOT EXISTS plan_changes_by_tenant ON plan_changes (tenant, revision)"),
    ("plan_revision", """CREATE TABLE IF NOT EXISTS plan_revision (
        id BIGINT PRIMARY KEY CHECK (id = 1), revision BIGINT NOT NULL)"""),
    ("plan_revision", "INSERT INTO plan_revision (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING"),
    ("tenant_plans", """CREATE TABLE IF NOT EXISTS tenant_plans (
        tenant TEXT PRIMARY KEY, plan TEXT NOT NULL, revision BIGINT NOT NULL,
        changed_at_us BIGINT NOT NULL, actor TEXT NOT NULL)"""),
)
_CHANGE_COLUMNS = "revision, tenant, actor, changed_at_us, previous, plan, reason"


class PlanStore(OnDatabase):
    """Each tenant's current :class:`TenantPlan`, with an append-only audit of changes.

    Open with :meth:`open` (SQLite or PostgreSQL URL; the decision log's database may be
    shared). Whether the plan's models load is the caller's check, before :meth:`apply`.

    Examples
    --------
    >>> import tempfile
    >>> from fraudops.serving._plan import ModelRef
    >>> with PlanStore.open(f"sqlite:///{tempfile.mkdtemp()}/plans.db") as store:
    ...     change = store.apply(TenantPlan("acme", ModelRef("fraud-acme", 3)), actor="ana")
    ...     change.revision, store.revision(), store.get("acme").live.version
    (1, 1, 3)
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> PlanStore:
        """Connect to the store at ``url`` (``sqlite:///<path>`` or ``postgresql://...``, as
        :meth:`DecisionLog.open`) and create its tables if missing."""
        return cls(Database.open(url, ddl=_DDL, what="plan store"))

    def revision(self) -> int:
        """The number of the last change (0 before any): poll it, reload when it moves."""
        row = self.db.run("read the plan revision",
                          lambda session: session.one("SELECT revision FROM plan_revision WHERE id = 1"))
        return 0 if row is None else int(row[0])

    def plans(self) -> tuple[int, dict[str, TenantPlan]]:
        """The revision and every tenant's plan, read in one statement (one snapshot)."""
        rows = self.db.run("read the plans", lambda session: session.all(
            "SELECT r.revision, p.tenant, p.plan FROM plan_revision r"
            " LEFT JOIN tenant_plans p ON 1 = 1 WHERE r.id = 1 ORDER BY p.tenant"))
        revision = int(rows[0][0]) if rows else 0
        return revision, {tenant: TenantPlan.from_dict(json.loads(plan))
                          for _, tenant, plan in rows if tenant is not None}

    def get(self, tenant: str) -> TenantPlan | None:
        """The plan serving ``tenant``, or None."""
        row = self.db.run("read a plan", lambda session: session.one(
            "SELECT plan FROM tenant_plans WHERE tenant = ?", (tenant,)))
        return None if row is None else TenantPlan.from_dict(json.loads(row[0]))

    def apply(self, plan: TenantPlan, *, actor: str, reason: str = "") -> PlanChange:
        """Make ``plan`` its tenant's plan; returns the audited change (with the previous plan)."""
        _check_actor(actor)
        text = json.dumps(plan.to_dict(), sort_keys=True)

        def change(session: Session) -> PlanChange:
            revision, now, previous = self._begin_change(session, plan.tenant)
            session.execute("INSERT INTO tenant_plans (tenant, plan, revision, changed_at_us, actor)"
                            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET"
                            " plan = excluded.plan, revision = excluded.revision,"
                            " changed_at_us = excluded.changed_at_us, actor = excluded.actor",
                            (plan.tenant, text, revision, now, actor))
            return self._audit(session, revision, plan.tenant, actor, now, previous, text, reason)

        return self.db.run(f"apply the plan of tenant {plan.tenant!r}", change, write=True)

    def remove(self, tenant: str, *, actor: str, reason: str = "") -> PlanChange:
        """Stop serving ``tenant``; :class:`InputError` if it has no plan."""
        _check_actor(actor)

        def change(session: Session) -> PlanChange:
            revision, now, previous = self._begin_change(session, tenant)
            if previous is None:
                raise InputError(f"tenant {tenant!r} has no plan to remove")
            session.execute("DELETE FROM tenant_plans WHERE tenant = ?", (tenant,))
            return self._audit(session, revision, tenant, actor, now, previous, None, reason)

        return self.db.run(f"remove the plan of tenant {tenant!r}", change, write=True)

    def history(self, tenant: str | None = None, limit: int = 100) -> list[PlanChange]:
        """Audited changes, newest first (of one tenant, or all)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"The 'limit' parameter of history must be an integer >= 0; got {limit!r}")
        where, params = ("WHERE tenant = ? ", [tenant]) if tenant is not None else ("", [])
        rows = self.db.run("read the plan history", lambda session: session.all(
            f"SELECT {_CHANGE_COLUMNS} FROM plan_changes {where}ORDER BY revision DESC LIMIT ?",
            [*params, limit]))
        return [_change(row) for row in rows]

    def _begin_change(self, session: Session, tenant: str) -> tuple[int, int, str | None]:
        """Take the next revision (locking the counter first), then read the plan it replaces."""
        row = session.one("UPDATE plan_revision SET revision = revision + 1 WHERE id = 1"
                          " RETURNING revision")
        if row is None:
            raise StoreError(f"plan store at {self.db.target.where}: the row of table plan_revision"
                             " is missing (deleted by hand?); restore it with the last revision of"
                             " plan_changes")
        previous = session.one("SELECT plan FROM tenant_plans WHERE tenant = ?", (tenant,))
        now = to_micros(datetime.now(UTC), "changed_at")
        return int(row[0]), now, None if previous is None else str(previous[0])

    @staticmethod
    def _audit(session: Session, revision: int, tenant: str, actor: str, now: int,
               previous: str | None, plan: str | None, reason: str) -> PlanChange:
        row = (revision, tenant, actor, now, previous, plan, reason)
        session.execute(f"INSERT INTO plan_changes ({_CHANGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        row)
        return _change(row)


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not actor.strip():
        raise InputError(f"a plan change needs an 'actor' (who made it) for the audit; got {actor!r}")


def _change(row: Row) -> PlanChange:
    def parsed(text: str | None) -> dict[str, Any] | None:
        return None if text is None else dict(json.loads(text))

    return PlanChange(revision=int(row[0]), tenant=row[1], actor=row[2],
                      changed_at=from_micros(row[3]), previous=parsed(row[4]), plan=parsed(row[5]),
                      reason=row[6])
