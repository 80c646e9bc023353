"""A small trained workspace for the serving tests: one tenant, two registered models.

Built once per session with the Python API (the CLI is a layer above): 30 simulated days of
tenant ``acme``, v1 a logistic model and v2 LightGBM, both trained on the starter features
as of day 24. Tests copy it (the registry's artifacts stay in the template, read-only).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from fraudops.core import Workspace
from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate, write_simulation
from fraudops.features import FeatureSet, OfflineEngine, starter_definitions, workspace_feature_set
from fraudops.features.tests._redis import redis_prefix  # noqa: F401 (a fixture)
from fraudops.models import ModelRegistry, TrainingPlan, register_training, train_model
from fraudops.serving import ApiKeys, ModelRef, PlanStore, Runtime, ServingConfig, TenantPlan

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "acme"
MODEL = "fraud-acme"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of the test's own on the real server, dropped afterwards; skipped,
    with the reason, only when the server is unreachable."""
    schema = f"fraudops_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable ({str(exc).strip()})")
    try:
        yield f"{POSTGRES}?schema={schema}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@dataclass(frozen=True)
class World:
    """The template workspace, its events and their offline features."""

    root: Path
    feature_set: FeatureSet
    transactions: pa.Table
    labels: pa.Table
    features: pa.Table


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("serving") / "ws"
    ws = Workspace.init(root, name="serving-test", default_tenant=TENANT)
    (ws.root / "features" / "definitions.py").write_text(starter_definitions(identity=True))
    store = EventStore(ws.events_dir)
    sim = simulate(SimulationConfig(n_days=32, seed=7, tenants=(
        TenantProfile(name=TENANT, n_customers=200, n_terminals=400),)))
    write_simulation(sim, store, "sim")
    feature_set = workspace_feature_set(ws)
    features = OfflineEngine(store).backfill(feature_set)
    as_of = features.column("event_time")[-1].as_py() - timedelta(days=6)
    registry = ModelRegistry(workspace=ws, model_name=MODEL)
    for kind in ("logistic", "lightgbm"):
        plan = TrainingPlan(model=kind, train_days=12, validation_days=7, label_delay_days=3,
                            as_of=as_of, feature_selection=False, review_capacity_per_day=20)
        result = train_model(store, feature_set, plan, features=features)
        register_training(registry, result, role=None, model_name=MODEL)
    return World(root, feature_set, store.read_transactions(), store.read_labels(), features)


@pytest.fixture
def workspace(world: World, tmp_path: Path) -> Path:
    """A private copy of the template workspace (serving state, log and plans start empty)."""
    return Path(shutil.copytree(world.root, tmp_path / "ws"))


@dataclass
class Served:
    runtime: Runtime
    admin_key: str
    tenant_key: str


def start(workspace: Path, *, plan: TenantPlan | None = None, **settings: object) -> Served:
    """A runtime over ``workspace`` with ``plan`` (default: v1 live) and two keys."""
    config = ServingConfig(workspace=str(workspace), state="memory", plan_poll_s=0.05,
                           **settings)  # type: ignore[arg-type]
    url = config.database_url()
    with PlanStore.open(url) as plans:
        plans.apply(plan or TenantPlan(TENANT, ModelRef(MODEL, 1)), actor="test")
    with ApiKeys.open(url) as keys:
        admin, _ = keys.create(None, created_by="test", label="admin")
        tenant, _ = keys.create(TENANT, created_by="test")
    return Served(Runtime(config), admin, tenant)


@pytest.fixture
def served(workspace: Path) -> Iterator[Served]:
    s = start(workspace)
    yield s
    s.runtime.close()


def event_of(row: dict[str, object]) -> dict[str, object]:
    """A stored transaction row as the engine's canonical event (no ``None`` attributes)."""
    return {k: v for k, v in row.items() if v is not None and k != "date"}


def first_events(world: World, n: int) -> list[dict[str, object]]:
    ordered = world.transactions.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    return [event_of(r) for r in ordered.slice(0, n).to_pylist()]

