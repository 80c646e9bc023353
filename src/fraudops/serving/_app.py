"""The HTTP API: FastAPI over the scoring engine, the decision log and the deployment plan.

Every error is a JSON ``{"detail": ...}`` naming the field and the reason; bad input is a 4xx,
never a 5xx. A key of one tenant reaches that tenant's decisions and plan only; admin keys
(``fraudops keys create --admin``) manage plans and may act for any tenant.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import fraudops
from fraudops.core import FraudopsError, InputError, StoreError

from ._api_models import (
    BatchError,
    BatchIn,
    BatchOut,
    LabelIn,
    LabelOut,
    ModelOut,
    PlanChangeOut,
    PlanIn,
    PlanOut,
    Problem,
    ReasonOut,
    ScoreOut,
    TransactionIn,
)
from ._auth import KeyCache
from ._batcher import MicroBatcher
from ._engine import ScoreResult
from ._errors import ModelLoadError, NotAuthorized, UnknownTenant
from ._plan import TenantPlan
from ._records import ApiKey, PlanChange
from ._runtime import Runtime, ServingConfig, tune_server_process

T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text} for code, text in (
        (400, "The body is not JSON text at all (e.g. not UTF-8)"),
        (401, "Missing, unknown or revoked API key"), (403, "The key may not act for this tenant"),
        (404, "Unknown tenant or event"), (413, "Request body too large"),
        (422, "Invalid input; the detail names the field and the reason"),
        (503, "A store is unavailable; retry"))}


def create_app(runtime: Runtime | None = None, *, config: ServingConfig | None = None) -> FastAPI:
    """The API over ``runtime`` (tests), or over a runtime opened at startup from ``config``
    (or ``$FRAUDOPS_SERVING_CONFIG``: what ``fraudops serve`` sets for its workers)."""
    state: dict[str, Runtime] = {}
    if runtime is not None:
        state["rt"] = runtime

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned = "rt" not in state
        if owned:
            state["rt"] = Runtime(config or ServingConfig.from_env())
            tune_server_process()
        try:
            yield
        finally:
            if owned:
                state.pop("rt").close()

    app = _API(title="fraudops scoring API", version=fraudops.__version__, lifespan=lifespan,
                  description="Real-time fraud decisions: live, canary and shadow models per "
                              "tenant, a durable decision log. Authenticate with "
                              "`Authorization: Bearer <key>` or `X-API-Key: <key>`.")

    def rt() -> Runtime:
        return state["rt"]

    app.state.keys = KeyCache(lambda key: rt().keys.authenticate(key))
    batchers: list[MicroBatcher] = []

    def decide_many(events: Sequence[Mapping[str, Any]],
                    explain: Sequence[bool]) -> Sequence[ScoreResult | Exception]:
        runtime = rt()
        runtime.metrics.batch_size.observe(len(events))
        return runtime.engine.score_many(events, explain=explain)

    def batcher() -> MicroBatcher:
        if not batchers:
            batchers.append(MicroBatcher(decide_many, rt().config.micro_batch))
        return batchers[0]

    # -- errors ------------------------------------------------------------------------------
    def problem(status: int, detail: Any) -> JSONResponse:
        if state:
            rt().metrics.errors.labels(str(status)).inc()
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(FraudopsError)
    async def _known(_: Request, e: Exception) -> JSONResponse:
        """Each error of the fraudops tree is one status; the most specific class wins."""
        if isinstance(e, NotAuthorized):
            return problem(e.status, str(e))
        status = next(code for kind, code in _STATUS if isinstance(e, kind))
        return problem(status, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return problem(422, jsonable_encoder(
            [{"field": ".".join(str(p) for p in err.get("loc", ())[1:]) or "body",
              "reason": err.get("msg", ""), "type": err.get("type", "")}
             for err in e.errors()]))

    # -- scoring -----------------------------------------------------------------------------
    async def score(tx: TransactionIn, who: Caller,
                    explain: Annotated[bool, Query(description="Also return the feature values.")]
                    = False) -> Response:
        """Decide on one transaction with the tenant's live (or canary) model."""
        tenant = _tenant(who, tx.tenant)
        # decided on the event loop, with the requests that arrived in the same turn of it
        # (_batcher): a decision is ~0.3 ms of CPU under the GIL, and a hand-off to a thread
        # cost more than that in CPU and wake-ups
        result = await batcher().decide(tx.event(tenant), explain)
        return Response(_score_json(result), media_type="application/json")

    async def score_request(scope: Scope, headers: dict[bytes, str], body: bytes) -> Response:
        """``score`` with its arguments read as FastAPI would (same order, errors, statuses)."""
        content = _json_body(body, headers.get(b"content-type"))
        who = _authenticated(app.state.keys, headers.get(b"authorization"),
                             headers.get(b"x-api-key"))
        errors: list[Any] = []
        query = scope["query_string"]
        explain = _validated(_BOOL, QueryParams(query).get("explain", False),
                             ("query", "explain"), errors) if query else False
        tx = _validated(_TRANSACTION, content, ("body",), errors)
        if errors:
            raise RequestValidationError(errors)
        return await score(tx, who, explain)

    # declared (and documented) like every route; served by _Direct below, which hands its
    # requests to score_request before FastAPI's middleware, router and generic argument
    # handling
    app.post("/v1/score", response_model=ScoreOut, responses=_ERRORS, tags=["scoring"])(score)

    @app.post("/v1/score/batch", response_model=BatchOut, responses=_ERRORS, tags=["scoring"])
    def score_batch(batch: BatchIn, who: Caller,
                    explain: Annotated[bool, Query()] = False) -> BatchOut:
        """Decide on many transactions in order (backfills, batch scoring): the same engine as
        ``/v1/score``; an event that cannot be scored is listed in ``errors`` with its index."""
        engine = rt().engine
        events = [tx.event(_tenant(who, tx.tenant)) for tx in batch.events]
        results, errors = [], []
        for start in range(0, len(events), _BATCH_CHUNK):
            chunk = events[start:start + _BATCH_CHUNK]
            decided = engine.score_many(chunk, explain=[explain] * len(chunk), source="batch")
            for i, (event, result) in enumerate(zip(chunk, decided, strict=True), start):
                if isinstance(result, ScoreResult):
                    results.append(_score_out(result))
                else:
                    errors.append(BatchError(index=i, event_id=event["event_id"], error=str(result)))
        return BatchOut(results=results, errors=errors)

    @app.post("/v1/labels", response_model=LabelOut, responses=_ERRORS, tags=["scoring"])
    def label(body: LabelIn, who: Caller) -> LabelOut:
        """Apply a late fraud label; label-aware features see it from its ``label_time`` on."""
        tenant = _tenant(who, body.tenant)
        updated = rt().engine.label({"tenant": tenant, "event_id": body.event_id,
                                     "is_fraud": body.is_fraud, "label_time": body.label_time})
        return LabelOut(event_id=body.event_id, tenant=tenant, states_updated=updated)

    @app.get("/v1/decisions/{event_id}", response_model=ScoreOut, responses=_ERRORS,
             tags=["decisions"])
    def decision(event_id: str, who: Caller,
                 tenant: Annotated[str | None, Query()] = None) -> ScoreOut:
        """A logged decision of the caller's tenant."""
        scope = _tenant(who, tenant)
        found = rt().log.get(scope, event_id)
        if found is None:
            raise UnknownTenant(f"no decision for event {event_id!r} of tenant {scope!r}")
        return _score_out(ScoreResult(found, None, True))

    # -- the deployment plan -----------------------------------------------------------------
    @app.get("/v1/plans", response_model=list[PlanOut], responses=_ERRORS, tags=["deployment"])
    def plans(who: Caller) -> list[PlanOut]:
        """The stored plans this key may see (all for an admin key)."""
        revision, stored = rt().plan_store.plans()
        return [_plan_out(p, revision) for t, p in sorted(stored.items())
                if who.tenant is None or who.tenant == t]

    @app.put("/v1/plans/{tenant}", response_model=PlanChangeOut, responses=_ERRORS,
             tags=["deployment"])
    def put_plan(tenant: str, body: PlanIn, who: Caller) -> PlanChangeOut:
        """Set a tenant's plan (admin keys). Every model is loaded and checked first: a model
        that fails is refused with the reason and the running plan stays. Running servers
        switch within ``plan_poll_s``."""
        _admin(who)
        plan = body.plan(tenant)
        runtime = rt()
        runtime.pool.prepare(plan.models)
        change = runtime.plan_store.apply(plan, actor=_actor(who), reason=body.reason)
        runtime.refresh()
        return _change_out(change)

    @app.delete("/v1/plans/{tenant}", response_model=PlanChangeOut, responses=_ERRORS,
                tags=["deployment"])
    def delete_plan(tenant: str, who: Caller,
                    reason: Annotated[str, Query(max_length=500)] = "") -> PlanChangeOut:
        """Stop serving a tenant (admin keys)."""
        _admin(who)
        runtime = rt()
        if runtime.plan_store.get(tenant) is None:
            raise UnknownTenant(f"tenant {tenant!r} has no deployment plan")
        change = runtime.plan_store.remove(tenant, actor=_actor(who), reason=reason)
        runtime.refresh()
        return _change_out(change)

    @app.get("/v1/plans/{tenant}/history", response_model=list[PlanChangeOut],
             responses=_ERRORS, tags=["deployment"])
    def plan_history(tenant: str, who: Caller,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[PlanChangeOut]:
        """Who changed the tenant's plan, when, and from what to what (newest first)."""
        _tenant(who, tenant)
        return [_change_out(c) for c in rt().plan_store.history(tenant, limit=limit)]

    # -- operations --------------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"model": Problem}})
    def readyz() -> Response:
        """Ready to decide: a plan is loaded and the stores answer."""
        runtime = rt()
        try:
            runtime.plan_store.revision()
            runtime.state.get_many(["fraudops:readyz"])
        except StoreError as e:
            return problem(503, str(e))
        body = {"status": "ok" if runtime.engine.plans else "no plan",
                "revision": runtime.engine.revision, "tenants": sorted(runtime.engine.plans),
                "refused_revision": runtime.refused_revision, "error": runtime.last_error}
        return JSONResponse(body, status_code=200 if runtime.engine.plans else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format"}})
    def metrics() -> Response:
        """Prometheus metrics (requests, latency per model and role, actions, errors)."""
        m = rt().metrics
        return Response(m.render(), media_type=m.content_type)

    [score_route] = [r for r in app.routes if isinstance(r, APIRoute) and r.path == "/v1/score"]

    def quiet() -> AbstractContextManager[Any]:
        shadows = rt().shadow_runner if state else None
        return nullcontext() if shadows is None else shadows.deciding()

    app.direct = _Direct(score_route, score_request, lambda: rt().config.max_body_bytes,
                         lambda: rt().metrics if state else None, quiet)
    app.add_middleware(_Measured, metrics=lambda: rt().metrics if state else None)
    app.add_middleware(_BodyLimit, limit=lambda path: (
        rt().config.max_batch_body_bytes if path.endswith("/batch") else rt().config.max_body_bytes))
    return app


#: events of ``/v1/score/batch`` decided together (one state read-modify-write, one log commit)
_BATCH_CHUNK = 256
_MISSING: Any = object()
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
_TRANSACTION: TypeAdapter[TransactionIn] = TypeAdapter(TransactionIn)


def _json_body(body: bytes, content_type: str | None) -> Any:
    """The body as FastAPI reads it: JSON for ``application/json`` or ``+json`` types, the raw
    bytes otherwise (refused by validation), missing when empty."""
    if not body:
        return _MISSING
    media = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass   # the json module decides, as in FastAPI: it reads what orjson refuses (NaN,
        # UTF-16, big integers...) and gives FastAPI's error for the rest
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", e.pos),
                                       "msg": "JSON decode error", "input": {},
                                       "ctx": {"error": e.msg}}]) from e
    except ValueError as e:   # not UTF-8
        raise HTTPException(400, "There was an error parsing the body") from e


def _validated(adapter: TypeAdapter[T], value: Any, loc: tuple[str, ...],
               errors: list[Any]) -> T:
    """``value`` validated; its errors (located under ``loc``) are added to ``errors``."""
    if value is _MISSING:
        errors.append({"type": "missing", "loc": loc, "msg": "Field required", "input": None})
        return None  # type: ignore[return-value]
    try:
        return adapter.validate_python(value, from_attributes=True)   # as FastAPI does
    except ValidationError as e:
        errors.extend({**err, "loc": (*loc, *err["loc"])} for err in e.errors())
        return None  # type: ignore[return-value]


async def _caller(request: Request, authorization: Annotated[str | None, Header()] = None,
                  x_api_key: Annotated[str | None, Header()] = None) -> ApiKey:
    """The key's record. ``async``: a sync dependency costs a thread-pool hop per request
    (~0.4 ms of CPU); a cache hit is a hash and a dict lookup, a miss one indexed read."""
    return _authenticated(request.app.state.keys, authorization, x_api_key)


def _authenticated(cache: KeyCache, authorization: str | None, x_api_key: str | None) -> ApiKey:
    key = x_api_key
    if key is None and authorization is not None:
        scheme, _, token = authorization.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    if not key:
        raise NotAuthorized("no API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    found = cache.get(key)
    if found is None:
        raise NotAuthorized("unknown or revoked API key")
    return found


Caller = Annotated[ApiKey, Depends(_caller)]


def app_from_env() -> FastAPI:
    """The uvicorn factory of ``fraudops serve`` (each worker builds its own runtime)."""
    return create_app()


#: status of each error (first match): a bad or unknown input is the caller's to fix (4xx),
#: a store that does not answer is ours (503, retry)
_STATUS: tuple[tuple[type[FraudopsError], int], ...] = (
    (UnknownTenant, 404), (InputError, 422), (ModelLoadError, 422), (StoreError, 503),
    (FraudopsError, 422))


def _tenant(who: ApiKey, asked: str | None) -> str:
    if who.tenant is None:
        if asked is None:
            raise InputError("an admin key must name the tenant (field or query 'tenant')")
        return asked
    if asked is not None and asked != who.tenant:
        raise NotAuthorized(f"this key belongs to another tenant than {asked!r}", status=403)
    return who.tenant


def _admin(who: ApiKey) -> None:
    if who.tenant is not None:
        raise NotAuthorized("changing a deployment plan needs an admin key", status=403)


def _actor(who: ApiKey) -> str:
    return f"key:{who.key_id}" + (f" ({who.label})" if who.label else "")


def _score_out(result: ScoreResult) -> ScoreOut:
    d = result.decision
    return ScoreOut(event_id=d.event_id, tenant=d.tenant, score=d.score, probability=d.probability,
                    action=d.action,  # type: ignore[arg-type]
                    model_version=d.model_version,
                    model=ModelOut(name=d.model_name, version=d.model_version), role=d.role,
                    reasons=[ReasonOut(feature=r.feature, value=r.value,
                                       contribution=r.contribution) for r in d.reasons],
                    decided_at=d.decided_at, replayed=result.replayed, features=result.features)


def _score_json(result: ScoreResult) -> bytes:
    """``_score_out(result)`` as JSON, without building and validating the models (~20 µs
    less per decision); a test holds the two to the same output."""
    d = result.decision
    return orjson.dumps({
        "event_id": d.event_id, "tenant": d.tenant, "score": d.score,
        "probability": d.probability, "action": d.action, "model_version": d.model_version,
        "model": {"name": d.model_name, "version": d.model_version}, "role": d.role,
        "reasons": [{"feature": r.feature, "value": r.value, "contribution": r.contribution}
                    for r in d.reasons],
        "decided_at": d.decided_at, "replayed": result.replayed, "features": result.features},
        option=orjson.OPT_UTC_Z)


def _plan_out(plan: TenantPlan, revision: int) -> PlanOut:
    data = plan.to_dict()
    return PlanOut(tenant=plan.tenant, live=ModelOut(**data["live"]), shadows=data["shadows"],
                   canary=data["canary"], revision=revision)


def _change_out(change: PlanChange) -> PlanChangeOut:
    return PlanChangeOut(revision=change.revision, tenant=change.tenant, actor=change.actor,
                         changed_at=change.changed_at, previous=change.previous,
                         plan=change.plan, reason=change.reason)


class _BodyLimit:
    """413 for a body above the route's limit, counted as it streams (no Content-Length
    trust), so a huge payload never reaches the JSON parser."""

    def __init__(self, app: ASGIApp, limit: Callable[[str], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _too_large(limit)(scope, receive, send)


class _API(FastAPI):
    """FastAPI, with ``POST /v1/score`` handed to ``direct`` before anything else runs."""

    direct: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct is not None and scope["type"] == "http" \
                and scope["path"] == "/v1/score" and scope["method"] == "POST":
            scope["app"] = self
            await self.direct(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _Direct:
    """``POST /v1/score`` without FastAPI's middleware stack (body limit, telemetry, server
    errors, exit stacks), router and generic argument handling: together more than the
    decision costs. It does what they do for this route: the body limit of ``_BodyLimit``,
    the metrics of ``_Measured``, the app's exception handlers for errors, and a plain 500
    (then re-raised, for the server's log) for anything unexpected.

    Once the body is read, the shadow thread keeps off the GIL (``quiet``) while the request
    is decided and while its answer is written: both let go of the GIL for I/O, and each time
    the shadow thread took it, the request waited up to a switch interval to get it back."""

    _HEADERS = (b"content-type", b"authorization", b"x-api-key", b"content-length")

    def __init__(self, route: APIRoute,
                 handler: Callable[[Scope, dict[bytes, str], bytes], Coroutine[Any, Any, Response]],
                 limit: Callable[[], int], metrics: Callable[[], Any],
                 quiet: Callable[[], AbstractContextManager[Any]]) -> None:
        self.route = route
        self.handler = handler
        self.limit = limit
        self.metrics = metrics
        self.quiet = quiet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        scope["route"] = self.route   # what the router would set
        status = 500
        try:
            try:
                response = await self._response(scope, receive)
            except Exception:   # nothing was sent yet
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive,
                                                                                 send)
                raise
            status = response.status_code
            with self.quiet():
                await response(scope, receive, send)
        finally:
            _count_request(self.metrics(), self.route.path, status, start)

    async def _response(self, scope: Scope, receive: Receive) -> Response:
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in self._HEADERS and name not in headers:   # the first, as Starlette reads
                headers[name] = value.decode("latin-1")
        limit = self.limit()
        declared = headers.get(b"content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":   # the client went away
                return Response(status_code=400)
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > limit:
                return _too_large(limit)
            if not message.get("more_body", False):
                break
        try:
            with self.quiet():
                return await self.handler(scope, headers, b"".join(parts))
        except Exception as exc:
            handlers = scope["app"].exception_handlers
            found = next((handlers[kind] for kind in type(exc).__mro__ if kind in handlers), None)
            if found is None:
                raise
            response: Response = await found(Request(scope, receive), exc)
            return response


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> Response:
    return Response(b'{"detail":"request body larger than ' + str(limit).encode() + b' bytes"}',
                    status_code=413, media_type="application/json")


class _Measured:
    """Requests and latency per route template and status, for ``/metrics``."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Any]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            _count_request(self.metrics(), route, status, start)


def _count_request(metrics: Any, route: str, status: int, start: float) -> None:
    """One request in ``/metrics`` (``_Measured`` and ``_Direct``): by route template and
    status, and its latency since ``start`` (``time.perf_counter``)."""
    if metrics is not None:
        metrics.requests.labels(route, str(status)).inc()
        metrics.request_latency.labels(route).observe(time.perf_counter() - start)

