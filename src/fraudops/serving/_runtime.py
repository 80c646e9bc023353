"""Everything one scoring server process holds, opened from a :class:`ServingConfig`.

The config travels to uvicorn worker processes as JSON in ``FRAUDOPS_SERVING_CONFIG``
(each worker opens its own connections: nothing crosses a ``fork``). A watcher thread polls the
plan store's revision and switches the engine to a new plan once all its models are loaded; a
plan whose model fails to load is refused and the running plan stays.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Literal

from fraudops.core import FraudopsError, Workspace
from fraudops.events import EventStore
from fraudops.features import (
    FeatureSet,
    MemoryStore,
    OnlineEngine,
    RedisStore,
    SQLiteStore,
    StateStore,
    workspace_feature_set,
)
from fraudops.models import ModelRegistry

from ._decision_log import DecisionLog
from ._engine import ScoringEngine
from ._errors import ModelLoadError
from ._keys import ApiKeys
from ._metrics import ServingMetrics, ShadowMetrics
from ._model_pool import ModelPool, registry_loader
from ._plan import TenantPlan
from ._plan_store import PlanStore
from ._shadow import ShadowRunner, Shadows
from ._shadow_process import ShadowParts, ShadowProcess

log = logging.getLogger("fraudops.serving")
CONFIG_ENV = "FRAUDOPS_SERVING_CONFIG"
StateKind = Literal["memory", "sqlite", "redis"]


@dataclass(frozen=True)
class ServingConfig:
    """How a server is put together.

    ``state``: where online feature state lives (``sqlite``: ``<workspace>/serving/state.db``,
    shared by the workers of one machine; ``redis``: ``redis_url``, shared by replicas;
    ``memory``: one process only). ``database``: the decision log, deployment plans and API
    keys (default ``sqlite:///<workspace>/serving/serving.db``; ``postgresql://…`` where
    configured). ``redis_prefix`` separates workspaces sharing one Redis. ``shadow_process``:
    shadows are scored in a child process at the lowest CPU priority instead of a thread of
    the server process (``fraudops serve --shadow-process``: they then never compete with a
    decision for the interpreter, nor a crashing shadow model with the server; on 2 cores the
    extra process cost more p99 than the shared interpreter did). ``micro_batch``:
    at most this many ``/v1/score`` requests that reach a server process together are
    decided together (one state read-modify-write, one log commit; 1 turns it off).
    """

    workspace: str
    state: StateKind = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "fraudops:"
    database: str | None = None
    feature_set: str | None = None
    n_reasons: int = 3
    shadows: bool = True
    shadow_process: bool = False
    shadow_queue: int = 10_000
    plan_poll_s: float = 1.0
    max_lateness_s: float = 3600.0
    max_future_s: float = 86_400.0
    max_body_bytes: int = 1_000_000
    max_batch_body_bytes: int = 32_000_000
    micro_batch: int = 32

    def __post_init__(self) -> None:
        if self.state not in ("memory", "sqlite", "redis"):
            raise ValueError(f"The 'state' setting must be memory, sqlite or redis; got {self.state!r}")
        for name in ("plan_poll_s", "max_body_bytes", "max_batch_body_bytes", "shadow_queue",
                     "max_future_s", "micro_batch"):
            if not getattr(self, name) > 0:
                raise ValueError(f"The {name!r} setting must be > 0; got {getattr(self, name)!r}")
        if self.n_reasons < 0:
            raise ValueError(f"The 'n_reasons' setting must be >= 0; got {self.n_reasons!r}")

    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{Path(self.workspace).resolve() / 'serving' / 'serving.db'}"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServingConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise FraudopsError(f"{CONFIG_ENV} is not set: start the server with `fraudops serve`")
        return cls(**json.loads(raw))


#: seconds a thread waiting for the GIL lets another run before asking it to switch
#: (CPython's default is 5 ms: the shadow thread's batch could hold a decision that long)
SWITCH_INTERVAL_S = 0.0005


def tune_server_process() -> None:
    """Process-wide settings of a serving process, once its runtime is loaded.

    * The objects loaded so far (libraries, models, schemas: ~160,000) live as long as the
      process: frozen, a full garbage collection scans only later ones (a full collection took
      47–77 ms of a worker otherwise).
    * The GIL switch interval drops from 5 ms to 0.5 ms: a decision waiting for the shadow
      thread's batch gets the interpreter back within half a millisecond.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _model_pool(workspace: Workspace, feature_set: FeatureSet) -> ModelPool:
    registry = ModelRegistry(workspace=workspace)
    return ModelPool(registry_loader(registry, workspace.root / "serving" / "models"), feature_set)


def open_shadow_parts(config: ServingConfig) -> ShadowParts:
    """What a shadow process opens at its start: the server's models, log and metrics."""
    workspace = Workspace.open(Path(config.workspace))
    pool = _model_pool(workspace, workspace_feature_set(workspace, config.feature_set))
    decisions = DecisionLog.open(config.database_url())
    return pool, decisions, ShadowMetrics(), decisions.close


class Runtime:
    """The engine, the stores and the plan watcher of one server process."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.workspace = Workspace.open(Path(config.workspace))
        self.feature_set = workspace_feature_set(self.workspace, config.feature_set)
        self.feature_set.validate(EventStore(self.workspace.events_dir).empty("transactions")
                                  .column_names)
        self.metrics = ServingMetrics()
        url = config.database_url()
        self.log = DecisionLog.open(url)
        self.plan_store = PlanStore.open(url)
        self.keys = ApiKeys.open(url)
        self.state = self._state_store()
        self.online = OnlineEngine(self.feature_set, self.state,
                                   max_lateness=timedelta(seconds=config.max_lateness_s))
        self.pool = _model_pool(self.workspace, self.feature_set)
        self.shadow_runner: Shadows | None = None
        if config.shadows and config.shadow_process:
            self.shadow_runner = ShadowProcess(partial(open_shadow_parts, config),
                                               metrics=self.metrics, max_queue=config.shadow_queue)
        elif config.shadows:
            self.shadow_runner = ShadowRunner(
                self.log, metrics=self.metrics, max_queue=config.shadow_queue,
                on_error=lambda e: log.error("shadow scores not logged: %s", e))
        revision, plans = self.plan_store.plans()
        self.refused_revision: int | None = None
        self.last_error: str | None = None
        self.engine = ScoringEngine(self.online, self.pool, {}, log=self.log,
                                    shadows=self.shadow_runner, metrics=self.metrics,
                                    n_reasons=config.n_reasons,
                                    max_future=timedelta(seconds=config.max_future_s))
        self._apply(revision, plans)
        if isinstance(self.shadow_runner, ShadowProcess) and not self.shadow_runner.wait_ready():
            log.error("the shadow process did not start (its log says why): shadow jobs are "
                      "dropped until it does")
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="fraudops-plan-watcher",
                                         daemon=True)
        self._watcher.start()

    def _state_store(self) -> StateStore:
        kind = self.config.state
        if kind == "memory":
            return MemoryStore()
        if kind == "redis":
            return RedisStore(self.config.redis_url, prefix=self.config.redis_prefix)
        folder = self.workspace.root / "serving"
        folder.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(folder / "state.db")

    def _apply(self, revision: int, plans: Mapping[str, TenantPlan]) -> bool:
        try:
            self.engine.use_plans(plans, revision)
        except ModelLoadError as e:
            self.refused_revision = revision
            self.last_error = str(e)
            self.metrics.plan_refused.inc()
            log.error("deployment plan revision %s refused, revision %s stays: %s",
                      revision, self.engine.revision, e)
            return False
        self.refused_revision, self.last_error = None, None
        self.metrics.plan_revision.set(revision)
        return True

    def refresh(self) -> bool:
        """Pick up a new plan revision now; True when the engine runs the newest one."""
        revision = self.plan_store.revision()
        if revision in (self.engine.revision, self.refused_revision):
            return revision == self.engine.revision
        revision, plans = self.plan_store.plans()
        return self._apply(revision, plans)

    def _watch(self) -> None:
        while not self._stop.wait(self.config.plan_poll_s):
            try:
                self.refresh()
            except FraudopsError as e:
                log.error("plan watcher: %s", e)

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=self.config.plan_poll_s + 1)
        if self.shadow_runner is not None:
            self.shadow_runner.close()
        for closeable in (self.state, self.log, self.plan_store, self.keys):
            closeable.close()
