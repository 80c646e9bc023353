"""What the serving layer writes down: decisions, shadow scores, plan changes, API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Role = Literal["live", "canary"]


@dataclass(frozen=True)
class Reason:
    """One feature's contribution to a score (log-odds for LightGBM and logistic models)."""

    feature: str
    value: float | None
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


@dataclass(frozen=True)
class Decision:
    """One answer given to a payment flow; logged durably before it is returned.

    ``(tenant, event_id)`` is unique: a retried request gets the decision already logged, so
    an acknowledged decision never changes.
    """

    tenant: str
    event_id: str
    event_time: datetime          # UTC, timezone-aware
    decided_at: datetime          # UTC, timezone-aware
    model_name: str
    model_version: int
    role: Role
    probability: float            # calibrated
    score: int                    # 0–100
    action: str                   # ALLOW | REVIEW | PREVENT
    latency_us: int               # features + model + policy, in process
    reasons: tuple[Reason, ...] = ()
    source: str = "api"           # api | batch

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "event_id": self.event_id,
                "event_time": self.event_time.isoformat(), "decided_at": self.decided_at.isoformat(),
                "model_name": self.model_name, "model_version": self.model_version,
                "role": self.role, "probability": self.probability, "score": self.score,
                "action": self.action, "latency_us": self.latency_us,
                "reasons": [r.to_dict() for r in self.reasons], "source": self.source}


@dataclass(frozen=True)
class ShadowScore:
    """A shadow model's score of an event that another model decided; ``error`` when it failed."""

    tenant: str
    event_id: str
    model_name: str
    model_version: int
    scored_at: datetime           # UTC, timezone-aware
    probability: float | None
    score: int | None
    action: str | None
    latency_us: int
    error: str | None = None


@dataclass(frozen=True)
class PlanChange:
    """One audited change of a tenant's deployment plan (``plan`` is None when removed)."""

    revision: int
    tenant: str
    actor: str
    changed_at: datetime
    previous: dict[str, Any] | None
    plan: dict[str, Any] | None
    reason: str = ""


@dataclass(frozen=True)
class ApiKey:
    """An API key's record (never the key itself: only its SHA-256 is stored).

    ``tenant`` None is an admin key: it may change plans and read every tenant, but not score.
    """

    key_id: str
    tenant: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    label: str = ""
