"""``fraudops score FILE``: batch scoring through the same engine as the API, in process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import typer
from pydantic import ValidationError

from fraudops.core import InputError
from fraudops.serving import Runtime
from fraudops.serving._api_models import TransactionIn

from ._app import WorkspaceOption, app
from ._console import err, out, progress_bar
from ._serve import DatabaseOption, _config

#: transactions decided together (one state read-modify-write and one log commit per chunk)
CHUNK = 256
_READERS = {".parquet": pq.read_table, ".csv": pcsv.read_csv, ".jsonl": pjson.read_json,
            ".json": pjson.read_json}


@app.command()
def score(
    file: Annotated[Path, typer.Argument(help="Transactions: Parquet, CSV or JSON lines, with "
                                              "the canonical columns (event_id, event_time, "
                                              "amount_cents, entity keys, attributes).")],
    output: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Decisions file, .parquet or .csv (default: FILE.decisions.csv).")]
    = None,
    tenant: Annotated[str | None, typer.Option(
        help="Tenant of rows without one (default: the workspace's default tenant).")] = None,
    state: Annotated[str, typer.Option(help="Online feature state: sqlite, redis or memory.")]
    = "sqlite",
    redis_url: Annotated[str, typer.Option(help="Redis for --state redis.")]
    = "redis://127.0.0.1:6379/0",
    workspace: WorkspaceOption = None,
    database: DatabaseOption = None,
) -> None:
    """Decide on every transaction of FILE in time order, as the API would (online state
    updated, decisions logged with source 'batch'). Rows that fail validation are written to
    FILE.errors.csv with the field and the reason; the counts reconcile."""
    reader = _READERS.get(file.suffix.lower())
    if reader is None:
        raise InputError(f"{file}: unknown format {file.suffix!r}; use .parquet, .csv or .jsonl")
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    rows = reader(file).to_pylist()
    config = _config(workspace, database, state=state, redis_url=redis_url, shadows=False)
    runtime = Runtime(config)
    default_tenant = tenant or runtime.workspace.config.default_tenant
    valid: list[tuple[int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        clean = {k: v for k, v in row.items() if v is not None}
        try:
            tx = TransactionIn.model_validate(clean)
        except ValidationError as e:
            errors += [{"row": i, "event_id": row.get("event_id"),
                        "field": ".".join(str(p) for p in problem["loc"]) or "row",
                        "reason": problem["msg"]} for problem in e.errors()]
            continue
        valid.append((i, tx.event(tx.tenant or default_tenant)))
    valid.sort(key=lambda item: (item[1]["event_time"], item[1]["event_id"]))
    decided: list[dict[str, Any]] = []
    try:
        with progress_bar(f"scoring {file.name}") as progress:
            for start in range(0, len(valid), CHUNK):
                chunk = valid[start:start + CHUNK]
                results = runtime.engine.score_many([event for _, event in chunk], source="batch")
                for (i, event), result in zip(chunk, results, strict=True):
                    if isinstance(result, Exception):
                        errors.append({"row": i, "event_id": event["event_id"], "field": "",
                                       "reason": str(result)})
                        continue
                    d = result.decision
                    decided.append({"row": i, "tenant": d.tenant, "event_id": d.event_id,
                                    "event_time": d.event_time, "score": d.score,
                                    "probability": d.probability, "action": d.action,
                                    "model": d.model_name, "model_version": d.model_version,
                                    "role": d.role, "replayed": result.replayed})
                progress("events", start + len(chunk), len(valid))
    finally:
        runtime.close()
    target = output or file.with_name(file.stem + ".decisions.csv")
    _write(decided, target)
    if errors:
        pcsv.write_csv(pa.Table.from_pylist(errors), file.with_name(file.stem + ".errors.csv"))
    actions = {a: sum(1 for d in decided if d["action"] == a) for a in ("ALLOW", "REVIEW", "PREVENT")}
    out.print(f"{len(rows):,} rows: {len(decided):,} decided "
              f"({sum(d['replayed'] for d in decided):,} already decided before), "
              f"{len({e['row'] for e in errors}):,} refused; "
              + ", ".join(f"{k} {v:,}" for k, v in actions.items()))
    out.print(f"decisions: {target}")
    if errors:
        err.print(f"refused rows: {file.with_name(file.stem + '.errors.csv')}")
        raise typer.Exit(1)


def _write(rows: list[dict[str, Any]], target: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("row", pa.int64()), ("tenant", pa.string()), ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")), ("score", pa.int16()),
        ("probability", pa.float64()), ("action", pa.string()), ("model", pa.string()),
        ("model_version", pa.int64()), ("role", pa.string()), ("replayed", pa.bool_())]))
    if target.suffix.lower() == ".parquet":
        pq.write_table(table, target)
    else:
        pcsv.write_csv(table, target)

