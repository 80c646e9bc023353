"""The deployment plan: which model decides for a tenant, which ones only watch.

One :class:`TenantPlan` per tenant (client): a live model that decides, zero or more shadow
models that score the same events after the answer is decided, and optionally a canary that
decides for a fixed share of the tenant's cards. A card always lands on the same side of the
canary split (a hash of the card, not a coin per request), so one card sees one model and its
customer one consistent policy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from fraudops.core import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True, order=True)
class ModelRef:
    """One registered model version: ``name`` in the registry, ``version`` ≥ 1."""

    name: str
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(f"model name {self.name!r} is not a registry name "
                             "(letters, digits, '_', '.', '-')")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InputError(f"model version of {self.name!r} must be an integer >= 1; "
                             f"got {self.version!r}")

    def __str__(self) -> str:
        return f"{self.name}/v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model") -> ModelRef:
        if not isinstance(data, dict) or set(data) != {"name", "version"}:
            raise InputError(f"{where} must be an object with exactly 'name' and 'version'; "
                             f"got {data!r}")
        return cls(data["name"], data["version"])


@dataclass(frozen=True)
class ShadowSpec:
    """A model that scores ``sample`` (0 < sample ≤ 1) of the tenant's events, never deciding."""

    model: ModelRef
    sample: float = 1.0

    def __post_init__(self) -> None:
        _share(self.sample, f"shadow {self.model} sample", allow_zero=False)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "sample": self.sample}


@dataclass(frozen=True)
class CanarySpec:
    """A model that decides for ``share`` (0 < share < 1) of the tenant's cards."""

    model: ModelRef
    share: float

    def __post_init__(self) -> None:
        _share(self.share, f"canary {self.model} share", allow_zero=False)
        if self.share >= 1.0:
            raise InputError(f"canary {self.model} share must be below 1 (make it live instead); "
                             f"got {self.share!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "share": self.share}


@dataclass(frozen=True)
class TenantPlan:
    """What serves one tenant. Every model appears once: a model cannot both decide and watch."""

    tenant: str
    live: ModelRef
    shadows: tuple[ShadowSpec, ...] = field(default=())
    canary: CanarySpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not _NAME.match(self.tenant):
            raise InputError(f"tenant {self.tenant!r} is not a valid tenant name")
        object.__setattr__(self, "shadows", tuple(self.shadows))
        refs = self.models
        if len(set(refs)) != len(refs):
            raise InputError(f"tenant {self.tenant!r}: a model appears twice in the plan "
                             f"({', '.join(map(str, refs))})")

    @property
    def models(self) -> list[ModelRef]:
        """Every model of the plan: live, the canary, then the shadows."""
        canary = [] if self.canary is None else [self.canary.model]
        return [self.live, *canary, *(s.model for s in self.shadows)]

    def deciding(self, card_key: str | None) -> tuple[ModelRef, str]:
        """The model that decides for a card, and its role (``live`` or ``canary``)."""
        if self.canary is not None and card_key is not None \
                and bucket(self.tenant, card_key) < self.canary.share:
            return self.canary.model, "canary"
        return self.live, "live"

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "live": self.live.to_dict(),
                "shadows": [s.to_dict() for s in self.shadows],
                "canary": None if self.canary is None else self.canary.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> TenantPlan:
        """Parse a plan (the API's and the plan store's JSON); errors name the field."""
        if not isinstance(data, dict):
            raise InputError(f"a tenant plan must be an object; got {type(data).__name__}")
        unknown = set(data) - {"tenant", "live", "shadows", "canary"}
        if unknown:
            raise InputError(f"unknown field(s) in the tenant plan: {sorted(unknown)}")
        for key in ("tenant", "live"):
            if key not in data:
                raise InputError(f"the tenant plan lacks {key!r}")
        shadows = data.get("shadows") or []
        if not isinstance(shadows, list):
            raise InputError("'shadows' must be a list")
        parsed = []
        for i, s in enumerate(shadows):
            if not isinstance(s, dict) or "model" not in s or set(s) - {"model", "sample"}:
                raise InputError(f"shadows[{i}] must be an object with 'model' and optional "
                                 f"'sample'; got {s!r}")
            parsed.append(ShadowSpec(ModelRef.from_dict(s["model"], f"shadows[{i}].model"),
                                     s.get("sample", 1.0)))
        canary = data.get("canary")
        if canary is not None and (not isinstance(canary, dict)
                                   or set(canary) != {"model", "share"}):
            raise InputError(f"'canary' must be an object with 'model' and 'share'; got {canary!r}")
        return cls(data["tenant"], ModelRef.from_dict(data["live"], "live"), tuple(parsed),
                   None if canary is None
                   else CanarySpec(ModelRef.from_dict(canary["model"], "canary.model"),
                                   canary["share"]))


def bucket(tenant: str, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same card lands in the same place on every
    replica and after every restart (no per-process hash seed)."""
    digest = hashlib.blake2b(f"{tenant}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sampled(tenant: str, event_id: str, model: ModelRef, sample: float) -> bool:
    """Whether a shadow with ``sample`` < 1 scores this event (stable per event and model)."""
    return sample >= 1.0 or bucket(f"{tenant}\x1f{model}", event_id) < sample


def _share(value: Any, what: str, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not (0.0 <= value <= 1.0) or (value == 0 and not allow_zero):
        raise InputError(f"{what} must be a number in {'[0' if allow_zero else '(0'}, 1]; "
                         f"got {value!r}")
