"""The scoring engine: one transaction in, one logged decision out, in process.

The same object serves ``POST /v1/score``, ``POST /v1/score/batch`` and ``fraudops score``:
the online features (read and update the state), the deciding model of the tenant's plan (live,
or the canary for the cards in its share), the model's policy, the reasons, the decision log,
then the shadows off the request path. Nothing here builds a DataFrame or an array per call.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fraudops.core import InputError
from fraudops.features import OnlineEngine

from ._errors import UnknownTenant
from ._metrics import ServingMetrics
from ._model_pool import LoadedModel, ModelPool
from ._plan import TenantPlan, sampled
from ._records import Decision, Reason, ShadowScore
from ._shadow import ShadowJob, Shadows

#: entity keys that identify "one customer" for the canary split, in order of preference
CANARY_KEYS = ("card_id", "account_id", "customer_id", "email", "device_id")


class DecisionSink(Protocol):
    """Where decisions go (the decision log); ``record_many`` is durable when it returns."""

    def record_many(self, decisions: Sequence[Decision]) -> list[tuple[Decision, bool]]: ...

    def record_shadows(self, scores: Sequence[ShadowScore]) -> None: ...

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decision]: ...


@dataclass(frozen=True)
class ScoreResult:
    """A decision, the features it was made on (``explain``), and whether it was a retry."""

    decision: Decision
    features: dict[str, float | None] | None = None
    replayed: bool = False


@dataclass(frozen=True)
class _TenantRoute:
    plan: TenantPlan
    live: LoadedModel
    canary: LoadedModel | None
    shadows: tuple[tuple[LoadedModel, float], ...]


class ScoringEngine:
    """Decides on transactions for every tenant of a deployment plan.

    Parameters
    ----------
    online : OnlineEngine
        The features, with their state store (shared by every worker of a server).
    models : ModelPool
        Loads and caches the plan's models.
    plans : mapping of tenant to TenantPlan
        The deployment plan; replaced atomically with :meth:`use_plans`.
    log : DecisionSink or None
        The decision log. ``None`` only for dry runs and tests: nothing is durable then.
    shadows : Shadows or None
        Runs shadow models off the request path (a thread or a process of their own);
        ``None`` skips shadows.
    n_reasons : int
        How many feature contributions a decision carries (0: none, saves ~20–60 µs).
    max_future : timedelta
        How far ahead of the server's clock an ``event_time`` may be (clock skew).
    """

    def __init__(self, online: OnlineEngine, models: ModelPool, plans: Mapping[str, TenantPlan],
                 *, log: DecisionSink | None, shadows: Shadows | None = None,
                 metrics: ServingMetrics | None = None, n_reasons: int = 3,
                 max_future: timedelta = timedelta(days=1)) -> None:
        self.online = online
        self.models = models
        self.log = log
        self.shadows = shadows
        self.metrics = metrics
        self.n_reasons = n_reasons
        self.max_future = max_future
        self.revision = 0
        self._routes: dict[str, _TenantRoute] = {}
        self._swap = threading.Lock()
        self.use_plans(plans)

    # -- the plan ----------------------------------------------------------------------------
    @property
    def plans(self) -> dict[str, TenantPlan]:
        return {tenant: route.plan for tenant, route in self._routes.items()}

    def use_plans(self, plans: Mapping[str, TenantPlan], revision: int | None = None) -> None:
        """Load every model of ``plans``, then switch to them at once.

        Raises :class:`ModelLoadError` when one model cannot serve; the running plan stays.
        """
        routes = {}
        for tenant, plan in plans.items():
            loaded = self.models.prepare(plan.models)
            routes[tenant] = _TenantRoute(
                plan, loaded[plan.live], None if plan.canary is None else loaded[plan.canary.model],
                tuple((loaded[s.model], s.sample) for s in plan.shadows))
        with self._swap:
            if revision is not None and revision < self.revision:
                return   # a slower load of an older revision must not undo a newer one
            self._routes = routes
            if revision is not None:
                self.revision = revision
        self.models.retain(ref for plan in plans.values() for ref in plan.models)

    def route(self, tenant: str) -> _TenantRoute:
        route = self._routes.get(tenant)
        if route is None:
            raise UnknownTenant(f"tenant {tenant!r} has no deployment plan: deploy a live model "
                                f"for it first (fraudops deploy {tenant} --live MODEL/VERSION)")
        return route

    @staticmethod
    def _deciding(route: _TenantRoute, event: Mapping[str, Any]) -> tuple[LoadedModel, str]:
        """The model that decides for this event and its role (``live`` or ``canary``)."""
        if route.canary is None:
            return route.live, "live"
        _, role = route.plan.deciding(_canary_key(event))
        return (route.canary, role) if role == "canary" else (route.live, role)

    # -- scoring -----------------------------------------------------------------------------
    def score(self, event: Mapping[str, Any], *, explain: bool = False,
              source: str = "api") -> ScoreResult:
        """Decide on one canonical transaction (``event_time`` aware datetime or µs).

        A retried ``(tenant, event_id)`` already in the log returns the logged decision and
        changes nothing (one indexed read per call buys that). An ``event_time`` more than
        ``max_future`` ahead of the clock is refused.
        """
        [result] = self.score_many([event], explain=[explain], source=source)
        if isinstance(result, Exception):
            raise result
        return result

    def score_many(self, events: Sequence[Mapping[str, Any]], *,
                   explain: Sequence[bool] | None = None,
                   source: str = "api") -> list[ScoreResult | InputError | UnknownTenant]:
        """:meth:`score` for each event in order, with one read of the log for retries, one
        read-modify-write of the feature state and one log commit for all of them.

        Each event is decided as if the ones before it had been decided alone (same features,
        scores and retries): this is what a server does with the requests that arrive
        together. An event that cannot be decided gets its error in its place; a store
        failure raises for the whole batch, of which nothing was then acknowledged.
        ``latency_us`` of each decision runs from the start of the batch to its action.
        """
        if self.shadows is None or source == "batch":
            # a batch is throughput work: held off for its whole length, its shadows would
            # fall behind and be dropped
            return self._score_many(events, explain, source)
        with self.shadows.deciding():   # the shadow thread keeps off the GIL meanwhile
            return self._score_many(events, explain, source)

    def _score_many(self, events: Sequence[Mapping[str, Any]], explain: Sequence[bool] | None,
                    source: str) -> list[ScoreResult | InputError | UnknownTenant]:
        start = time.perf_counter_ns()
        wanted = [False] * len(events) if explain is None else explain
        results: list[ScoreResult | InputError | UnknownTenant | None] = [None] * len(events)
        plan: list[tuple[int, _TenantRoute, LoadedModel, str, datetime]] = []
        first: dict[tuple[str, str], int] = {}
        later: list[tuple[int, int]] = []   # (index, index of the same event earlier in the batch)
        now = datetime.now(UTC)
        for i, event in enumerate(events):
            try:
                key = (event["tenant"], event["event_id"])
                route = self.route(key[0])   # once: the decision and its shadows use one plan
                model, role = self._deciding(route, event)
                event_time = self._event_time(event, now)
            except (InputError, UnknownTenant) as exc:
                results[i] = exc
                continue
            if key in first:
                later.append((i, first[key]))
                continue
            first[key] = i
            plan.append((i, route, model, role, event_time))
        # a retry (same tenant and event_id) gets the logged decision, whatever else it
        # carries now: a re-stamped retry must not enter the state a second time
        logged = {} if self.log is None or not first else self.log.get_many(list(first))
        if logged:
            for key, found in logged.items():
                results[first[key]] = ScoreResult(found, None, True)
            plan = [p for p in plan if results[p[0]] is None]
        computed = self.online.process_many([events[i] for i, *_ in plan])
        decided: list[tuple[int, _TenantRoute, LoadedModel, Decision, dict[str, Any]]] = []
        jobs: list[ShadowJob] = []
        for (i, route, model, role, event_time), features in zip(plan, computed, strict=True):
            if isinstance(features, InputError):
                results[i] = features
                continue
            decision = self._decide(events[i], event_time, model, role, features, start, source)
            decided.append((i, route, model, decision, features))
        stored = (self.log.record_many([d[3] for d in decided]) if self.log is not None
                  else [(d[3], True) for d in decided])
        for (i, route, model, _, features), (decision, inserted) in zip(decided, stored,
                                                                        strict=True):
            if not inserted:   # a concurrent retry logged it first
                results[i] = ScoreResult(decision, None, True)
                continue
            if self.metrics is not None:
                self.metrics.scoring_latency.labels(str(model.ref), decision.role).observe(
                    decision.latency_us / 1e6)
                self.metrics.decisions.labels(decision.tenant, str(model.ref), decision.role,
                                              decision.action).inc()
            self._shadow(jobs, route, decision.tenant, decision.event_id, features)
            results[i] = ScoreResult(decision, dict(features) if wanted[i] else None, False)
        if jobs and self.shadows is not None:
            self.shadows.submit_many(jobs)
        for i, j in later:
            earlier = results[j]
            results[i] = earlier if not isinstance(earlier, ScoreResult) else \
                ScoreResult(earlier.decision, None, True)
        return results  # type: ignore[return-value]

    def _decide(self, event: Mapping[str, Any], event_time: datetime, model: LoadedModel,
                role: str, features: Mapping[str, float | None], start_ns: int,
                source: str) -> Decision:
        vector = model.model.vector(features)
        if self.n_reasons:
            p, contributions = model.model.explain_one(vector)
            reasons = self._reasons(model, vector, contributions)
        else:
            p, reasons = model.model.predict_one(vector), ()
        return Decision(
            tenant=event["tenant"], event_id=event["event_id"], event_time=event_time,
            decided_at=datetime.now(UTC), model_name=model.ref.name,
            model_version=model.ref.version, role=role,  # type: ignore[arg-type]
            probability=p, score=model.policy.score(p), action=model.policy.action(p),
            latency_us=(time.perf_counter_ns() - start_ns) // 1000, reasons=reasons,
            source=source)

    def _event_time(self, event: Mapping[str, Any], now: datetime) -> datetime:
        event_time = _datetime(event["event_time"])
        if event_time > now + self.max_future:
            raise InputError(f"event {event['event_id']!r}: event_time {event_time.isoformat()} is"
                             f" more than {self.max_future} ahead of this server's clock; a time"
                             " in the future would make every later event of its card look late")
        return event_time

    def label(self, label: Mapping[str, Any]) -> int:
        """Apply one late label (``tenant, event_id, is_fraud, label_time``) to the state."""
        self.route(label["tenant"])
        return self.online.label_one(label)

    def _reasons(self, model: LoadedModel, vector: list[float],
                 contributions: list[float]) -> tuple[Reason, ...]:
        # the largest magnitudes first, ties in feature order (as a stable sort); the keys
        # precomputed in C: a Python key function per feature was 2 % of a decision
        magnitude = list(map(abs, contributions))
        top = heapq.nlargest(self.n_reasons, range(len(vector)), key=magnitude.__getitem__)
        names = model.feature_names
        return tuple(Reason(names[i], None if vector[i] != vector[i] else vector[i],
                            contributions[i]) for i in top)

    def _shadow(self, jobs: list[ShadowJob], route: _TenantRoute, tenant: str, event_id: str,
                features: Mapping[str, Any]) -> None:
        if self.shadows is None or not route.shadows:
            return
        chosen = tuple(m for m, sample in route.shadows if sampled(tenant, event_id, m.ref, sample))
        if chosen:
            jobs.append(ShadowJob(tenant, event_id, features, chosen))


def _canary_key(event: Mapping[str, Any]) -> str | None:
    for key in CANARY_KEYS:
        value = event.get(key)
        if value is not None:
            return f"{key}={value}"
    return None


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return _EPOCH + timedelta(microseconds=int(value))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
