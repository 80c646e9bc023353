"""The serving layer: the scoring engine (features, models and policy in process), the
deployment plan (live, shadow and canary models per tenant), the HTTP API and the decision log."""

from ._app import app_from_env, create_app
from ._decision_log import DecisionLog
from ._engine import ScoreResult, ScoringEngine
from ._errors import ModelLoadError, NotAuthorized, UnknownTenant
from ._keys import ApiKeys
from ._metrics import ServingMetrics
from ._model_pool import LoadedModel, ModelPool, registry_loader
from ._plan import CanarySpec, ModelRef, ShadowSpec, TenantPlan, bucket
from ._plan_store import PlanStore
from ._records import ApiKey, Decision, PlanChange, Reason, ShadowScore
from ._runtime import Runtime, ServingConfig
from ._shadow import ShadowJob, ShadowRunner
from ._workers import run_workers

__all__ = [
    "ApiKey",
    "ApiKeys",
    "CanarySpec",
    "Decision",
    "DecisionLog",
    "LoadedModel",
    "ModelLoadError",
    "ModelPool",
    "ModelRef",
    "NotAuthorized",
    "PlanChange",
    "PlanStore",
    "Reason",
    "Runtime",
    "ScoreResult",
    "ScoringEngine",
    "ServingConfig",
    "ServingMetrics",
    "ShadowJob",
    "ShadowRunner",
    "ShadowScore",
    "ShadowSpec",
    "TenantPlan",
    "UnknownTenant",
    "app_from_env",
    "bucket",
    "create_app",
    "registry_loader",
    "run_workers",
]
