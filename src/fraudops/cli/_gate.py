"""``fraudops gate``: compare a candidate version with the live one, report, promote or refuse.

Exit status: 0 when the gate passes, 1 when it fails (the report says which checks and why),
2 for an error (unknown version, no events in the window, ...), so CI can tell them apart.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fraudops.core import FraudopsError
from fraudops.events import EventStore
from fraudops.features import workspace_feature_set
from fraudops.models import DEFAULT_MODEL_NAME, ROLES, ModelRegistry, TrainedModel
from fraudops.release import (
    CheckResult,
    GateConfig,
    GateDecision,
    GateReport,
    GateReportFiles,
    gate_and_record,
    run_gate,
    write_gate_report,
)

from ._app import WorkspaceOption, app, open_workspace
from ._console import out, progress_bar
from ._features import FeatureSetOption
from ._models import TrackingOption
from ._train import model_name_for


@app.command()
def gate(
    candidate: Annotated[int, typer.Argument(metavar="CANDIDATE", help="Candidate version number, e.g. 7.",
                                             min=1)],
    against: Annotated[str, typer.Option(
        help="'live' (the version holding the live role; the base-rate baseline when none"
             " does), a version number, or 'baseline'.")] = "live",
    workspace: WorkspaceOption = None,
    feature_set: FeatureSetOption = None,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help="Gate this tenant's model (fraud-TENANT) on its events; default:"
                               " the store's only tenant, or the tenant named by --model.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Registered model name (default: fraud-TENANT).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Report folder (default: WORKSPACE/reports/gate-MODEL-vN).")] = None,
    promote_to: Annotated[str, typer.Option(
        help=f"Role a passed candidate gets: {', '.join(ROLES)}, or none.")] = "shadow",
    window_days: Annotated[int, typer.Option(
        help="Days of label-matured events both models are compared on.", min=1)] = 7,
    label_delay_days: Annotated[int, typer.Option(
        help="Days before labels are trusted; younger events are left out.", min=0)] = 7,
    as_of: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        help="Gate as of this moment (UTC; default: the newest event).")] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Gate CANDIDATE against the live model: every check, a report, then promote or refuse."""
    role = None if promote_to.lower() == "none" else promote_to
    if role is not None and role not in ROLES:
        raise FraudopsError(f"--promote-to {promote_to!r}: must be one of {', '.join(ROLES)} or"
                            " none")
    ws = open_workspace(workspace)
    features = workspace_feature_set(ws, feature_set)
    store = EventStore(ws.events_dir)
    features.validate(store.empty("transactions").column_names)
    tenant, model = _tenant_and_model(store, tenant, model)
    registry = ModelRegistry(tracking_uri, workspace=ws, model_name=model)
    live_version = _live_version(registry, against, model)
    if live_version == candidate:
        raise FraudopsError(f"candidate v{candidate} is the version it would be compared with;"
                            " pass --against VERSION or --against baseline")
    config = GateConfig(window_days=window_days, label_delay_days=label_delay_days)
    with tempfile.TemporaryDirectory(prefix="fraudops-gate-") as scratch:
        candidate_dir = registry.download(candidate, model_name=model,
                                          dst=Path(scratch) / "candidate")
        candidate_model = TrainedModel.load(candidate_dir)
        live_model = None
        if live_version is not None:
            live_model = TrainedModel.load(registry.download(
                live_version, model_name=model, dst=Path(scratch) / "live"))
        with progress_bar(f"gate {model} v{candidate}") as progress:
            report = run_gate(
                store, features, candidate_model, live_model, config=config, tenant=tenant,
                as_of=as_of.replace(tzinfo=UTC) if as_of else None,
                candidate_name=f"{model} v{candidate}",
                live_name=f"{model} v{live_version}" + (" (live)" if against == "live" else ""),
                candidate_dir=candidate_dir, progress=progress)
    files = write_gate_report(report, out_dir or ws.reports_dir / f"gate-{model}-v{candidate}")
    decision = gate_and_record(registry, candidate_version=candidate, model_name=model,
                               report=report, promote_to=role,
                               report_uri=str(files.json.parent.absolute()))
    print_gate(report, files, decision)
    if not report.passed:
        raise typer.Exit(1)


def _tenant_and_model(store: EventStore, tenant: str | None,
                      model: str | None) -> tuple[str | None, str]:
    """The tenant whose events are gated and the registered model, from what was given."""
    if model is not None:
        if tenant is None and model.startswith(f"{DEFAULT_MODEL_NAME}-"):
            named = model.removeprefix(f"{DEFAULT_MODEL_NAME}-")
            if named in _tenants(store):
                tenant = named
        return tenant, model
    if tenant is None:
        tenants = _tenants(store)
        if len(tenants) != 1:
            raise FraudopsError(
                f"the store holds {len(tenants)} tenants ({', '.join(tenants) or 'none'});"
                " pass --tenant T (model fraud-T) or --model NAME")
        tenant = tenants[0]
    return tenant, model_name_for(tenant)


def _tenants(store: EventStore) -> list[str]:
    return sorted(row.tenant for row in store.summary() if row.transactions)


def _live_version(registry: ModelRegistry, against: str, model: str) -> int | None:
    if against == "live":
        return registry.role("live", model_name=model)
    if against == "baseline":
        return None
    if against.isdigit() and int(against) >= 1:
        return int(against)
    raise FraudopsError(f"--against {against!r}: must be 'live', 'baseline' or a version number")


def _mark(check: CheckResult) -> str:
    if check.passed:
        return "[green]✓[/green]"
    return "[red]✗[/red]" if check.blocking else "[yellow]⚠[/yellow]"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value + 0.0:.4g}"  # + 0.0: no "-0"


def print_gate(report: GateReport, files: GateReportFiles, decision: GateDecision) -> None:
    """The ✓/✗ table, the verdict and what it did, as the terminal shows them."""
    table = Table(title=f"gate {escape(report.candidate)} against {escape(report.baseline)}"
                        f" (window {report.window[0][:10]} to {report.window[1][:10]})",
                  title_justify="left")
    table.add_column("")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        title = escape(check.title) + ("" if check.blocking else " [dim](warning only)[/dim]")
        table.add_row(_mark(check), title, _figure(check.value), _figure(check.threshold),
                      escape(check.detail))
    out.print(table)
    if report.passed:
        out.print(f"[bold green]PASS[/bold green]: every blocking check passed"
                  f" ({sum(c.blocking for c in report.checks)}).")
    else:
        names = ", ".join(c.name for c in report.failures)
        out.print(f"[bold red]FAIL[/bold red]: {len(report.failures)} blocking check(s) failed:"
                  f" {escape(names)}.", soft_wrap=True)
    if decision.role is not None:
        was = f" (was v{decision.previous})" if decision.previous is not None else ""
        out.print(f"{decision.model_name} v{decision.version} is now {decision.role}{was}.")
    else:
        out.print(f"{decision.model_name} v{decision.version}: no role changed; the verdict is"
                  " recorded on the version (tags fraudops.gate.*).")
    out.print(f"report: {files.html} (also {files.json.name}, {files.csv.name})", soft_wrap=True)
