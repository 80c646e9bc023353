"""Commands over the event layer: init, ingest, status, profile, simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudops.core import Workspace
from fraudops.events import (
    EventStore,
    IngestReport,
    ingest_file,
    load_mapping,
    profile_events,
    write_profile,
)
from fraudops.features import write_starter_definitions

from ._app import WorkspaceOption, app, open_workspace
from ._console import out, progress_bar


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    name: Annotated[str | None, typer.Option(help="Workspace name (default: folder name).")] = None,
    default_tenant: Annotated[str, typer.Option(help="Tenant of events whose mapping names"
                                                     " none.")] = "default",
) -> None:
    """Create a workspace: config, starter feature definitions, event store, quarantine."""
    workspace = Workspace.init(directory, name=name, default_tenant=default_tenant)
    definitions = write_starter_definitions(workspace.features_dir)
    out.print(f"created workspace [bold]{workspace.config.name}[/bold] in {workspace.root}"
              f"\nstarter feature definitions: {definitions}")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL export to ingest.")],
    mapping: Annotated[Path, typer.Option("--mapping", "-m", help="Mapping file (TOML) that says"
                                          " how the export becomes events.")],
    workspace: WorkspaceOption = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any row was quarantined.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ingest an export through a mapping; every row is accepted, quarantined or a duplicate."""
    ws = open_workspace(workspace)
    parsed = load_mapping(mapping)
    with progress_bar("ingest") as progress:
        report = ingest_file(ws, file, parsed, progress=progress)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        print_ingest_report(report)
    if strict and report.quarantined:
        raise typer.Exit(1)


def print_ingest_report(report: IngestReport) -> None:
    """The reconciliation, as a person reads it."""
    check = "[green]reconciles[/green]" if report.reconciles else "[red]DOES NOT RECONCILE[/red]"
    out.print(f"batch {report.batch_id}: read {report.rows_read:,} = accepted {report.accepted:,}"
              f" + quarantined {report.quarantined:,} + duplicates {report.duplicates:,}"
              f"  ({check})")
    out.print(f"labels: {report.labels_added:,} new, {report.labels_unchanged:,} unchanged"
              f"  [dim]({report.seconds:.2f} s)[/dim]")
    if report.top_problems:
        table = Table(title="most frequent problems", title_justify="left")
        for column in ("field", "problem", "rows"):
            table.add_column(column, justify="right" if column == "rows" else "left")
        for field, reason, count in report.top_problems:
            table.add_row(field, reason, f"{count:,}")
        out.print(table)
    if report.quarantine_dir:
        out.print(f"quarantine: {report.quarantine_dir}")


@app.command()
def status(workspace: WorkspaceOption = None) -> None:
    """Print what the workspace holds: events per tenant, labels, ingestion batches."""
    ws = open_workspace(workspace)
    print_status(ws)


def print_status(ws: Workspace) -> None:
    """Per-tenant counts, time span and labels, and the ingestion history."""
    store = EventStore(ws.events_dir)
    out.print(f"workspace [bold]{ws.config.name}[/bold] at {ws.root}")
    table = Table(title_justify="left")
    for column in ("tenant", "transactions", "from", "to", "days", "fraud labels",
                   "genuine labels", "labelled fraud rate"):
        table.add_column(column, justify="left" if column in ("tenant", "from", "to") else "right")
    for row in store.summary():
        rate = row.labelled_fraud / row.transactions if row.transactions else 0.0
        table.add_row(row.tenant, f"{row.transactions:,}",
                      f"{row.first_event:%Y-%m-%d %H:%M}" if row.first_event else "-",
                      f"{row.last_event:%Y-%m-%d %H:%M}" if row.last_event else "-",
                      str(row.days), f"{row.labelled_fraud:,}", f"{row.labelled_genuine:,}",
                      f"{rate:.3%}")
    out.print(table if table.row_count else "no events yet: add some with 'fraudops ingest'"
              " or 'fraudops simulate'")
    attributes = store.attribute_types()
    if attributes:
        out.print("attributes: " + ", ".join(f"{k} ({v})" for k, v in attributes.items()))
    if ws.ingest_log.exists():
        batches = [json.loads(line) for line in ws.ingest_log.read_text().splitlines() if line]
        out.print(f"ingestion batches: {len(batches)}; rows read {sum(b['rows_read'] for b in batches):,},"
                  f" accepted {sum(b['accepted'] for b in batches):,},"
                  f" quarantined {sum(b['quarantined'] for b in batches):,},"
                  f" duplicates {sum(b['duplicates'] for b in batches):,}")


@app.command()
def profile(
    workspace: WorkspaceOption = None,
    tenant: Annotated[str | None, typer.Option(help="Profile one tenant only.")] = None,
    sample_rows: Annotated[int, typer.Option(help="Rows sampled for correlations.")]
        = 200_000,
) -> None:
    """Write a JSON and a self-contained HTML profile of the workspace's events."""
    write_profile_report(open_workspace(workspace), tenant=tenant, sample_rows=sample_rows)


def write_profile_report(ws: Workspace, *, tenant: str | None, sample_rows: int = 200_000) -> None:
    """Profile the events into ``reports/`` and say where the files are."""
    with progress_bar("profile") as progress:
        result = profile_events(EventStore(ws.events_dir), tenant=tenant,
                                sample_rows=sample_rows, progress=progress)
    json_path, html_path = write_profile(result, ws.reports_dir)
    out.print(f"profile: {html_path}\n         {json_path}")
