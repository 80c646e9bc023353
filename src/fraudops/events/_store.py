"""The event store: canonical transactions and label events as Parquet, one folder per UTC day.

Files are only ever added (``date=YYYY-MM-DD/part-<batch>.parquet``), written to a temporary
name and renamed into place, so a reader never sees half a file and an interrupted ingestion is
completed by running it again (already stored event ids count as duplicates). Attribute types
are recorded in ``schema.json`` so that one attribute keeps one type across batches.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraudops.core import StoreError

from ._schema import (
    ATTRIBUTE_TYPES,
    LABEL_SCHEMA,
    attribute_types,
    canonical_columns,
    conform_labels,
    conform_transactions,
    merge_attribute_types,
)

_KINDS = ("transactions", "labels")


@dataclass(frozen=True)
class TenantSummary:
    """What the store holds for one tenant."""

    tenant: str
    transactions: int
    first_event: datetime | None
    last_event: datetime | None
    days: int
    labelled_fraud: int
    labelled_genuine: int


class EventStore:
    """Append-only Parquet store of transactions and labels, queried through DuckDB.

    Examples
    --------
    >>> import tempfile
    >>> store = EventStore(Path(tempfile.mkdtemp()))
    >>> store.read_transactions().num_rows
    0
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- writing ---------------------------------------------------------------------------
    def append_transactions(self, table: pa.Table, *, batch_id: str) -> int:
        """Store conformed transactions; returns the number of rows written."""
        table = conform_transactions(table)
        self._register_attributes(attribute_types(table))
        return self._append("transactions", table, "event_time", batch_id)

    def append_labels(self, table: pa.Table, *, batch_id: str) -> int:
        """Store conformed label events, partitioned by the day of their ``label_time``."""
        return self._append("labels", conform_labels(table), "label_time", batch_id)

    def _append(self, kind: str, table: pa.Table, time_column: str, batch_id: str) -> int:
        if table.num_rows == 0:
            return 0
        table = table.sort_by([(time_column, "ascending"), ("event_id", "ascending")])
        days = pc.cast(table.column(time_column), pa.date32()).to_numpy().astype("datetime64[D]")
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        ends = np.r_[starts[1:], len(days)]
        for start, end in zip(starts, ends, strict=True):
            folder = self.root / kind / f"date={days[start]}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{batch_id}.parquet"
            if final.exists():
                raise StoreError(f"{final} exists already: batch ids must be unique")
            temporary = folder / f".part-{batch_id}-{uuid.uuid4().hex}.tmp"
            pq.write_table(table.slice(start, end - start), temporary, compression="zstd")
            os.replace(temporary, final)
        return int(table.num_rows)

    # -- schema ----------------------------------------------------------------------------
    @property
    def _schema_path(self) -> Path:
        return self.root / "schema.json"

    def attribute_types(self) -> dict[str, str]:
        """Attribute columns stored so far, with their type names."""
        if not self._schema_path.exists():
            return {}
        data: dict[str, str] = json.loads(self._schema_path.read_text())["attributes"]
        return data

    def check_attributes(self, new: dict[str, str]) -> None:
        """Raise :class:`SchemaError` if ``new`` gives a stored attribute another type."""
        merge_attribute_types(self.attribute_types(), new)

    def _register_attributes(self, new: dict[str, str]) -> None:
        merged = merge_attribute_types(self.attribute_types(), new)
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self._schema_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"attributes": dict(sorted(merged.items()))}, indent=2))
        os.replace(temporary, self._schema_path)

    # -- reading ---------------------------------------------------------------------------
    def files(self, kind: str) -> list[Path]:
        """The Parquet files of ``'transactions'`` or ``'labels'``, in day order."""
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}")
        return sorted((self.root / kind).glob("date=*/part-*.parquet"))

    def empty(self, kind: str) -> pa.Table:
        """A table with no rows and the full schema of ``kind`` (attributes included)."""
        if kind == "labels":
            return LABEL_SCHEMA.empty_table()
        fields = [pa.field(n, t) for n, t in canonical_columns().items()]
        fields += [pa.field(n, ATTRIBUTE_TYPES[t]) for n, t in self.attribute_types().items()]
        return pa.schema(fields).empty_table()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views ``transactions``, ``labels`` and ``current_labels``.

        ``transactions`` has every canonical column and every stored attribute, null where a
        batch did not carry it.

        ``current_labels`` holds, per event, the label with the latest ``label_time`` (ties: a
        fraud label wins) — the truth as known now.
        """
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for kind in _KINDS:
            # every canonical column is always there (null where no file has it)
            con.register(f"_{kind}_empty", self.empty(kind))
            files = self.files(kind)
            if files:
                paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _{kind}_empty UNION ALL BY"
                            f" NAME SELECT * FROM read_parquet([{paths}], union_by_name = true,"
                            " hive_partitioning = false)")
            else:
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _{kind}_empty")
        con.execute("""
            CREATE VIEW current_labels AS
            SELECT * EXCLUDE (rank) FROM (
                SELECT *, row_number() OVER (PARTITION BY tenant, event_id
                                             ORDER BY label_time DESC, is_fraud DESC) AS rank
                FROM labels) WHERE rank = 1
        """)
        return con

    def read_transactions(self, columns: list[str] | None = None) -> pa.Table:
        """All stored transactions ordered by ``(tenant, event_time, event_id)``."""
        select = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        with self.connect() as con:
            return con.sql(f"SELECT {select} FROM transactions"
                           " ORDER BY tenant, event_time, event_id").to_arrow_table()

    def read_labels(self) -> pa.Table:
        """All stored label events ordered by ``(tenant, label_time, event_id)``."""
        with self.connect() as con:
            table = con.sql("SELECT * FROM labels ORDER BY tenant, label_time, event_id")
            return table.to_arrow_table()

    def stored_keys(self, kind: str) -> pa.Table:
        """The identity columns of every stored row, for de-duplication at ingestion.

        Transactions are identified by ``(tenant, event_id)``; a label event by
        ``(tenant, event_id, label_time, is_fraud)``.
        """
        columns = "tenant, event_id" if kind == "transactions" else \
            "tenant, event_id, label_time, is_fraud"
        with self.connect() as con:
            return con.sql(f"SELECT {columns} FROM {kind}").to_arrow_table()

    def event_span(self, tenant: str | None = None) -> tuple[datetime, datetime] | None:
        """The oldest and the newest stored transaction time (of ``tenant``); None if none."""
        where, params = ("", {}) if tenant is None else (" WHERE tenant = $t", {"t": tenant})
        with self.connect() as con:
            [(oldest, newest)] = con.sql(
                f"SELECT min(event_time), max(event_time) FROM transactions{where}",
                params=params).fetchall()
        return None if newest is None else (oldest, newest)

    def summary(self) -> list[TenantSummary]:
        """Per tenant: transactions, time span, days and current labels."""
        with self.connect() as con:
            rows = con.sql("""
                WITH t AS (
                    SELECT tenant, count(*) AS n, min(event_time) AS first_event,
                           max(event_time) AS last_event,
                           count(DISTINCT CAST(event_time AS DATE)) AS days
                    FROM transactions GROUP BY tenant),
                l AS (
                    SELECT tenant, count(*) FILTER (WHERE is_fraud) AS fraud,
                           count(*) FILTER (WHERE NOT is_fraud) AS genuine
                    FROM current_labels GROUP BY tenant)
                SELECT coalesce(t.tenant, l.tenant), coalesce(n, 0), first_event, last_event,
                       coalesce(days, 0), coalesce(fraud, 0), coalesce(genuine, 0)
                FROM t FULL OUTER JOIN l ON t.tenant = l.tenant ORDER BY 1
            """).fetchall()
        return [TenantSummary(*row) for row in rows]
