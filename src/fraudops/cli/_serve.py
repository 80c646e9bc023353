"""``fraudops serve``, ``deploy``, ``keys``, ``score`` and ``decisions``: real-time scoring."""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fraudops.core import InputError, Workspace
from fraudops.events import EventStore
from fraudops.features import workspace_feature_set
from fraudops.models import ModelRegistry
from fraudops.serving import (
    ApiKeys,
    CanarySpec,
    DecisionLog,
    ModelPool,
    ModelRef,
    PlanStore,
    Runtime,
    ServingConfig,
    ShadowSpec,
    TenantPlan,
    registry_loader,
    run_workers,
)
from fraudops.serving._runtime import CONFIG_ENV

from ._app import WorkspaceOption, app, open_workspace
from ._console import err, out, progress_bar
from ._train import model_name_for

DatabaseOption = Annotated[str | None, typer.Option(
    "--database", envvar="FRAUDOPS_SERVING_DATABASE",
    help="Decision log, plans and keys: sqlite:///PATH or postgresql://… "
         "(default: serving/serving.db in the workspace).")]


def _config(workspace: Path | None, database: str | None, **settings: object) -> ServingConfig:
    ws = open_workspace(workspace)
    return ServingConfig(workspace=str(ws.root), database=database, **settings)  # type: ignore[arg-type]


@app.command()
def serve(
    workspace: WorkspaceOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless you mean it.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    state: Annotated[str, typer.Option(help="Online feature state: sqlite, redis or memory.")]
    = "sqlite",
    redis_url: Annotated[str, typer.Option(help="Redis for --state redis.")]
    = "redis://127.0.0.1:6379/0",
    redis_prefix: Annotated[str, typer.Option(help="Key prefix in Redis (one per workspace).")]
    = "fraudops:",
    database: DatabaseOption = None,
    shadows: Annotated[bool, typer.Option(help="Score shadow models.")] = True,
    shadow_process: Annotated[bool, typer.Option(
        "--shadow-process/--shadow-thread",
        help="Score shadows in a child process of each worker at the lowest CPU priority"
             " (isolates shadow models you do not trust or that are heavy; on 2 cores it"
             " raised p99 by ~1 ms at 1,000 req/s), or on a thread of the worker.")] = False,
    reasons: Annotated[int, typer.Option(min=0, help="Feature contributions per decision.")] = 3,
    micro_batch: Annotated[int, typer.Option(
        min=1, help="At most this many concurrent /v1/score requests decided together"
                    " (one state read-modify-write and one log commit); 1: one at a time.")] = 32,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Start the scoring API (OpenAPI docs at /docs). Stops on Ctrl-C or SIGTERM."""
    import uvicorn

    if workers > 1 and state == "memory":
        raise typer.BadParameter("--state memory cannot be shared by several workers; "
                                 "use sqlite or redis", param_hint="--workers")
    config = _config(workspace, database, state=state, redis_url=redis_url,
                     redis_prefix=redis_prefix, shadows=shadows, shadow_process=shadow_process,
                     n_reasons=reasons, micro_batch=micro_batch)
    os.environ[CONFIG_ENV] = config.to_env()
    metrics_dir = None
    several_processes = workers > 1 or (shadows and shadow_process)
    if several_processes and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="fraudops-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    err.print(f"fraudops serving {config.workspace} on http://{host}:{port} "
              f"({workers} worker(s), state {state}, log {config.database_url().split('?')[0]})")
    try:
        uv = uvicorn.Config("fraudops.serving:app_from_env", factory=True, host=host, port=port,
                            log_level=log_level, access_log=False, timeout_graceful_shutdown=10,
                            proxy_headers=False)   # client addresses are not used
        if workers == 1:
            uvicorn.Server(uv).run()
        else:   # each connection handed to the worker with the fewest open ones
            try:
                status = run_workers(uv, workers)
            except OSError as exc:
                raise typer.BadParameter(str(exc), param_hint="--port") from None
            if status:
                raise typer.Exit(status)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def deploy_and_score(ws: Workspace, live: list[tuple[str, ModelRef]], *, end: datetime) -> None:
    """Deploy each tenant's live model, create a key per tenant (written to
    ``serving/api-keys.txt``, readable by the owner only), and decide on every event before
    ``end`` through the engine a server runs (SQLite state, decision log): the history starts
    there, so the online state is exact, and a server started later goes on from it."""
    config = ServingConfig(workspace=str(ws.root), shadows=False)
    url = config.database_url()
    with PlanStore.open(url) as plans, ApiKeys.open(url) as keys:
        lines = []
        for tenant, ref in live:
            plans.apply(TenantPlan(tenant, ref), actor="quickstart", reason="gate passed")
            key, _ = keys.create(tenant, created_by="quickstart", label="quickstart demo")
            lines.append(f"{tenant} {key}")
    key_file = ws.root / "serving" / "api-keys.txt"
    key_file.touch(mode=0o600)
    key_file.write_text("\n".join(lines) + "\n")
    store = EventStore(ws.events_dir)
    with store.connect() as con:
        rows = con.sql("SELECT * FROM transactions WHERE event_time < ? ORDER BY event_time, "
                       "event_id", params=[end]).to_arrow_table().to_pylist()
    runtime = Runtime(config)
    latencies, actions = [], {"ALLOW": 0, "REVIEW": 0, "PREVENT": 0}
    try:
        with progress_bar("score") as progress:
            for i, row in enumerate(rows):
                event = {k: v for k, v in row.items() if v is not None and k != "date"}
                decision = runtime.engine.score(event, source="batch").decision
                latencies.append(decision.latency_us)
                actions[decision.action] += 1
                if i % 1000 == 0:
                    progress("events", i, len(rows))
    finally:
        runtime.close()
    latencies.sort()
    for tenant, ref in live:
        out.print(f"{tenant}: live {ref}")
    if latencies:
        out.print(f"{len(rows):,} events decided in process: "
                  + ", ".join(f"{k} {v:,}" for k, v in actions.items())
                  + f"; latency p50 {latencies[len(latencies) // 2]} µs, "
                    f"p99 {latencies[int(len(latencies) * 0.99)]} µs")
    out.print(f"API keys: {key_file}; start the API with 'fraudops serve -w {ws.root}' "
              "(docs at http://127.0.0.1:8000/docs)")


# -- deploy -----------------------------------------------------------------------------------
deploy_app = typer.Typer(help="The deployment plan: live, shadow and canary models per tenant.",
                         no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def _ref(spec: str, tenant: str, what: str) -> tuple[ModelRef, float | None]:
    """``NAME/VERSION[@SHARE]`` or ``VERSION[@SHARE]`` (the tenant's model ``fraud-<tenant>``)."""
    body, _, share = spec.partition("@")
    name, _, version = body.rpartition("/")
    try:
        ref = ModelRef(name or model_name_for(tenant), int(version))
        return ref, (float(share) if share else None)
    except ValueError:
        raise InputError(f"{what} {spec!r}: expected NAME/VERSION or VERSION, optionally "
                         "followed by @SHARE (e.g. fraud-acme/3@0.1)") from None


@deploy_app.command("set")
def deploy_set(
    tenant: Annotated[str, typer.Argument(help="The tenant (client) to serve.")],
    live: Annotated[str, typer.Option(help="The deciding model: NAME/VERSION or VERSION.")],
    shadow: Annotated[list[str] | None, typer.Option(
        help="A shadow model, NAME/VERSION[@SAMPLE] (repeatable).")] = None,
    canary: Annotated[str | None, typer.Option(
        help="A canary model deciding for a share of cards: NAME/VERSION@SHARE.")] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    workspace: WorkspaceOption = None,
    database: DatabaseOption = None,
) -> None:
    """Set a tenant's plan. Every model is loaded and checked first; running servers switch
    within a second, without a restart."""
    config = _config(workspace, database)
    live_ref, _ = _ref(live, tenant, "--live")
    shadows = []
    for spec in shadow or []:
        ref, sample = _ref(spec, tenant, "--shadow")
        shadows.append(ShadowSpec(ref, 1.0 if sample is None else sample))
    canary_spec = None
    if canary is not None:
        ref, share = _ref(canary, tenant, "--canary")
        if share is None:
            raise InputError(f"--canary {canary!r}: give its share of cards, e.g. {canary}@0.1")
        canary_spec = CanarySpec(ref, share)
    plan = TenantPlan(tenant, live_ref, tuple(shadows), canary_spec)
    ws = open_workspace(Path(config.workspace))
    pool = ModelPool(registry_loader(ModelRegistry(workspace=ws), ws.root / "serving" / "models"),
                     workspace_feature_set(ws, config.feature_set))
    pool.prepare(plan.models)
    with PlanStore.open(config.database_url()) as store:
        change = store.apply(plan, actor=f"cli:{getpass.getuser()}", reason=reason)
    out.print(f"plan revision {change.revision} for {tenant}: live {live_ref}"
              + "".join(f", shadow {s.model} ({s.sample:.0%})" for s in shadows)
              + ("" if canary_spec is None
                 else f", canary {canary_spec.model} ({canary_spec.share:.0%} of cards)"))


@deploy_app.command("show")
def deploy_show(workspace: WorkspaceOption = None, database: DatabaseOption = None) -> None:
    """Print every tenant's plan."""
    config = _config(workspace, database)
    with PlanStore.open(config.database_url()) as store:
        revision, plans = store.plans()
    table = Table(title=f"deployment plan, revision {revision}", title_justify="left")
    for column in ("tenant", "live", "canary", "shadows"):
        table.add_column(column)
    for tenant, plan in sorted(plans.items()):
        table.add_row(tenant, str(plan.live),
                      "-" if plan.canary is None else f"{plan.canary.model} ({plan.canary.share:.0%})",
                      ", ".join(f"{s.model} ({s.sample:.0%})" for s in plan.shadows) or "-")
    out.print(table)


@deploy_app.command("history")
def deploy_history(tenant: Annotated[str | None, typer.Argument()] = None,
                   limit: Annotated[int, typer.Option(min=1)] = 20,
                   workspace: WorkspaceOption = None, database: DatabaseOption = None) -> None:
    """Who changed which plan, when, from what to what (newest first)."""
    config = _config(workspace, database)
    with PlanStore.open(config.database_url()) as store:
        changes = store.history(tenant, limit=limit)
    table = Table(title="plan changes", title_justify="left")
    for column in ("revision", "when", "who", "tenant", "live", "reason"):
        table.add_column(column)
    for c in changes:
        live = "(removed)" if c.plan is None else f"{c.plan['live']['name']}/v{c.plan['live']['version']}"
        table.add_row(str(c.revision), c.changed_at.isoformat(timespec="seconds"), c.actor,
                      c.tenant, live, c.reason)
    out.print(table)


@deploy_app.command("remove")
def deploy_remove(tenant: str, reason: Annotated[str, typer.Option()] = "",
                  workspace: WorkspaceOption = None, database: DatabaseOption = None) -> None:
    """Stop serving a tenant."""
    config = _config(workspace, database)
    with PlanStore.open(config.database_url()) as store:
        if store.get(tenant) is None:
            raise InputError(f"tenant {tenant!r} has no deployment plan")
        change = store.remove(tenant, actor=f"cli:{getpass.getuser()}", reason=reason)
    out.print(f"plan revision {change.revision}: {tenant} is no longer served")


# -- keys -------------------------------------------------------------------------------------
keys_app = typer.Typer(help="API keys: one or more per tenant, and admin keys.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Argument(help="The tenant the key acts for.")] = None,
    admin: Annotated[bool, typer.Option(help="An admin key (plans, every tenant).")] = False,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    workspace: WorkspaceOption = None, database: DatabaseOption = None,
) -> None:
    """Create a key and print it once (only its SHA-256 is stored)."""
    if (tenant is None) == (not admin):
        raise typer.BadParameter("give a TENANT, or --admin for an admin key (not both)")
    config = _config(workspace, database)
    with ApiKeys.open(config.database_url()) as keys:
        key, record = keys.create(tenant, created_by=f"cli:{getpass.getuser()}", label=label)
    err.print(f"key {record.key_id} for {'every tenant (admin)' if tenant is None else tenant}; "
              "store it now, it is not shown again:")
    out.print(key)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Argument()] = None,
              workspace: WorkspaceOption = None, database: DatabaseOption = None) -> None:
    """List keys (ids, tenants, creation, revocation), never the keys themselves."""
    config = _config(workspace, database)
    with ApiKeys.open(config.database_url()) as keys:
        records = keys.list(tenant)
    table = Table(title="API keys", title_justify="left")
    for column in ("key id", "tenant", "label", "created", "by", "revoked"):
        table.add_column(column)
    for k in records:
        table.add_row(k.key_id, k.tenant or "(admin)", k.label,
                      k.created_at.isoformat(timespec="seconds"), k.created_by,
                      "" if k.revoked_at is None else k.revoked_at.isoformat(timespec="seconds"))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, workspace: WorkspaceOption = None,
                database: DatabaseOption = None) -> None:
    """Revoke a key; servers refuse it within 5 seconds."""
    config = _config(workspace, database)
    with ApiKeys.open(config.database_url()) as keys:
        keys.revoke(key_id, actor=f"cli:{getpass.getuser()}")
    out.print(f"key {key_id} revoked")


# -- decisions --------------------------------------------------------------------------------
decisions_app = typer.Typer(help="The decision log.", no_args_is_help=True)
app.add_typer(decisions_app, name="decisions")


@decisions_app.command("export")
def decisions_export(
    directory: Annotated[Path, typer.Argument(help="Folder for decisions.parquet and "
                                                   "shadow_scores.parquet.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    workspace: WorkspaceOption = None, database: DatabaseOption = None,
) -> None:
    """Export the decision log (and shadow scores) to Parquet for analysis."""
    config = _config(workspace, database)
    with DecisionLog.open(config.database_url()) as log:
        paths = log.export_parquet(directory, tenant=tenant)
    for path in paths:
        out.print(str(path))
