"""``fraudops quickstart``: the main job on the embedded default, from nothing to a report.

Today: create a workspace, simulate a realistic export, ingest it through its mapping (with the
quarantine and the reconciliation), compute the starter features offline and prove online
parity on the first days, train and register one model per tenant, gate each against the
base-rate baseline (a passing one becomes live), deploy the live models with an API key per
tenant and score the first day through the serving engine (state and decision log as a server
keeps them), profile the events and print what is there. Each later
part of fraudops (features, training, the gate, serving, monitoring) adds its step here until
this command runs the whole loop.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from fraudops.core import CONFIG_FILE, Workspace, WorkspaceError
from fraudops.events import (
    EventStore,
    export_simulation,
    ingest_file,
    load_mapping,
    save_ground_truth,
)
from fraudops.features import (
    MemoryStore,
    OfflineEngine,
    OnlineEngine,
    check_parity,
    workspace_feature_set,
    write_backfill,
    write_starter_definitions,
)
from fraudops.models import ModelRegistry, TrainingPlan, register_training, train_model
from fraudops.release import GateConfig, gate_and_record, run_gate, write_gate_report
from fraudops.serving import ModelRef

from ._app import app
from ._console import out, progress_bar
from ._data_commands import print_ingest_report, print_status, write_profile_report
from ._features import print_parity
from ._gate import print_gate
from ._serve import deploy_and_score
from ._simulate import build_config, print_simulation, run_simulation
from ._train import model_name_for, print_training


def _fresh_folder(directory: Path, replace: bool) -> None:
    if not directory.exists():
        return
    if (directory / CONFIG_FILE).is_file():
        if not replace:
            raise WorkspaceError(f"{directory} already holds a workspace; pass --replace to"
                                 " delete it and start again")
        shutil.rmtree(directory)
    elif any(directory.iterdir()):
        raise WorkspaceError(f"{directory} exists and is not empty; choose a new folder")


def _windows(days: int) -> tuple[int, int, int]:
    """Label delay, validation and training days that fit the simulated period (1 week, 1 week
    and 4 weeks when it is long enough)."""
    delay = validation = min(7, days // 4)
    return delay, validation, max(1, min(28, days - delay - validation - 1))


@app.command()
def quickstart(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] =
        Path("demo-workspace"),
    replace: Annotated[bool, typer.Option(help="Delete an existing workspace in DIRECTORY"
                                               " first.")] = False,
    customers: Annotated[int, typer.Option(help="Customers per tenant.")] = 2_500,
    terminals: Annotated[int, typer.Option(help="Terminals per tenant.")] = 5_000,
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 183,
    tenants: Annotated[int, typer.Option(help="Tenants (clients), each with its own fraud"
                                              " intensity.")] = 2,
    drift_start: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="Day a new fraud pattern starts (default: when five sixths"
                                   " of the period have passed).")] = None,
    drift: Annotated[bool, typer.Option(help="Simulate a new fraud pattern late in the"
                                             " period.")] = True,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 0,
    parity_days: Annotated[int, typer.Option(help="Days replayed through the online engine to"
                                                  " prove parity.")] = 14,
) -> None:
    """Run the main job end to end: workspace, simulated export, ingestion, features with a
    parity proof, a registered model per tenant, profile, status."""
    directory = directory.absolute()
    _fresh_folder(directory, replace)
    ws = Workspace.init(directory)
    out.rule("1. workspace")
    out.print(f"created workspace [bold]{ws.config.name}[/bold] in {ws.root}")

    out.rule("2. simulate an export")
    start = date(2018, 4, 1)
    drift_day = None
    if drift:
        drift_day = drift_start.date() if drift_start else start + timedelta(days=days * 5 // 6)
    config = build_config(customers=customers, terminals=terminals, days=days, start=start,
                          seed=seed, tenants=tenants, drift_start=drift_day)
    simulation = run_simulation(config)
    export = ws.root / "imports" / "simulated_transactions.parquet"
    mapping = export_simulation(simulation, export)
    save_ground_truth(simulation, ws.root / "simulation")
    print_simulation(simulation)
    out.print(f"export {export.relative_to(ws.root)}, mapping {mapping.relative_to(ws.root)};"
              " ground truth (evaluation only) in simulation/")

    out.rule("3. ingest")
    with progress_bar("ingest") as progress:
        report = ingest_file(ws, export, load_mapping(mapping), progress=progress)
    print_ingest_report(report)

    out.rule("4. features")
    write_starter_definitions(ws.features_dir, identity=True)
    features = workspace_feature_set(ws)
    features.validate(EventStore(ws.events_dir).empty("transactions").column_names)
    with progress_bar("backfill") as progress:
        table = OfflineEngine(EventStore(ws.events_dir)).backfill(features, progress=progress)
    path = write_backfill(table, ws.root / "offline" / features.name)
    out.print(f"{features.name}: {len(features.names)} features x {table.num_rows:,} events"
              f" -> {path.relative_to(ws.root)}")
    end = datetime.combine(start + timedelta(days=parity_days), time(0), tzinfo=UTC)
    with progress_bar("parity") as progress:
        parity = check_parity(EventStore(ws.events_dir), features,
                              lambda: OnlineEngine(features, MemoryStore()), end=end,
                              progress=progress)
    print_parity(parity)

    out.rule("5. train and register one model per tenant")
    registry = ModelRegistry(workspace=ws)
    trained = []
    delay, validation, history = _windows(days)
    for summary in EventStore(ws.events_dir).summary():
        # trained a week before the newest event, so the gate judges it on a later week
        assert summary.last_event is not None
        plan = TrainingPlan(tenant=summary.tenant, random_state=seed, label_delay_days=delay,
                            validation_days=validation, train_days=history - validation,
                            as_of=summary.last_event - timedelta(days=validation))
        with progress_bar(f"train {summary.tenant}") as progress:
            result = train_model(EventStore(ws.events_dir), features, plan, features=table,
                                 progress=progress)
        version = register_training(registry, result, model_name=model_name_for(summary.tenant))
        trained.append((summary.tenant, result, version))
    print_training(ws, trained)

    out.rule("6. release gate: each candidate against the base-rate baseline")
    gates_passed = True
    for tenant, result, version in trained:
        verdict = run_gate(EventStore(ws.events_dir), features, result.model, None,
                          config=GateConfig(window_days=validation, label_delay_days=delay,
                                            backtest_weeks=2),
                          tenant=tenant, features=table,
                          candidate_name=f"{version.model_name} v{version.version}",
                          live_name="base-rate baseline")
        files = write_gate_report(verdict, ws.reports_dir / f"gate-{version.model_name}"
                                                            f"-v{version.version}")
        # no model is live yet: a candidate that beats the baseline becomes the first live one
        decision = gate_and_record(registry, candidate_version=version.version,
                                   model_name=version.model_name, report=verdict,
                                   promote_to="live", report_uri=str(files.html))
        print_gate(verdict, files, decision)
        gates_passed = gates_passed and verdict.passed
    if not gates_passed:
        out.print("[yellow]a candidate did not pass its gate: it stays a candidate; read its"
                  " report for why[/yellow]")

    out.rule("7. deploy the live models and score the first day through the serving engine")
    live = [(tenant, version) for (tenant, _, version) in trained
            if registry.role("live", model_name=version.model_name) == version.version]
    if live:
        deploy_and_score(ws, [(tenant, ModelRef(v.model_name, v.version)) for tenant, v in live],
                         end=datetime.combine(start + timedelta(days=1), time(0), tzinfo=UTC))

    out.rule("8. profile")
    write_profile_report(ws, tenant=None)

    out.rule("9. what is there")
    print_status(ws)
    out.print(f"\nnext: open {ws.reports_dir / 'profile.html'} in a browser, or run"
              f" 'fraudops status -w {ws.root}'")
    if not report.reconciles or not parity.ok:  # never expected: both are contracts
        raise typer.Exit(1)
