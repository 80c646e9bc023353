"""Writing and reading the gate report's files: ``gate.json``, ``gate.html``, ``score_diffs.csv``.

``gate.json`` is :meth:`GateReport.to_dict` made strictly JSON (dates as ISO text, NaN and
infinities as ``null``, tuples as lists): the verdict, every check with its figures, and the top
score diffs. ``score_diffs.csv`` holds every score-diff row; ``gate.html`` is
:func:`render_gate_html`. :func:`read_gate_report` rebuilds the report from the JSON and the CSV,
so a report kept by CI can be rendered again or compared later.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from fraudops.core import FraudopsError

from ._report_html import SCORE_DIFF_CSV, render_gate_html
from ._report_types import CheckResult, GateReport

__all__ = ["GATE_HTML", "GATE_JSON", "GateReportFiles", "gate_json", "read_gate_report",
           "write_gate_report"]

GATE_JSON: Final = "gate.json"
GATE_HTML: Final = "gate.html"
#: Columns read back as text whatever they look like (ids such as ``00123`` stay text).
_TEXT_COLUMNS: Final = ("tenant", "event_id", "card_id", "candidate_action", "live_action")


@dataclass(frozen=True)
class GateReportFiles:
    """The three files of one gate report."""

    json: Path
    html: Path
    csv: Path


def gate_json(report: GateReport) -> str:
    """The report as strict JSON text (``allow_nan=False``: NaN is written as ``null``)."""
    return json.dumps(_jsonable(report.to_dict()), indent=1, ensure_ascii=False,
                      allow_nan=False) + "\n"


def write_gate_report(report: GateReport, out_dir: Path | str) -> GateReportFiles:
    """Write ``gate.json``, ``gate.html`` and ``score_diffs.csv`` into ``out_dir`` (created).

    Each file is written under a temporary name and renamed into place, so a reader (a CI step
    uploading artifacts, a browser) never sees half a report.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = GateReportFiles(json=folder / GATE_JSON, html=folder / GATE_HTML,
                            csv=folder / SCORE_DIFF_CSV)
    csv_tmp = _temporary(files.csv)
    try:
        pa_csv.write_csv(report.score_diffs, csv_tmp)
        os.replace(csv_tmp, files.csv)
    finally:
        csv_tmp.unlink(missing_ok=True)
    for path, text in ((files.json, gate_json(report)), (files.html, render_gate_html(report))):
        temporary = _temporary(path)
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return files


def read_gate_report(out_dir: Path | str) -> GateReport:
    """Rebuild a :class:`GateReport` from the ``gate.json`` and ``score_diffs.csv`` of a folder.

    Figures come back as JSON gives them (lists, not tuples; NaN as None); id and action columns
    of the score diffs are read as text.
    """
    folder = Path(out_dir)
    try:
        data = json.loads((folder / GATE_JSON).read_text(encoding="utf-8"))
        diffs = pa_csv.read_csv(folder / SCORE_DIFF_CSV, convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in _TEXT_COLUMNS}))
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise FraudopsError(f"{folder} holds no readable gate report: {exc}") from exc
    checks = tuple(CheckResult(**check) for check in data["checks"])
    return GateReport(candidate=data["candidate"], baseline=data["baseline"],
                      tenant=data["tenant"], window=(data["window"][0], data["window"][1]),
                      labels_as_of=data["labels_as_of"], checks=checks, score_diffs=diffs,
                      created_at=data["created_at"])


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _jsonable(value: Any) -> Any:
    """``value`` with only JSON types: NaN → None, dates → ISO, NumPy scalars → Python."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.datetime64):
        return str(value)
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, datetime64 included
        converted = value.tolist()
        if type(converted) is not type(value):
            return _jsonable(converted)
    return str(value)
