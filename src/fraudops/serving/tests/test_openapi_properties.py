"""The HTTP API against its own OpenAPI schema, with requests generated from that schema.

Clients are generated from ``/openapi.json``, so what they rely on is that the schema is the
truth: for every operation, requests valid and invalid, with a tenant key, an admin key and
no key, never get a 5xx and always get a status, content type and body the schema declares;
and what the schema declares a valid transaction or label of the tenant is accepted.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fraudops.serving import ModelRef, TenantPlan, create_app

from .conftest import MODEL, TENANT, Served

#: Bounded and derandomized: the same requests on every run, in well under a minute.
GENERATION = {"max-examples": 30, "deterministic": True, "database": "none"}
CONFIG = schemathesis.Config.from_dict({
    "seed": 20261129, "generation": {"mode": "all", **GENERATION},
    "phases": {"stateful": {"enabled": False}}})
VALID_ONLY = schemathesis.Config.from_dict({
    "seed": 20261129, "generation": {"mode": "positive", **GENERATION},
    "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": False}}})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
BASE_PLAN = TenantPlan(TENANT, ModelRef(MODEL, 1))
#: One runtime per operation, shared by its generated requests (they build on each other).
ONE_RUNTIME_PER_OPERATION = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

#: The schema as clients see it: made by the app, no runtime needed.
OPENAPI = create_app().openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
tenant_inputs = schemathesis.openapi.from_dict(OPENAPI, config=VALID_ONLY).include(
    path_regex=r"^/v1/(score|score/batch|labels)$")


@pytest.fixture
def app(served: Served) -> FastAPI:
    """The API over a runtime with tenant ``acme`` served by v1 (memory state, SQLite log)."""
    return create_app(served.runtime)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-API-Key": key}


@schema.parametrize()
@ONE_RUNTIME_PER_OPERATION
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case, app: FastAPI,
                                                     served: Served) -> None:
    """Each generated request is sent as generated (its key, if any, is made up), then with
    the tenant's key and with an admin key."""
    case.call_and_validate(app=app, checks=CHECKS)
    for key in (served.tenant_key, served.admin_key):
        case.call_and_validate(app=app, checks=CHECKS, headers=_auth(key))
        _restore_plan(served)


@tenant_inputs.parametrize()
@ONE_RUNTIME_PER_OPERATION
def test_a_valid_transaction_or_label_of_the_tenant_is_accepted(
        case: schemathesis.Case, app: FastAPI, served: Served) -> None:
    """A body the schema declares valid, sent with the tenant's key, is answered 200; the
    refusals allowed are the rules a JSON Schema date-time cannot state: an event too old for
    the online state (``max_lateness``), a time outside 1970–2199 UTC, or one more than a day
    ahead of the server's clock (each a 422 saying so).

    The generated ``tenant`` and extra attributes are dropped: the key names the tenant, and
    the schema leaves attribute names open while the API takes lower snake case ones only. An
    amount like ``12550.0`` is sent as ``12550``: JSON Schema counts it as an integer, the API
    takes integer literals only, on purpose (an amount is never rounded).
    """
    case.body = _as_the_tenants_own(case.operation.path, case.body)
    response = case.call_and_validate(app=app, checks=CHECKS, headers=_auth(served.tenant_key))
    body = response.json()
    if response.status_code == 422:
        assert _time_rule(str(body["detail"])), body
        return
    assert response.status_code == 200, body
    if case.operation.path == "/v1/score/batch":
        assert all(_time_rule(e["error"]) for e in body["errors"]), body["errors"]


def _time_rule(message: str) -> bool:
    return any(rule in message for rule in ("max_lateness", "between 1970 and 2199",
                                            "ahead of this server's clock"))


@pytest.mark.parametrize("moment", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch"])
def test_a_time_at_the_edge_of_the_calendar_is_refused_not_a_server_error(
        app: FastAPI, served: Served, moment: str, path: str) -> None:
    """Valid RFC 3339 times whose UTC value falls outside year 1–9999."""
    event = {"event_id": "edge", "event_time": moment, "amount_cents": 100, "card_id": "K1"}
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post(path, json={"events": [event]} if path.endswith("batch") else event,
                        headers=_auth(served.tenant_key))
    assert r.status_code < 500, r.text


def _as_the_tenants_own(path: str, body: Any) -> Any:
    declared = {"/v1/labels": "LabelIn"}.get(path, "TransactionIn")
    fields = set(OPENAPI["components"]["schemas"][declared]["properties"]) - {"tenant"}

    def own(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k in fields}
        if isinstance(out.get("amount_cents"), float):
            out["amount_cents"] = int(out["amount_cents"])
        return out

    if path == "/v1/score/batch":
        return {**body, "events": [own(e) for e in body["events"]]}
    return own(body)


def _restore_plan(served: Served) -> None:
    """An admin request may have replaced or removed the tenant's plan: the next request
    starts from the plan the fixture deployed (v1 live)."""
    store = served.runtime.plan_store
    if store.get(TENANT) != BASE_PLAN:
        store.apply(BASE_PLAN, actor="test")
        served.runtime.refresh()
