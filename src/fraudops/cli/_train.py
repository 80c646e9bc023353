"""``fraudops train``: one model per tenant, trained on the latest mature weeks, registered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from fraudops.core import Workspace
from fraudops.events import EventStore
from fraudops.features import workspace_feature_set
from fraudops.models import (
    DEFAULT_MODEL_NAME,
    ModelRegistry,
    TrainingPlan,
    TrainingResult,
    VersionInfo,
    register_training,
    train_model,
)

from ._app import WorkspaceOption, app, open_workspace
from ._console import out, progress_bar
from ._features import FeatureSetOption, TenantOption
from ._models import TrackingOption


def model_name_for(tenant: str) -> str:
    """Each tenant (client) has its own registered model."""
    return f"{DEFAULT_MODEL_NAME}-{tenant}"


@app.command()
def train(
    workspace: WorkspaceOption = None,
    feature_set: FeatureSetOption = None,
    tenant: TenantOption = None,
    model: Annotated[str, typer.Option(help="lightgbm, or logistic (the baseline).")] =
        "lightgbm",
    train_days: Annotated[int, typer.Option(help="Days of mature history to learn from.")] = 28,
    validation_days: Annotated[int, typer.Option(
        help="Latest mature days for early stopping, calibration, policy and metrics.")] = 7,
    label_delay_days: Annotated[int, typer.Option(
        help="Days before labels are trusted; younger events are left out.")] = 7,
    as_of: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        help="Train as of this moment (UTC; default: the newest event).")] = None,
    feature_selection: Annotated[bool, typer.Option(
        help="Select features among every candidate of the feature set.")] = True,
    review_capacity: Annotated[float, typer.Option(
        help="Events a day the review team can handle (REVIEW threshold).")] = 100.0,
    prevent_precision: Annotated[float, typer.Option(
        help="Precision automatic blocking must reach (PREVENT threshold); 0 for none.")] = 0.9,
    role: Annotated[str, typer.Option(help="Role of the new version.")] = "candidate",
    tracking_uri: TrackingOption = None,
) -> None:
    """Train, calibrate and choose the action policy per tenant; log and register each model."""
    ws = open_workspace(workspace)
    features = workspace_feature_set(ws, feature_set)
    store = EventStore(ws.events_dir)
    features.validate(store.empty("transactions").column_names)
    tenants = tenant or [row.tenant for row in store.summary() if row.transactions]
    registry = ModelRegistry(tracking_uri, workspace=ws)
    results = []
    for name in tenants:
        plan = TrainingPlan(model=model, train_days=train_days, validation_days=validation_days,
                            label_delay_days=label_delay_days,
                            as_of=as_of.replace(tzinfo=UTC) if as_of else None, tenant=name,
                            feature_selection=feature_selection,
                            review_capacity_per_day=review_capacity,
                            prevent_precision=prevent_precision or None)
        with progress_bar(f"train {name}") as progress:
            result = train_model(store, features, plan, progress=progress)
        version = register_training(registry, result, role=role,
                                    model_name=model_name_for(name))
        results.append((name, result, version))
    print_training(ws, results)


def print_training(ws: Workspace, results: list[tuple[str, TrainingResult, VersionInfo]]) -> None:
    table = Table(title="trained and registered (metrics on each model's validation window)",
                  title_justify="left")
    for column in ("tenant", "model", "version", "train rows", "valid frauds", "AUC", "AP", "CP@100",
                   "review ≥", "prevent ≥", "features", "seconds"):
        table.add_column(column, justify="left" if column in ("tenant", "model") else "right")
    for name, result, version in results:
        overall = result.metrics.overall
        policy = result.policy
        table.add_row(
            name, version.model_name, str(version.version), f"{result.train_rows:,}",
            f"{result.validation_frauds:,}", f"{overall.roc_auc:.3f}",
            f"{overall.average_precision:.3f}", f"{overall.card_precision_at_k:.3f}",
            "-" if policy.review_threshold is None else f"{policy.score(policy.review_threshold)}",
            "-" if policy.prevent_threshold is None else
            f"{policy.score(policy.prevent_threshold)}",
            str(len(result.model.feature_names)), f"{result.seconds:.1f}")
    out.print(table)
    out.print(f"registry: {ModelRegistry(workspace=ws).tracking_uri}; see 'fraudops models list"
              " --model NAME'")
