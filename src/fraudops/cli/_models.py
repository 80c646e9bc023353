"""``fraudops models``: the registered versions of a model, their roles, metrics and lineage."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudops.models import (
    DEFAULT_MODEL_NAME,
    ROLES,
    ModelRegistry,
    VersionDetail,
    VersionInfo,
)

from ._app import WorkspaceOption, app, open_workspace
from ._console import out

models_app = typer.Typer(help="Registered model versions (MLflow): list, show, give roles.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelOption = Annotated[str, typer.Option(
    "--model", "-m", help="Registered model name.")]
TrackingOption = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="FRAUDOPS_TRACKING_URI", show_default=False,
    help="MLflow tracking URI (sqlite:///..., postgresql+psycopg://..., http://...);"
         " default: the workspace's WORKSPACE/mlflow/mlflow.db.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
VersionArgument = Annotated[int, typer.Argument(help="Version number, e.g. 3.", min=1)]

#: Column label -> metric names (``roc_auc``, or a section's ``overall.roc_auc``, ``test.roc_auc``).
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "AUC": ("roc_auc",),
    "AP": ("average_precision",),
    "CP@100": ("card_precision_at_100", "card_precision_at_k"),
}


def _registry(workspace: Path | None, tracking_uri: str | None, model: str) -> ModelRegistry:
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial tables" chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return ModelRegistry(tracking_uri, workspace=open_workspace(workspace), model_name=model)


def key_metric(metrics: Mapping[str, float], label: str) -> float | None:
    """The metric shown in the ``label`` column: the exact name, else the least nested section's.

    >>> key_metric({"tenant.acme.roc_auc": 0.7, "overall.roc_auc": 0.9}, "AUC")
    0.9
    """
    for name in KEY_METRICS[label]:
        if name in metrics:
            return float(metrics[name])
        found = sorted((key.count("."), key) for key in metrics if key.endswith(f".{name}"))
        if found:
            return float(metrics[found[0][1]])
    return None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _short(value: str | None, n: int = 12) -> str:
    return "-" if not value else value[:n]


def _created(info: VersionInfo) -> str:
    return info.created.strftime("%Y-%m-%d %H:%M UTC")


@models_app.command("list")
def list_versions(workspace: WorkspaceOption = None,
                  model: Annotated[str | None, typer.Option(
                      "--model", "-m", help="Registered model name (default: every model).")]
                  = None,
                  tracking_uri: TrackingOption = None, as_json: JsonOption = False) -> None:
    """Print every version of the model (or of every model), newest first: roles, created, key
    metrics, features."""
    registry = _registry(workspace, tracking_uri, model or DEFAULT_MODEL_NAME)
    names = [model] if model else registry.model_names()
    listed = {name: registry.versions(model_name=name) for name in names}
    if as_json:
        out.print_json(json.dumps([asdict(v) for versions in listed.values() for v in versions],
                                  default=str))
        return
    if not listed:
        out.print(f"no registered models in {registry.tracking_uri}: run 'fraudops train'")
    for name, versions in listed.items():
        table = Table(title=f"model {name} ({len(versions)} versions)", title_justify="left")
        for column in ("version", "roles", "created", *KEY_METRICS, "feature set",
                       "definition hash", "run"):
            table.add_column(column, justify="right" if column in KEY_METRICS else "left")
        for info in versions:
            table.add_row(str(info.version), ", ".join(info.roles) or "-", _created(info),
                          *(_fmt(key_metric(info.metrics, label)) for label in KEY_METRICS),
                          info.feature_set or "-", _short(info.definition_hash),
                          _short(info.run_id, 8))
        out.print(table)


@models_app.command()
def show(version: VersionArgument, workspace: WorkspaceOption = None,
         model: ModelOption = DEFAULT_MODEL_NAME, tracking_uri: TrackingOption = None,
         as_json: JsonOption = False) -> None:
    """Print one version in full: lineage, params, metrics, tags, features and files."""
    detail = _registry(workspace, tracking_uri, model).describe(version)
    if as_json:
        out.print_json(json.dumps(asdict(detail), default=str))
        return
    print_detail(detail)


def print_detail(detail: VersionDetail) -> None:
    info = detail.info
    lines = [
        ("roles", ", ".join(info.roles) or "-"), ("created", _created(info)),
        ("run", info.run_id or "-"), ("source", info.source),
        ("feature set", info.feature_set or "-"), ("definition hash", info.definition_hash or "-"),
        ("data fingerprint", info.data_fingerprint or "-"),
        ("retrained from", f"v{info.parent_version}" if info.parent_version else "-"),
        ("previous live", f"v{info.previous_live}" if info.previous_live else "-"),
    ]
    out.print(f"[bold]model {info.model_name} version {info.version}[/bold]")
    for label, value in lines:
        out.print(f"  {label + ':':<18}{value}", soft_wrap=True)
    _pairs("metrics", {k: f"{v:.6g}" for k, v in info.metrics.items()})
    _pairs("params", dict(info.params))
    _pairs("tags", dict(info.tags))
    _pairs("version tags (gate verdicts)", dict(info.version_tags))
    files = Table(title=f"files ({len(detail.files)})", title_justify="left")
    for column in ("path", "bytes", "sha256"):
        files.add_column(column, justify="right" if column == "bytes" else "left")
    for f in detail.files:
        files.add_row(f.path, f"{f.size_bytes:,}", _short(f.sha256, 16))
    out.print(files)
    out.print(f"features ({len(detail.features)}): {', '.join(detail.features) or '-'}",
              soft_wrap=True)


def _pairs(title: str, values: dict[str, str]) -> None:
    table = Table(title=f"{title} ({len(values)})", title_justify="left")
    table.add_column("name")
    table.add_column("value", overflow="fold")
    for key in sorted(values):
        table.add_row(key, values[key])
    out.print(table)


@models_app.command()
def role(
    version: VersionArgument,
    role_name: Annotated[str, typer.Argument(metavar="ROLE", help=f"One of: {', '.join(ROLES)}.")],
    workspace: WorkspaceOption = None, model: ModelOption = DEFAULT_MODEL_NAME,
    tracking_uri: TrackingOption = None,
) -> None:
    """Give ROLE to VERSION (an MLflow alias; the version that held it loses it)."""
    previous = _registry(workspace, tracking_uri, model).set_role(version, role_name)
    was = f" (was v{previous})" if previous is not None and previous != version else ""
    out.print(f"{model} v{version} is now {role_name}{was}")


@models_app.command("clear-role")
def clear_role(
    role_name: Annotated[str, typer.Argument(metavar="ROLE", help=f"One of: {', '.join(ROLES)}.")],
    workspace: WorkspaceOption = None, model: ModelOption = DEFAULT_MODEL_NAME,
    tracking_uri: TrackingOption = None,
) -> None:
    """Take ROLE away from whichever version holds it."""
    previous = _registry(workspace, tracking_uri, model).clear_role(role_name)
    out.print(f"{model}: no version is {role_name}"
              + (f" (was v{previous})" if previous is not None else " (none was)"))
