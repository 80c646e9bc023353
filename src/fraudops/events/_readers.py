"""Readers that turn a source file (CSV, Parquet, JSONL) into a raw table plus row numbers.

CSV and JSONL values stay strings here: every conversion happens in ``_parsers`` so that each
failure can be reported per row. A record that cannot be split into fields at all (wrong
number of columns, broken JSON) is returned as *unreadable* with its row number; it is never
dropped. Row numbers count data records from 1; the header is not counted.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from fraudops.core import InputError

from ._mapping import SOURCE_FORMATS, SourceOptions

_EXTENSIONS = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet",
               ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


@dataclass(frozen=True)
class Unreadable:
    """A record that could not be split into fields."""

    row: int
    reason: str
    text: str


@dataclass(frozen=True)
class RawTable:
    """A source file as read: its columns, the row number of every row, the unreadable rows."""

    table: pa.Table
    rows: np.ndarray
    unreadable: tuple[Unreadable, ...]
    format: str

    @property
    def rows_read(self) -> int:
        return int(self.table.num_rows) + len(self.unreadable)


def detect_format(path: Path, options: SourceOptions) -> str:
    """The source format: the mapping's ``format``, else the file extension."""
    if options.format is not None:
        return options.format
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the extension {path.suffix!r};"
                         f" set [source] format to one of {list(SOURCE_FORMATS)}")
    return fmt


def read_source(path: Path | str, options: SourceOptions) -> RawTable:
    """Read ``path`` as the mapping's source options say; raises :class:`InputError` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = detect_format(path, options)
    try:
        if fmt == "parquet":
            return _read_parquet(path)
        if fmt == "jsonl":
            return _read_jsonl(path, options)
        return _read_csv(path, options)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not valid {options.encoding} text at byte {exc.start};"
            " set [source] encoding to the export's encoding (for example 'latin-1' or 'cp1252')"
        ) from None


def _read_parquet(path: Path) -> RawTable:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None
    return RawTable(table, np.arange(1, table.num_rows + 1), (), "parquet")


def _read_header(path: Path, options: SourceOptions) -> list[str]:
    encoding = "utf-8-sig" if options.encoding.lower().replace("_", "-") in ("utf-8", "utf8") \
        else options.encoding
    with open(path, encoding=encoding, newline="") as handle:
        header = next(csv.reader(handle, delimiter=options.delimiter,
                                 quotechar=options.quote), None)
    if not header:
        raise InputError(f"{path}: the file is empty (a CSV needs a header line)")
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputError(f"{path}: the header has an empty column name")
        if name in seen:
            raise InputError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    return names


def _read_csv(path: Path, options: SourceOptions) -> RawTable:
    names = _read_header(path, options)
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(encoding=options.encoding, skip_rows=1,
                                          column_names=names),
            parse_options=pcsv.ParseOptions(delimiter=options.delimiter,
                                            quote_char=options.quote, newlines_in_values=True,
                                            invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                strings_can_be_null=False, null_values=[]),
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc):
            raise InputError(f"{path}: not valid {options.encoding} text; set [source] encoding"
                             " to the export's encoding (for example 'latin-1')") from None
        raise InputError(f"{path}: not a readable CSV file: {exc}") from None
    if not invalid:
        return RawTable(table, np.arange(1, table.num_rows + 1), (), "csv")
    # Malformed records: re-read with the exact (slower) reader so row numbers are exact.
    return _read_csv_exact(path, options, names)


def _read_csv_exact(path: Path, options: SourceOptions, names: list[str]) -> RawTable:
    encoding = "utf-8-sig" if options.encoding.lower() in ("utf-8", "utf8") else options.encoding
    columns: list[list[str]] = [[] for _ in names]
    rows: list[int] = []
    unreadable: list[Unreadable] = []
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=options.delimiter, quotechar=options.quote)
        next(reader)
        number = 0
        for record in reader:
            if not record:
                continue
            number += 1
            if len(record) != len(names):
                text = options.delimiter.join(record)
                unreadable.append(Unreadable(number, f"expected {len(names)} fields, got"
                                             f" {len(record)}", text))
                continue
            rows.append(number)
            for column, value in zip(columns, record, strict=True):
                column.append(value)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return RawTable(table, np.asarray(rows, dtype=np.int64), tuple(unreadable), "csv")


def _read_jsonl(path: Path, options: SourceOptions) -> RawTable:
    records: list[dict[str, str | None]] = []
    rows: list[int] = []
    unreadable: list[Unreadable] = []
    decoder = codecs.getincrementaldecoder(options.encoding)()
    with open(path, "rb") as handle:
        text = decoder.decode(handle.read(), final=True).lstrip("\ufeff")
    number = 0
    for line in io.StringIO(text):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            unreadable.append(Unreadable(number, f"not valid JSON: {exc.msg}", line.rstrip()))
            continue
        if not isinstance(value, dict):
            unreadable.append(Unreadable(number, "not a JSON object", line.rstrip()))
            continue
        records.append({k: _json_text(v) for k, v in value.items()})
        rows.append(number)
    names = list(dict.fromkeys(k for record in records for k in record))
    table = pa.table({n: pa.array([r.get(n) for r in records], pa.string()) for n in names})
    return RawTable(table, np.asarray(rows, dtype=np.int64), tuple(unreadable), "jsonl")


def _json_text(value: Any) -> str | None:
    """JSON values as the text a CSV export would hold; nested values stay JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)
