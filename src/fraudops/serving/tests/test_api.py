"""The HTTP API in process (TestClient): decisions, explain parity, keys, tenants, bad input."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from fraudops.features import replay_stream
from fraudops.models import TrainedModel
from fraudops.serving import Decision, Reason, ScoreResult, create_app
from fraudops.serving._app import _score_json, _score_out

from .conftest import MODEL, TENANT, Served, World, event_of, first_events, start


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.runtime)) as c:
        yield c


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _json(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in event.items()}
    out.pop("tenant", None)
    return out


def test_replayed_traffic_gets_the_offline_features_and_the_batch_scores(
        world: World, served: Served, client: TestClient) -> None:
    """Transactions and labels of the first 6 days, in time order, through the API."""
    cutoff = pa.scalar(world.transactions.column("event_time")[0].as_py() + timedelta(days=6),
                       pa.timestamp("us", tz="UTC"))
    txns = world.transactions.filter(pc.less(world.transactions.column("event_time"), cutoff))
    labels = world.labels.filter(pc.less(world.labels.column("label_time"), cutoff))
    events, answers, labelled = [], [], 0
    for kind, row in replay_stream(txns, labels):
        if kind == "label":
            r = client.post("/v1/labels", headers=_auth(served.tenant_key), json={
                "event_id": row["event_id"], "is_fraud": row["is_fraud"],
                "label_time": row["label_time"].isoformat()})
            assert r.status_code == 200, r.text
            labelled += r.json()["states_updated"] > 0
            continue
        event = event_of(row)
        events.append(event)
        r = client.post("/v1/score?explain=true", json=_json(event), headers=_auth(served.tenant_key))
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert labelled >= 5
    ids = [e["event_id"] for e in events]
    offline = world.features.filter(pc.is_in(world.features.column("event_id"),
                                             value_set=pa.array(ids)))
    rows = {r["event_id"]: r for r in offline.to_pylist()}
    mismatches = []
    for answer in answers:
        expected = rows[answer["event_id"]]
        for name, value in answer["features"].items():
            want = expected[name]
            same = (value is None and want is None) or (
                value is not None and want is not None
                and math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-12))
            if not same:
                mismatches.append((answer["event_id"], name, value, want))
    assert not mismatches, mismatches[:5]
    assert set(answers[0]["features"]) == set(world.feature_set.names)
    # batch scoring: the model over the offline feature matrix gives the same probabilities
    model: TrainedModel = served.runtime.pool.get(served.runtime.engine.plans[TENANT].live).model
    matrix = np.array([[np.nan if rows[i][n] is None else rows[i][n] for n in model.feature_names]
                       for i in ids], dtype=np.float64)
    batch = model.predict_proba(matrix)
    online = np.array([a["probability"] for a in answers])
    np.testing.assert_allclose(online, batch, rtol=1e-9, atol=1e-12)
    assert {a["model"]["name"] for a in answers} == {MODEL}
    assert {a["action"] for a in answers} <= {"ALLOW", "REVIEW", "PREVENT"}
    assert all(0 <= a["score"] <= 100 for a in answers)
    assert all(len(a["reasons"]) == 3 for a in answers)


def test_a_retry_returns_the_logged_decision_and_changes_no_state(
        world: World, served: Served, client: TestClient) -> None:
    event = _json(first_events(world, 1)[0])
    first = client.post("/v1/score", json=event, headers=_auth(served.tenant_key)).json()
    again = client.post("/v1/score", json=event, headers=_auth(served.tenant_key)).json()
    assert again["replayed"] is True
    assert first["replayed"] is False
    assert {k: again[k] for k in ("score", "probability", "action", "decided_at")} == \
        {k: first[k] for k in ("score", "probability", "action", "decided_at")}
    assert served.runtime.log.count(TENANT) == 1
    got = client.get(f"/v1/decisions/{event['event_id']}", headers=_auth(served.tenant_key))
    assert got.status_code == 200
    assert got.json()["probability"] == first["probability"]


def test_batch_scoring_gives_the_same_answers_as_single_calls(
        world: World, served: Served, workspace: Path) -> None:
    events = [_json(e) for e in first_events(world, 200)]
    with TestClient(create_app(served.runtime)) as c:
        batch = c.post("/v1/score/batch", json={"events": events}, headers=_auth(served.tenant_key))
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["errors"] == []
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in events]
    other = start(_fresh_copy(workspace))
    try:
        with TestClient(create_app(other.runtime)) as c:
            single = [c.post("/v1/score", json=e, headers=_auth(other.tenant_key)).json()
                      for e in events]
    finally:
        other.runtime.close()
    assert [r["probability"] for r in body["results"]] == [s["probability"] for s in single]


def _fresh_copy(workspace: Path) -> Path:
    """The same workspace with empty serving state (its own online state and log)."""
    target = workspace.parent / "fresh"
    shutil.copytree(workspace, target, ignore=shutil.ignore_patterns("serving"))
    return target


def test_labels_reach_the_label_aware_features(world: World, served: Served,
                                               client: TestClient) -> None:
    event = _json(first_events(world, 1)[0])
    client.post("/v1/score", json=event, headers=_auth(served.tenant_key))
    r = client.post("/v1/labels", json={"event_id": event["event_id"], "is_fraud": True,
                                        "label_time": datetime.now(UTC).isoformat()},
                    headers=_auth(served.tenant_key))
    assert r.status_code == 200, r.text
    assert r.json()["states_updated"] >= 1


@pytest.mark.parametrize(("mutate", "status", "says"), [
    (lambda e: e.pop("event_id"), 422, "event_id"),
    (lambda e: e.pop("amount_cents"), 422, "amount_cents"),
    (lambda e: e.update(amount_cents="12.50"), 422, "amount_cents"),
    (lambda e: e.update(amount_cents=12.5), 422, "amount_cents"),
    (lambda e: e.update(event_time="2024-01-01T10:00:00"), 422, "event_time"),
    (lambda e: e.update(event_time="yesterday"), 422, "event_time"),
    (lambda e: e.update(card_id=["a"]), 422, "card_id"),
    (lambda e: e.update(Bad_Name=1), 422, "Bad_Name"),
    (lambda e: e.update(nested={"a": 1}), 422, "nested"),
    (lambda e: e.update(tenant="other"), 403, "another tenant"),
    (lambda e: e.update(currency="EURO"), 422, "currency"),
])
def test_bad_input_gets_a_4xx_naming_the_field(world: World, served: Served, client: TestClient,
                                                mutate: Any, status: int, says: str) -> None:
    event = _json(first_events(world, 1)[0])
    mutate(event)
    r = client.post("/v1/score", json=event, headers=_auth(served.tenant_key))
    assert r.status_code == status, r.text
    assert says in r.text
    assert served.runtime.log.count() == 0


def _reference_route(app: Any) -> None:
    """``POST /reference/score``: the endpoint of ``/v1/score`` with FastAPI's own request
    handling, the behaviour the direct route of ``/v1/score`` must reproduce."""
    [score] = [r for r in app.routes if getattr(r, "path", "") == "/v1/score"]
    app.router.add_api_route("/reference/score", score.endpoint, methods=["POST"])


def test_the_score_route_reads_requests_exactly_as_fastapi_would(
        world: World, served: Served) -> None:
    """Every kind of bad request (and a good one) gets the same status and body from the
    direct route of ``/v1/score`` as from FastAPI's generic handling of the same endpoint."""
    app = create_app(served.runtime)
    _reference_route(app)
    good = _json(first_events(world, 1)[0])
    key = _auth(served.tenant_key)
    json_type = {"content-type": "application/json"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no body", {"headers": {**key, **json_type}}),
        ("no content type", {"content": b'{"a": 1}', "headers": key}),
        ("text/plain", {"content": b'{"a": 1}', "headers": {**key, "content-type": "text/plain"}}),
        ("vendor json", {"json": {**good, "event_id": "v"},
                         "headers": {**key, "content-type": "application/vnd.x+json"}}),
        ("broken json", {"content": b'{"event_id": ', "headers": {**key, **json_type}}),
        ("not utf-8", {"content": b'{"event_id": "\xff\xfe"}', "headers": {**key, **json_type}}),
        ("NaN literal", {"content": b'{"event_id": "n", "amount_cents": NaN}',
                         "headers": {**key, **json_type}}),
        ("utf-16 json", {"content": json.dumps({"event_id": "u16"}).encode("utf-16"),
                         "headers": {**key, **json_type}}),
        ("too large", {"content": b" " * 1_000_001, "headers": {**key, **json_type}}),
        ("json array", {"json": [good], "headers": key}),
        ("wrong types", {"json": {**good, "amount_cents": "12.5", "event_time": 3},
                         "headers": key}),
        ("bad explain and body", {"json": {**good, "amount_cents": 1.5},
                                  "params": {"explain": "maybe"}, "headers": key}),
        ("no key, bad body", {"json": {"x": 1}}),
        ("bad key", {"json": good, "headers": _auth("fo_nope")}),
        ("other tenant", {"json": {**good, "tenant": "other"}, "headers": key}),
        ("explain=yes", {"json": {**good, "event_id": "e-yes"}, "params": {"explain": "yes"},
                         "headers": key}),
    ]
    with TestClient(app) as client:
        for name, request in cases:
            direct = client.post("/v1/score", **request)
            if direct.status_code == 200:   # the reference decides on another event
                request = {**request, "json": {**request["json"], "event_id": "reference"}}
            reference = client.post("/reference/score", **request)
            assert direct.status_code == reference.status_code, (name, direct.text, reference.text)
            if direct.status_code == 200:
                assert direct.json().keys() == reference.json().keys(), name
                explained = "params" in request
                assert (direct.json()["features"] is not None) == explained, name
            else:
                assert direct.json() == reference.json(), name


@pytest.mark.parametrize("replayed", [False, True])
def test_the_fast_score_json_is_the_score_model_serialised(replayed: bool) -> None:
    """``/v1/score`` writes its answer without building ScoreOut; byte for byte the same as
    ScoreOut's own serialisation (NaN as null, times in UTC with Z, every field)."""
    when = datetime(2026, 11, 29, 10, 15, 0, 123456, tzinfo=UTC)
    decision = Decision("acme", "tx-1", when, when.replace(microsecond=0) if replayed else when,
                        MODEL, 3, "canary", 0.0123456789, 1, "ALLOW", 412,
                        (Reason("count_1d_by_card", 3.0, 0.25), Reason("amount", None, -1e-17),
                         Reason("ratio_7d", math.nan, math.nan)))
    features = None if replayed else {"count_1d_by_card": 3.0, "amount": None, "x": math.nan}
    result = ScoreResult(decision, features, replayed)
    assert _score_json(result) == _score_out(result).model_dump_json().encode()


def test_keys_and_tenants(world: World, served: Served, client: TestClient) -> None:
    event = _json(first_events(world, 1)[0])
    assert client.post("/v1/score", json=event).status_code == 401
    assert client.post("/v1/score", json=event, headers=_auth("fo_nope")).status_code == 401
    assert client.post("/v1/score", json=event,
                       headers={"Authorization": "Basic abc"}).status_code == 401
    # an admin key must name the tenant; a tenant with no plan is a 404
    assert client.post("/v1/score", json=event, headers=_auth(served.admin_key)).status_code == 422
    r = client.post("/v1/score", json={**event, "tenant": "globex"},
                    headers=_auth(served.admin_key))
    assert r.status_code == 404
    assert "globex" in r.json()["detail"]
    # a tenant key cannot change plans nor read another tenant's decisions
    plan = {"live": {"name": MODEL, "version": 2}}
    assert client.put(f"/v1/plans/{TENANT}", json=plan,
                      headers=_auth(served.tenant_key)).status_code == 403
    assert client.get("/v1/decisions/x?tenant=globex",
                      headers=_auth(served.tenant_key)).status_code == 403


def test_huge_payloads_are_refused_before_parsing(served: Served, client: TestClient) -> None:
    body = b'{"event_id": "' + b"x" * 2_000_000 + b'"}'
    r = client.post("/v1/score", content=body, headers={**_auth(served.tenant_key),
                                                        "content-type": "application/json"})
    assert r.status_code == 413


def test_health_ready_and_metrics(served: Served, client: TestClient, world: World) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["tenants"] == [TENANT]
    client.post("/v1/score", json=_json(first_events(world, 1)[0]),
                headers=_auth(served.tenant_key))
    text = client.get("/metrics").text
    assert 'fraudops_decisions_total{action=' in text
    assert f'model="{MODEL}/v1"' in text
    assert "fraudops_scoring_seconds_bucket" in text
    assert 'fraudops_requests_total{route="/v1/score",status="200"}' in text


def test_a_restamped_retry_is_not_counted_twice(world: World, served: Served,
                                                client: TestClient) -> None:
    first, second = (_json(e) for e in first_events(world, 2))
    client.post("/v1/score", json=first, headers=_auth(served.tenant_key))
    later = (datetime.fromisoformat(first["event_time"]) + timedelta(seconds=5)).isoformat()
    retry = client.post("/v1/score", json={**first, "event_time": later},
                        headers=_auth(served.tenant_key)).json()
    assert retry["replayed"] is True
    same_card = {**second, "event_id": "next", "card_id": first["card_id"],
                 "event_time": (datetime.fromisoformat(later) + timedelta(seconds=1)).isoformat()}
    answer = client.post("/v1/score?explain=true", json=same_card,
                         headers=_auth(served.tenant_key)).json()
    assert answer["features"]["count_1h_by_card"] == 2   # the first event once, and this one


def test_an_event_far_in_the_future_is_refused(world: World, served: Served,
                                               client: TestClient) -> None:
    event = {**_json(first_events(world, 1)[0]), "event_time": "2199-01-01T00:00:00Z"}
    r = client.post("/v1/score", json=event, headers=_auth(served.tenant_key))
    assert r.status_code == 422
    assert "ahead of this server's clock" in r.json()["detail"]
