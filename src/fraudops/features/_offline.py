"""The offline feature engine: every feature of a :class:`FeatureSet`, point in time, on DuckDB.

It reads the event store, compiles the definitions into one query (:mod:`._offline_sql`),
counts labels as they were known at each instant (:mod:`._offline_labels`) and returns an
Arrow table. The semantics are those of ``docs/features.md``, which the online engine
implements too; the parity checker compares the two event by event.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraudops.core import InputError, Progress, SchemaError, null_progress
from fraudops.events import EventStore

from ._definitions import Entity, FeatureSet
from ._offline_labels import INTERVALS_SQL, LABEL_SUMMARY_SQL, sweep_needed_sql, sweep_sql
from ._offline_sql import (
    SPINE_PREFIX,
    compile_features,
    feature_columns,
    label_lags,
    quote,
    sweep_name,
    transform_columns,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_STAGES = 4


class OfflineEngine:
    """Compute features over the event store, exactly as the online engine would have.

    Parameters
    ----------
    store : EventStore
        Where the transactions and label events are.
    threads : int or None
        DuckDB worker threads; ``None`` lets DuckDB use every core.

    Notes
    -----
    Label-aware features (``FRAUD_COUNT``, ``FRAUD_RATIO``) read each past event's label *as it
    was known* at the current event's time. A backfill run today therefore does not see labels
    that arrived after each event, although the store holds them: that is the point (a model
    trained on them would learn from the future), and it is why the value of such a feature
    for an old event does not change when new labels arrive.

    Examples
    --------
    >>> import tempfile
    >>> from fraudops.events import EventStore, SimulationConfig, TenantProfile, simulate
    >>> from fraudops.features import Aggregation, Entity, FeatureGroup, FeatureSet, Op, days
    >>> store = EventStore(tempfile.mkdtemp())
    >>> simulation = simulate(SimulationConfig(n_days=3, tenants=(TenantProfile(
    ...     "t", n_customers=20, n_terminals=40),)))
    >>> _ = store.append_transactions(simulation.transactions, batch_id="b1")
    >>> card = Entity("card", keys=("card_id",))
    >>> features = FeatureSet("demo", groups=[FeatureGroup(card, [
    ...     Aggregation(None, Op.COUNT, windows=[days(1)])])])
    >>> table = OfflineEngine(store).backfill(features)
    >>> table.column_names
    ['tenant', 'event_id', 'event_time', 'count_1d_by_card']
    >>> table.num_rows == simulation.transactions.num_rows
    True
    """

    def __init__(self, store: EventStore, *, threads: int | None = None) -> None:
        self.store = store
        self.threads = threads

    def backfill(self, feature_set: FeatureSet, *, tenants: Iterable[str] | None = None,
                 start: datetime | None = None, end: datetime | None = None,
                 progress: Progress = null_progress) -> pa.Table:
        """Every feature for every stored transaction with ``start <= event_time < end``.

        Returns columns ``tenant, event_id, event_time`` and the features (float64, null when
        missing) in ``feature_set.names`` order, rows ordered by ``(tenant, event_time,
        event_id)``. Events before ``start`` are read as history for the windows.
        """
        types = self._validated_types(feature_set)
        start_us, end_us = _micros(start, "start"), _micros(end, "end")
        horizon = _horizon(feature_set)
        where = _tenant_filter("t.tenant", tenants)
        if start_us is not None:
            where.append(f"epoch_us(t.event_time) >= {start_us - horizon}")
        if end_us is not None:
            where.append(f"epoch_us(t.event_time) < {end_us}")
        with self._connect() as con:
            self._prepare(con, feature_set, types, where, tenants, spine=None, progress=progress)
            sql = compile_features(feature_set, types, spine=False,
                                   sweeps=self._sweeps(con, feature_set))
            progress("compute", 3, _STAGES)
            since = "" if start_us is None else f"WHERE _t >= {start_us}"
            names = ", ".join(quote(n) for n in feature_set.names)
            table = con.sql(f"SELECT tenant, event_id, event_time, {names} FROM ({sql}) {since}"
                            " ORDER BY tenant, event_time, event_id").to_arrow_table()
        progress("compute", _STAGES, _STAGES)
        return _with_definition(_conform(table), feature_set)

    def training_set(self, feature_set: FeatureSet, spine: pa.Table, *,
                     progress: Progress = null_progress) -> pa.Table:
        """Features as of arbitrary instants: one row per row of ``spine``, in its order.

        ``spine`` has ``tenant``, the key columns of every entity of the feature set and a
        UTC ``timestamp``. Each row gets the features of a query made at ``timestamp``: windows
        ``(ts − L − W, ts − L]`` over every stored event with ``event_time <= ts`` (there is no
        current event, so nothing is cut or excluded at ``ts``), labels as known at ``ts``.
        Row transforms read the spine's own columns of the same name (missing when absent).
        Returns the spine's columns followed by the features.
        """
        types = self._validated_types(feature_set)
        _check_spine(spine, feature_set)
        spine_tenants = sorted(set(spine.column("tenant").to_pylist()) - {None})
        where = _tenant_filter("t.tenant", spine_tenants)
        times = spine.column("timestamp")
        if spine.num_rows:
            low = _micros(min(t for t in times.to_pylist() if t is not None), "timestamp")
            high = _micros(max(t for t in times.to_pylist() if t is not None), "timestamp")
            where += [f"epoch_us(t.event_time) >= {(low or 0) - _horizon(feature_set)}",
                      f"epoch_us(t.event_time) <= {high}"]
        with self._connect() as con:
            self._prepare(con, feature_set, types, where, spine_tenants, spine=spine,
                          progress=progress)
            sql = compile_features(feature_set, types, spine=True,
                                   sweeps=self._sweeps(con, feature_set))
            progress("compute", 3, _STAGES)
            names = ", ".join(quote(n) for n in feature_set.names)
            table = con.sql(f"SELECT {names} FROM ({sql}) WHERE _spine IS NOT NULL"
                            " ORDER BY _spine").to_arrow_table()
        progress("compute", _STAGES, _STAGES)
        out = spine
        for name in feature_set.names:
            out = out.append_column(pa.field(name, pa.float64()),
                                    table.column(name).cast(pa.float64()))
        return _with_definition(out, feature_set)

    # -- steps -------------------------------------------------------------------------------
    def _validated_types(self, feature_set: FeatureSet) -> dict[str, pa.DataType]:
        schema = self.store.empty("transactions").schema
        types = {f.name: f.type for f in schema}
        feature_set.validate(types)
        return types

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = self.store.connect()
        con.execute("SET TimeZone = 'UTC'")
        if self.threads is not None:
            con.execute(f"SET threads = {int(self.threads)}")
        return con

    def _prepare(self, con: duckdb.DuckDBPyConnection, feature_set: FeatureSet,
                 types: dict[str, pa.DataType], where: list[str],
                 tenants: Iterable[str] | None, *, spine: pa.Table | None,
                 progress: Progress) -> None:
        """Create ``_rows`` (and the label tables): the rows the compiled query reads."""
        labelled = bool(label_lags(feature_set))
        progress("labels", 0, _STAGES)
        if labelled:
            label_where = " AND ".join(_tenant_filter("tenant", tenants))
            con.execute("CREATE TEMP TABLE _label_summary AS " + LABEL_SUMMARY_SQL.format(
                where=f"WHERE {label_where}" if label_where else ""))
        progress("load", 1, _STAGES)
        columns = sorted(feature_columns(feature_set))
        select = ", ".join(f"t.{quote(c)}" for c in columns)
        label_columns = ", s._ff, s._cx" if labelled else ""
        join = (" LEFT JOIN _label_summary s ON t.tenant = s.tenant AND t.event_id = s.event_id"
                if labelled else "")
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        transactions = (f"SELECT t.tenant, t.event_id, t.event_time, epoch_us(t.event_time) AS _t,"
                        f" 1 AS _phase, 1 AS _real, NULL::BIGINT AS _spine, {select}{label_columns}"
                        f" FROM transactions t{join} {condition}")
        if spine is not None:
            con.register("_spine_in", spine.append_column(
                "_spine", pa.array(np.arange(spine.num_rows, dtype=np.int64))))
            transactions += " UNION ALL BY NAME " + _spine_rows(feature_set, types, spine)
        con.execute(f"CREATE TEMP TABLE _rows_t AS {transactions}")
        con.execute("CREATE TEMP VIEW _rows AS SELECT rowid AS _row, * FROM _rows_t")
        if labelled:
            progress("labels", 2, _STAGES)
            con.execute("CREATE TEMP TABLE _intervals AS " + INTERVALS_SQL)

    def _sweeps(self, con: duckdb.DuckDBPyConnection,
                feature_set: FeatureSet) -> frozenset[tuple[Entity, int]]:
        """Run the label sweeps the data needs; name the ``(entity, lag)`` that have one."""
        done = set()
        for entity, lag in label_lags(feature_set):
            if not con.sql(sweep_needed_sql(lag)).fetchall()[0][0]:
                continue
            lengths = sorted({s.effective.length_us for s in feature_set.aggregations
                              if s.op.reads_labels and s.entity == entity
                              and s.effective.lag_us == lag})
            con.execute(sweep_sql(sweep_name(feature_set, entity, lag), entity, lag, lengths))
            done.add((entity, lag))
        return frozenset(done)


def write_backfill(table: pa.Table, out_dir: Path | str) -> Path:
    """Write a backfill as ``out_dir/features.parquet`` (one row per ``(tenant, event_id)``).

    The file is written under a temporary name and renamed, so a reader never sees half of it.
    """
    missing = [c for c in ("tenant", "event_id", "event_time") if c not in table.column_names]
    if missing:
        raise SchemaError(f"a backfill table has tenant, event_id and event_time; missing {missing}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "features.parquet"
    temporary = folder / f".features-{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, final)
    return final


# -- helpers ---------------------------------------------------------------------------------
def _micros(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name!r} must be a timezone-aware datetime (UTC); got {value!r}")
    return (value - _EPOCH) // _ONE_US


def _horizon(feature_set: FeatureSet) -> int:
    """How far back (µs) any feature looks: history to read before ``start``."""
    return max((s.effective.horizon_us for s in feature_set.aggregations), default=0)


def _tenant_filter(column: str, tenants: Iterable[str] | None) -> list[str]:
    if tenants is None:
        return []
    names = [str(t) for t in tenants]
    if not names:
        return ["FALSE"]
    quoted = ", ".join("'" + t.replace("'", "''") + "'" for t in names)
    return [f"{column} IN ({quoted})"]


def _check_spine(spine: pa.Table, feature_set: FeatureSet) -> None:
    needed = ["tenant", "timestamp", *dict.fromkeys(k for e in feature_set.entities for k in e.keys)]
    missing = [c for c in needed if c not in spine.column_names]
    if missing:
        raise SchemaError(f"spine: missing column(s) {missing}; a spine has tenant, timestamp"
                          " and the key columns of every entity")
    dtype = spine.schema.field("timestamp").type
    if not pa.types.is_timestamp(dtype) or dtype.tz is None:
        raise SchemaError(f"spine: column 'timestamp' is {dtype}; it must be a UTC timestamp"
                          " (localise naive times first)")
    if "_spine" in spine.column_names:
        raise SchemaError("spine: the column name '_spine' is reserved")


def _spine_rows(feature_set: FeatureSet, types: dict[str, pa.DataType], spine: pa.Table) -> str:
    """The spine as rows of ``_rows``: phase 2, no values, their own copy of transform inputs."""
    keys = dict.fromkeys(k for e in feature_set.entities for k in e.keys)
    parts = ["CAST(tenant AS VARCHAR) AS tenant", "NULL::VARCHAR AS event_id",
             "timestamp AS event_time", "epoch_us(timestamp) AS _t", "2 AS _phase",
             "NULL::INTEGER AS _real", "_spine"]
    parts += [f"CAST({quote(k)} AS VARCHAR) AS {quote(k)}" for k in keys]
    for name in sorted(transform_columns(feature_set)):
        alias = quote(SPINE_PREFIX + name)
        if name in spine.column_names:
            parts.append(f"{quote(name)} AS {alias}")
        else:
            dtype = "BIGINT" if name == "amount_cents" else _duck_type(types[name])
            parts.append(f"CAST(NULL AS {dtype}) AS {alias}")
    return f"SELECT {', '.join(parts)} FROM _spine_in"


def _duck_type(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_floating(dtype):
        return "DOUBLE"
    return "VARCHAR"


def _conform(table: pa.Table) -> pa.Table:
    """Features as float64 (DuckDB may hand back an all-null column as another type)."""
    fields = [f if i < 3 else pa.field(f.name, pa.float64()) for i, f in enumerate(table.schema)]
    return table.cast(pa.schema(fields))


def _with_definition(table: pa.Table, feature_set: FeatureSet) -> pa.Table:
    metadata = dict(table.schema.metadata or {})
    metadata[b"fraudops.feature_set"] = feature_set.name.encode()
    metadata[b"fraudops.definition_hash"] = feature_set.definition_hash().encode()
    return table.replace_schema_metadata(metadata)



def backfill_window(table: pa.Table, feature_set: FeatureSet, *,
                    tenants: Iterable[str] | None = None, start: datetime | None = None,
                    end: datetime | None = None) -> pa.Table:
    """The rows of an existing backfill of ``feature_set`` with ``start <= event_time < end``
    (and of ``tenants``), so a job can reuse a backfill instead of computing it again.

    Raises :class:`InputError` when the table was computed for another definition.
    """
    stored = (table.schema.metadata or {}).get(b"fraudops.definition_hash", b"").decode()
    if stored and stored != feature_set.definition_hash():
        raise InputError(f"the given backfill was computed for definition hash {stored}, not"
                         f" {feature_set.definition_hash()} ({feature_set.name}); backfill again")
    times = table.column("event_time")
    mask = pc.is_valid(times)
    if start is not None:
        mask = pc.and_(mask, pc.greater_equal(times, pa.scalar(start, times.type)))
    if end is not None:
        mask = pc.and_(mask, pc.less(times, pa.scalar(end, times.type)))
    if tenants is not None:
        mask = pc.and_(mask, pc.is_in(table.column("tenant"), pa.array(list(tenants), pa.string())))
    return table.filter(mask)
