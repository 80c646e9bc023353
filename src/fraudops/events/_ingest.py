"""Ingestion: a source file and its mapping in, canonical events and a reconciliation out.

Every row read ends up in exactly one of three places, and the report says how many:
``rows_read = accepted + quarantined + duplicates``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import Progress, Workspace, null_progress

from ._convert import Conversion, apply_mapping
from ._mapping import Mapping
from ._parsers import prepare_strings
from ._quarantine import (
    DUPLICATES_SCHEMA,
    Problem,
    collect_problems,
    summarise,
    write_quarantine,
)
from ._readers import read_source
from ._schema import LABEL_SCHEMA, UTC_TIME, attribute_types, conform_transactions
from ._store import EventStore


@dataclass(frozen=True)
class IngestReport:
    """The reconciliation of one ingestion batch."""

    batch_id: str
    source: str
    mapping: str
    rows_read: int
    accepted: int
    quarantined: int
    duplicates: int
    labels_added: int
    labels_unchanged: int
    quarantine_dir: str | None
    top_problems: list[tuple[str, str, int]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def reconciles(self) -> bool:
        """True when every row read is accounted for."""
        return self.rows_read == self.accepted + self.quarantined + self.duplicates

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "reconciles": self.reconciles}


def new_batch_id(now: datetime | None = None) -> str:
    """A sortable, unique batch id: UTC time and a random suffix."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def ingest_file(workspace: Workspace, path: Path | str, mapping: Mapping, *,
                progress: Progress = null_progress, now: datetime | None = None) -> IngestReport:
    """Read ``path`` through ``mapping`` into the workspace's event store.

    Rows that fail validation go to the quarantine with their reasons; rows whose event is
    already stored are counted as duplicates, so ingesting the same file twice adds nothing.
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    batch_id = new_batch_id(now)
    progress("read", 0, 4)
    raw = read_source(path, mapping.source)
    progress("parse", 1, 4)
    conversion = apply_mapping(prepare_strings(raw.table, mapping.source), mapping,
                               default_tenant=workspace.config.default_tenant, now=now)
    problems = collect_problems(raw, conversion)
    failed = conversion.failed().to_numpy(zero_copy_only=False)
    good = np.flatnonzero(~failed)
    table = _transactions(conversion, good, mapping)
    store = EventStore(workspace.events_dir)
    with workspace.lock():
        progress("deduplicate", 2, 4)
        store.check_attributes(attribute_types(conform_transactions(table.slice(0, 0))))
        keep, duplicates, conflicts = _deduplicate(table, raw.rows[good], store)
        problems = sorted(problems + conflicts, key=lambda p: p.row)
        conflicting = np.isin(raw.rows[good], [c.row for c in conflicts])
        labels = _label_events(conversion, good[~conflicting], table.filter(~conflicting),
                               mapping, source=f"import:{Path(path).name}")
        new_labels, unchanged = _new_labels(labels, store, now)
        progress("write", 3, 4)
        accepted = store.append_transactions(table.filter(pa.array(keep)), batch_id=batch_id)
        store.append_labels(new_labels, batch_id=batch_id)
        rejected = np.union1d(np.flatnonzero(failed), good[conflicting])
        folder = write_quarantine(workspace.quarantine_dir / batch_id, raw, mapping.source,
                                  problems, rejected, duplicates)
        report = IngestReport(
            batch_id=batch_id, source=str(Path(path).absolute()), mapping=mapping.origin,
            rows_read=raw.rows_read, accepted=accepted,
            quarantined=len(rejected) + len(raw.unreadable), duplicates=duplicates.num_rows,
            labels_added=new_labels.num_rows, labels_unchanged=unchanged,
            quarantine_dir=None if folder is None else str(folder),
            top_problems=summarise(problems), seconds=round(time.perf_counter() - started, 3))
        with open(workspace.ingest_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(report.to_dict()) + "\n")
    progress("done", 4, 4)
    return report


def _transactions(conversion: Conversion, good: np.ndarray, mapping: Mapping) -> pa.Table:
    take = pa.array(good, pa.int64())
    columns = {name: values.take(take) for name, values in conversion.columns.items()}
    if mapping.derive_event_id is not None:
        fields = mapping.derive_event_id or tuple(n for n in columns if n != "event_id")
        columns["event_id"] = derive_event_ids(pa.table(columns), fields)
    return conform_transactions(pa.table(columns))


def row_text(table: pa.Table, columns: tuple[str, ...] | list[str]) -> pa.Array:
    """Each row's values as one exact text (times as integer microseconds), for hashing."""
    parts = []
    for name in columns:
        column = table.column(name).combine_chunks()
        if pa.types.is_timestamp(column.type):
            column = pc.cast(column, pa.int64())
        parts.append(pc.fill_null(pc.cast(column, pa.string()), "\x00"))
    if not parts:
        return pa.array([""] * table.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, "\x1f")


def derive_event_ids(table: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """Stable ids from row content: the same row in the same file always gets the same id.

    Identical rows are told apart by their occurrence (first, second ...), so two genuinely
    identical transactions in one export are both kept, and a second ingest still adds nothing.
    """
    names = ["amount_cents" if c == "amount" else c for c in columns]
    text = row_text(table, names)
    codes = text.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    occurrence = _occurrence(codes)
    return pa.array([hashlib.blake2b(f"{t}\x1e{n}".encode(), digest_size=10).hexdigest()
                     for t, n in zip(text.to_pylist(), occurrence.tolist(), strict=True)],
                    pa.string())


def _occurrence(codes: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same code."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    result = np.empty(len(codes), dtype=np.int64)
    result[order] = np.arange(len(codes)) - run_start
    return result


def _deduplicate(table: pa.Table, rows: np.ndarray, store: EventStore
                 ) -> tuple[np.ndarray, pa.Table, list[Problem]]:
    """Keep the first row of each (tenant, event_id) not yet stored.

    A repeat with identical values is a duplicate; a repeat with other values is a conflict
    and goes to the quarantine (the first row wins). Returns the rows to keep, the duplicates
    (:data:`DUPLICATES_SCHEMA`) and the conflicts.
    """
    keep = np.ones(table.num_rows, dtype=bool)
    conflicts: list[Problem] = []
    positions: list[np.ndarray] = []
    reasons: list[list[str]] = []
    if table.num_rows == 0:
        return keep, DUPLICATES_SCHEMA.empty_table(), conflicts
    codes = row_text(table, ["tenant", "event_id"]).dictionary_encode().indices.to_numpy(
        zero_copy_only=False)
    repeats = np.flatnonzero(_occurrence(codes) > 0)
    if len(repeats):
        first_index: dict[int, int] = {}
        for position, code in enumerate(codes.tolist()):
            first_index.setdefault(code, position)
        content = row_text(table, table.column_names)
        ids = table.column("event_id")
        same, same_reasons = [], []
        for position in repeats.tolist():
            first = first_index[int(codes[position])]
            keep[position] = False
            if content[position] == content[first]:
                same.append(position)
                same_reasons.append(f"repeats row {rows[first]}")
            else:
                event_id = ids[position].as_py()
                conflicts.append(Problem(int(rows[position]), "event_id", None, event_id,
                                         f"event_id {event_id!r} repeats row {rows[first]}"
                                         " with different values (the first row is kept)"))
        positions.append(np.asarray(same, dtype=np.int64))
        reasons.append(same_reasons)
    stored = store.stored_keys("transactions")
    if stored.num_rows:
        with duckdb.connect() as con:
            con.register("incoming", table.select(["tenant", "event_id"]).append_column(
                "position", pa.array(np.arange(table.num_rows))))
            con.register("stored", stored)
            hits = con.sql("SELECT position FROM incoming SEMI JOIN stored"
                           " USING (tenant, event_id)").fetchnumpy()["position"]
        hits = np.asarray(hits[keep[hits]], dtype=np.int64)
        keep[hits] = False
        positions.append(hits)
        reasons.append(["already stored"] * len(hits))
    if not positions:
        return keep, DUPLICATES_SCHEMA.empty_table(), conflicts
    taken = pa.array(np.concatenate(positions))
    duplicates = pa.table({
        "row": pa.array(rows, pa.int64()).take(taken),
        "tenant": table.column("tenant").take(taken),
        "event_id": table.column("event_id").take(taken),
        "reason": pa.array([r for group in reasons for r in group], pa.string()),
    }, schema=DUPLICATES_SCHEMA).sort_by("row")
    return keep, duplicates, conflicts


def _label_events(conversion: Conversion, good: np.ndarray, table: pa.Table, mapping: Mapping,
                  *, source: str) -> pa.Table:
    """Label events for rows that passed validation and carry a label."""
    if conversion.is_fraud is None or conversion.label_time is None:
        return LABEL_SCHEMA.empty_table()
    take = pa.array(good, pa.int64())
    labels = pa.table({
        "event_id": table.column("event_id"),
        "tenant": table.column("tenant"),
        "is_fraud": conversion.is_fraud.take(take),
        "label_time": conversion.label_time.take(take),
    })
    if conversion.fraud_type is not None:
        labels = labels.append_column("fraud_type", conversion.fraud_type.take(take))
    labels = labels.filter(pc.is_valid(labels.column("is_fraud")))
    label_source = mapping.label.source if mapping.label and mapping.label.source else source
    return labels.append_column("source", pa.array([label_source] * labels.num_rows, pa.string()))


def _new_labels(labels: pa.Table, store: EventStore, now: datetime) -> tuple[pa.Table, int]:
    """Drop labels that would not change what is known: same value as the current label.

    Also drops repeats within the batch (first one wins). A label that *changes* a stored
    one was learned now at the earliest, so its ``label_time`` is at least the ingestion time:
    a correction never rewrites what was known in the past. Returns the new labels and how
    many were dropped.
    """
    if labels.num_rows == 0:
        return labels, 0
    with store.connect() as con:
        con.register("incoming", labels.append_column(
            "position", pa.array(np.arange(labels.num_rows))))
        kept = con.sql("""
            SELECT position, CASE WHEN current IS NULL THEN label_time
                                  ELSE greatest(label_time, $now) END AS label_time
            FROM (
                SELECT i.position, i.is_fraud, i.label_time, c.is_fraud AS current,
                       row_number() OVER (PARTITION BY i.tenant, i.event_id
                                          ORDER BY i.position) AS nth
                FROM incoming i LEFT JOIN current_labels c USING (tenant, event_id))
            WHERE nth = 1 AND (current IS NULL OR current <> is_fraud)
            ORDER BY position
        """, params={"now": now}).to_arrow_table()
    new = labels.take(kept.column("position"))
    new = new.set_column(new.schema.get_field_index("label_time"), "label_time",
                         kept.column("label_time").cast(UTC_TIME))
    return new, labels.num_rows - kept.num_rows
