"""``fraudops features``: list, backfill and prove parity of the workspace's feature set."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudops.core import Workspace
from fraudops.events import EventStore
from fraudops.features import (
    FeatureSet,
    MemoryStore,
    OfflineEngine,
    OnlineEngine,
    ParityReport,
    RedisStore,
    SQLiteStore,
    StateStore,
    check_parity,
    workspace_feature_set,
    write_backfill,
)

from ._app import WorkspaceOption, app, open_workspace
from ._console import out, progress_bar

features_app = typer.Typer(help="Define once, compute offline and online, prove parity.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")

FeatureSetOption = Annotated[str | None, typer.Option(
    "--feature-set", "-f", help="Feature set name (default: the workspace's only one).")]
TenantOption = Annotated[list[str] | None, typer.Option(
    "--tenant", "-t", help="Only this tenant (repeatable).")]


def _load(workspace: Path | None, name: str | None) -> tuple[Workspace, FeatureSet]:
    ws = open_workspace(workspace)
    features = workspace_feature_set(ws, name)
    store = EventStore(ws.events_dir)
    features.validate(store.empty("transactions").column_names)
    return ws, features


@features_app.command("list")
def list_features(workspace: WorkspaceOption = None, feature_set: FeatureSetOption = None) -> None:
    """Print the feature set's features, with their entity, operation and window."""
    _, features = _load(workspace, feature_set)
    table = Table(title=f"{features.name} (definition hash {features.definition_hash()})",
                  title_justify="left")
    for column in ("feature", "entity", "operation", "column", "window", "labels"):
        table.add_column(column)
    for spec in features.aggregations:
        labels = spec.aggregation.labels
        table.add_row(spec.name, spec.entity.name, spec.op.value, spec.column or "-",
                      spec.effective.name, labels.name if labels else "-")
    for transform in features.transforms:
        table.add_row(transform.output, "-", type(transform).__name__, "-", "-", "-")
    out.print(table)


@features_app.command()
def backfill(
    workspace: WorkspaceOption = None,
    feature_set: FeatureSetOption = None,
    tenant: TenantOption = None,
    output: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: WORKSPACE/offline/FEATURE_SET).")] = None,
) -> None:
    """Compute every feature for every stored event, point-in-time correct (DuckDB)."""
    ws, features = _load(workspace, feature_set)
    with progress_bar("backfill") as progress:
        table = OfflineEngine(EventStore(ws.events_dir)).backfill(
            features, tenants=tenant, progress=progress)
    path = write_backfill(table, output or ws.root / "offline" / features.name)
    out.print(f"{table.num_rows:,} events x {len(features.names)} features -> {path}")


def scratch_store(kind: str, *, folder: Path, redis_url: str) -> StateStore:
    """An empty state store of the given kind for one parity run."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(folder / "state.sqlite")
    if kind == "redis":
        return RedisStore(redis_url, prefix=f"fraudops:parity:{folder.name}:")
    raise typer.BadParameter(f"--store {kind!r}: must be memory, sqlite or redis")


@features_app.command()
def parity(
    workspace: WorkspaceOption = None,
    feature_set: FeatureSetOption = None,
    tenant: TenantOption = None,
    store: Annotated[str, typer.Option(help="Online state store: memory, sqlite or redis.")]
        = "memory",
    redis_url: Annotated[str, typer.Option(help="Redis for --store redis.")] =
        "redis://127.0.0.1:6379/0",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay events through the online engine and compare every value with the offline one.

    Exits 1 on any mismatch, missing or extra value."""
    ws, features = _load(workspace, feature_set)
    with tempfile.TemporaryDirectory(prefix="parity-", dir=ws.root) as folder, \
            progress_bar("parity") as progress:
        state = scratch_store(store, folder=Path(folder), redis_url=redis_url)
        try:
            report = check_parity(EventStore(ws.events_dir), features,
                                  lambda: OnlineEngine(features, state), state_store=store,
                                  tenants=tenant, progress=progress)
        finally:
            if isinstance(state, RedisStore):
                state.clear()
            state.close()
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        print_parity(report)
    if not report.ok:
        raise typer.Exit(1)


def print_parity(report: ParityReport) -> None:
    verdict = "[green]parity[/green]" if report.ok else "[red]MISMATCH[/red]"
    out.print(f"{report.feature_set} on {report.state_store}: {report.transactions:,} events,"
              f" {report.labels:,} labels replayed: {verdict} ({report.seconds:.1f} s)")
    table = Table(title_justify="left")
    for column in ("feature", "compared", "mismatch rate", "missing", "extra", "max abs diff",
                   ""):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for f in report.features:
        table.add_row(f.name, f"{f.compared:,}", f"{f.mismatch_rate:.4%}", f"{f.missing_online:,}",
                      f"{f.extra_online:,}", f"{f.max_abs_diff:.3g}",
                      "[green]✓[/green]" if f.ok else "[red]✗[/red]")
    out.print(table)
    for name in report.missing_features:
        out.print(f"[red]missing online:[/red] {name}")
    for name in report.extra_features:
        out.print(f"[red]extra online:[/red] {name}")
