"""``fraudops simulate``: a realistic card-transaction data set, into a workspace or an export."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudops.core import Workspace
from fraudops.events import (
    DriftSpec,
    EventStore,
    Simulation,
    SimulationConfig,
    TenantProfile,
    export_simulation,
    new_batch_id,
    save_ground_truth,
    simulate,
    tenant_profiles,
    write_simulation,
)

from ._app import WorkspaceOption, app, open_workspace
from ._console import out, progress_bar


def build_config(*, customers: int, terminals: int, days: int, start: date, seed: int,
                 tenants: int, drift_start: date | None) -> SimulationConfig:
    """The simulation the CLI options describe; several tenants share the population sizes."""
    base = TenantProfile(n_customers=customers, n_terminals=terminals)
    profiles = (base,) if tenants == 1 else tenant_profiles(tenants, base=base)
    drift = None if drift_start is None else DriftSpec(start=drift_start)
    return SimulationConfig(start=start, n_days=days, tenants=profiles, drift=drift, seed=seed)


def run_simulation(config: SimulationConfig, description: str = "simulate") -> Simulation:
    """Simulate with a progress bar; bad parameters become one-line errors."""
    with progress_bar(description) as progress:
        try:
            return simulate(config, progress=progress)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None


def print_simulation(simulation: Simulation) -> None:
    table = Table(title="simulated", title_justify="left")
    for column in ("tenant", "transactions", "tx/day", "fraud rate", "S1", "S2", "S3", "S4",
                   "labels", "never labelled"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for s in simulation.summary():
        by = list(s.frauds_by_type.values())
        table.add_row(s.tenant, f"{s.transactions:,}", f"{s.tx_per_day_min:,}–{s.tx_per_day_max:,}",
                      f"{s.fraud_rate:.3%}", *(f"{n:,}" for n in by), f"{s.labels:,}",
                      f"{s.unlabelled_frauds:,}")
    out.print(table)


@app.command("simulate")
def simulate_command(
    workspace: WorkspaceOption = None,
    customers: Annotated[int, typer.Option(help="Customers per tenant.")] = 5_000,
    terminals: Annotated[int, typer.Option(help="Terminals per tenant.")] = 10_000,
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 183,
    start: Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="First day.")] =
        datetime(2018, 4, 1),
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 0,
    tenants: Annotated[int, typer.Option(help="Tenants, each with its own population and a"
                                              " different fraud intensity.")] = 1,
    drift_start: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="Start a new fraud pattern (account takeover) on this day.")]
        = None,
    export: Annotated[Path | None, typer.Option(
        help="Write an export file (.parquet or .csv) and its mapping instead of storing"
             " events in the workspace.")] = None,
) -> None:
    """Simulate card transactions with three fraud scenarios and late labels (the handbook's
    generative process, extended with tenants, drift, emails and devices)."""
    config = build_config(customers=customers, terminals=terminals, days=days,
                          start=start.date(), seed=seed, tenants=tenants,
                          drift_start=drift_start.date() if drift_start else None)
    if export is not None:
        simulation = run_simulation(config)
        mapping = export_simulation(simulation, export)
        print_simulation(simulation)
        out.print(f"export: {export}\nmapping: {mapping}\n"
                  f"ingest with: fraudops ingest {export} --mapping {mapping}")
        return
    ws = open_workspace(workspace)
    simulation = run_simulation(config)
    store_simulation(ws, simulation)
    print_simulation(simulation)


def store_simulation(ws: Workspace, simulation: Simulation) -> str:
    """Append a simulation to the workspace's event store and save its ground truth."""
    batch_id = new_batch_id()
    with ws.lock():
        n_tx, n_labels = write_simulation(simulation, EventStore(ws.events_dir), batch_id)
    truth, _ = save_ground_truth(simulation, ws.root / "simulation" / batch_id)
    out.print(f"stored {n_tx:,} transactions and {n_labels:,} label events (batch {batch_id});"
              f" ground truth for evaluation: {truth.parent}")
    return batch_id

