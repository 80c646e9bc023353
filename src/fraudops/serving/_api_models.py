"""The HTTP API's request and response bodies (pydantic v2; they make the OpenAPI schema).

Types are strict where a payment system could send something subtly wrong: an amount is an
integer number of minor units (``"12.50"`` or ``12.5`` is refused, never rounded), times carry
a timezone. Fields the API does not know are kept as the transaction's attributes, checked for
their name and a scalar value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from fraudops.core import SchemaError
from fraudops.events import ENTITY_KEYS, check_attribute_name

from ._plan import TenantPlan

MAX_ATTRIBUTES = 64
MAX_BATCH = 10_000
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
                            examples=["acme"])]
Key = Annotated[str | None, Field(default=None, min_length=1, max_length=256)]


def _iso_text(value: Any) -> Any:
    """Times are ISO 8601 text, as the schema says; a bare number is ambiguous (seconds?
    milliseconds?) and refused rather than guessed."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string with a timezone, "
                         "e.g. 2026-11-29T10:15:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """In UTC, within 1970–2199: the event clock is microseconds since the epoch, and a time
    whose UTC value leaves the calendar (0001-01-01T00:30+01:00) is an input error."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the calendar once converted to UTC") from None
    if not 1970 <= utc.year < 2200:
        raise ValueError("must lie between 1970 and 2199 (UTC)")
    return utc


Time = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]
_SCALAR = (str, int, float, bool)


class TransactionIn(BaseModel):
    """One transaction to decide on. Unknown fields are attributes (lower snake case names,
    scalar values); the feature definitions read the ones they name."""

    model_config = ConfigDict(extra="allow", str_max_length=1024, json_schema_extra={
        "examples": [{"event_id": "tx-000123", "event_time": "2026-11-29T10:15:00Z",
                      "amount_cents": 12550, "currency": "EUR", "card_id": "C123",
                      "terminal_id": "T9", "channel": "web"}]})

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    event_time: Time
    amount_cents: Annotated[StrictInt, Field(ge=-(10**15), le=10**15,
                                             description="Amount in minor units (cents).")]
    tenant: Name | None = Field(None, description="Defaults to the API key's tenant.")
    currency: Annotated[str | None, Field(default=None, min_length=3, max_length=3)] = None
    card_id: Key = None
    customer_id: Key = None
    account_id: Key = None
    terminal_id: Key = None
    merchant_id: Key = None
    email: Key = None
    device_id: Key = None
    ip_address: Key = None

    @model_validator(mode="after")
    def _attributes(self) -> TransactionIn:
        extra = self.model_extra or {}
        if len(extra) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes; got {len(extra)}")
        for name, value in extra.items():
            try:
                check_attribute_name(name)
            except SchemaError as e:
                raise ValueError(str(e)) from None
            if value is not None and not isinstance(value, _SCALAR):
                raise ValueError(f"attribute {name!r}: must be a string, number, boolean or "
                                 f"null; got {type(value).__name__}")
            if isinstance(value, str) and len(value) > 1024:
                raise ValueError(f"attribute {name!r}: at most 1024 characters")
            if isinstance(value, float) and value != value:
                raise ValueError(f"attribute {name!r}: NaN is not a value")
        return self

    def event(self, tenant: str) -> dict[str, Any]:
        """The canonical event the online engine reads (attributes flattened)."""
        out: dict[str, Any] = {"event_id": self.event_id,
                               "event_time": self.event_time.astimezone(UTC),
                               "tenant": tenant, "amount_cents": self.amount_cents,
                               "currency": self.currency}
        for key in ENTITY_KEYS:
            out[key] = getattr(self, key)
        out.update(self.model_extra or {})
        return out


class LabelIn(BaseModel):
    """A late fraud label (a chargeback, a confirmed review)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    is_fraud: StrictBool
    label_time: Time
    tenant: Name | None = None
    source: Annotated[str, Field(max_length=128)] = "api"


class ReasonOut(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(description="Additive contribution to the log-odds of fraud.")


class ModelOut(BaseModel):
    name: str
    version: int


class ScoreOut(BaseModel):
    """The decision. ``score`` is the calibrated probability × 100, rounded."""

    event_id: str
    tenant: str
    score: Annotated[int, Field(ge=0, le=100)]
    probability: float
    action: Literal["ALLOW", "REVIEW", "PREVENT"]
    model_version: int
    model: ModelOut
    role: Literal["live", "canary"]
    reasons: list[ReasonOut]
    decided_at: datetime
    replayed: bool = Field(False, description="True when this event was decided before "
                                              "(a retry): the logged decision is returned.")
    features: dict[str, float | None] | None = Field(
        None, description="The feature values used (only with explain=true).")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[TransactionIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchError(BaseModel):
    index: int
    event_id: str
    error: str


class BatchOut(BaseModel):
    results: list[ScoreOut]
    errors: list[BatchError]


class LabelOut(BaseModel):
    event_id: str
    tenant: str
    states_updated: int = Field(description="Entity states that hold the event (0: unknown "
                                            "event or outside every window).")


class ModelRefIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    version: Annotated[StrictInt, Field(ge=1)]


class ShadowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelRefIn
    sample: Annotated[float, Field(gt=0, le=1)] = 1.0


class CanaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelRefIn
    share: Annotated[float, Field(gt=0, lt=1)]


class PlanIn(BaseModel):
    """A tenant's deployment plan: the live model, shadows, and an optional canary."""

    model_config = ConfigDict(extra="forbid")

    live: ModelRefIn
    shadows: Annotated[list[ShadowIn], Field(max_length=16)] = []
    canary: CanaryIn | None = None
    reason: Annotated[str, Field(max_length=500)] = ""

    def plan(self, tenant: str) -> TenantPlan:
        data = self.model_dump(exclude={"reason"})
        return TenantPlan.from_dict({"tenant": tenant, **data})


class PlanOut(BaseModel):
    tenant: str
    live: ModelOut
    shadows: list[dict[str, Any]]
    canary: dict[str, Any] | None
    revision: int


class PlanChangeOut(BaseModel):
    revision: int
    tenant: str
    actor: str
    changed_at: datetime
    previous: dict[str, Any] | None
    plan: dict[str, Any] | None
    reason: str


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in words that name the field and the reason."""

    detail: str | list[dict[str, Any]]
