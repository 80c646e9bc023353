"""The quarantine: every rejected row with its row number, field, source column, value and reason.

For a batch with problems, ``quarantine/<batch>/`` holds

- ``problems.csv``: one line per (row, field) problem;
- ``rows.csv`` / ``rows.parquet`` / ``rows.jsonl``: the rejected records exactly as read, in the
  source's own format plus a ``_row`` column, so they can be fixed and ingested again with the
  same mapping;
- ``duplicates.csv``: rows not stored because their event was stored already.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ._convert import Conversion
from ._mapping import SourceOptions
from ._readers import RawTable


@dataclass(frozen=True)
class Problem:
    """Why one field of one row was rejected."""

    row: int
    field: str
    column: str | None
    value: str | None
    reason: str


#: Rows not stored because their event is stored already (or earlier in the same file).
DUPLICATES_SCHEMA = pa.schema([("row", pa.int64()), ("tenant", pa.string()),
                               ("event_id", pa.string()), ("reason", pa.string())])


def collect_problems(raw: RawTable, conversion: Conversion) -> list[Problem]:
    """Every problem of every row, in row order; unreadable records first by row."""
    problems = [Problem(u.row, "<record>", None, u.text, u.reason) for u in raw.unreadable]
    for item in conversion.errors:
        positions = np.flatnonzero(pc.is_valid(item.errors).to_numpy(zero_copy_only=False))
        if not len(positions):
            continue
        reasons = item.errors.take(pa.array(positions)).to_pylist()
        if item.column is not None:
            source = raw.table.column(item.column).combine_chunks().take(pa.array(positions))
            values = [None if v is None else str(v) for v in source.to_pylist()]
        else:
            values = [None] * len(positions)
        problems.extend(Problem(int(raw.rows[p]), item.field, item.column, v, r)
                        for p, v, r in zip(positions, values, reasons, strict=True))
    problems.sort(key=lambda p: p.row)
    return problems


def summarise(problems: list[Problem], limit: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (field, reason kind) pairs, for the command's printout."""
    counts = Counter((p.field, _reason_kind(p)) for p in problems)
    return [(field, reason, n) for (field, reason), n in counts.most_common(limit)]


def _reason_kind(problem: Problem) -> str:
    # "'abc' is not a number" and "'x1' is not a number" are the same kind of problem
    if problem.value is not None and problem.reason.startswith(f"'{problem.value}' "):
        return problem.reason[len(problem.value) + 3:]
    return problem.reason


def write_quarantine(folder: Path, raw: RawTable, options: SourceOptions,
                     problems: list[Problem], rejected: np.ndarray,
                     duplicates: pa.Table) -> Path | None:
    """Write the batch's quarantine files; returns the folder, or None when nothing was rejected."""
    if not problems and not duplicates.num_rows:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if problems:
        pcsv.write_csv(pa.table({
            "row": [p.row for p in problems],
            "field": [p.field for p in problems],
            "column": pa.array([p.column for p in problems], pa.string()),
            "value": pa.array([p.value for p in problems], pa.string()),
            "reason": [p.reason for p in problems],
        }), folder / "problems.csv")
    if len(rejected):
        _write_rows(folder, raw, options, rejected)
    if duplicates.num_rows:
        pcsv.write_csv(duplicates, folder / "duplicates.csv")
    return folder


def _write_rows(folder: Path, raw: RawTable, options: SourceOptions, positions: np.ndarray) -> None:
    rows = raw.table.take(pa.array(positions))
    rows = rows.add_column(0, "_row", pa.array(raw.rows[positions]))
    if raw.format == "parquet":
        pq.write_table(rows, folder / "rows.parquet")
    elif raw.format == "jsonl":
        with open(folder / "rows.jsonl", "w", encoding="utf-8") as handle:
            for record in rows.to_pylist():
                handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    else:
        pcsv.write_csv(rows, folder / "rows.csv",
                       write_options=pcsv.WriteOptions(delimiter=options.delimiter))
