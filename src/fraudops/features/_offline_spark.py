"""The offline feature engine on Spark: the same definitions and values as the DuckDB engine,
for backfills that outgrow one machine (the ``spark`` extra).

It reads the event store's Parquet files into Spark, computes every feature with Spark SQL
window functions (:mod:`._offline_spark_sql`; label-aware features with the sweep of
:mod:`._offline_spark_labels`) and returns the same Arrow table as
:meth:`OfflineEngine.backfill`. ``pyspark`` is imported only when an engine is made, so the
features layer imports without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import Progress, null_progress
from fraudops.events import EventStore

from ._definitions import FeatureSet
from ._offline import _horizon, _micros, _with_definition
from ._offline_spark_labels import FRAUD_INTERVALS_SQL, SweepGroup, sweep_sql
from ._offline_spark_sql import compile_features, quote
from ._offline_sql import feature_columns, label_lags

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_MISSING_EXTRA = "SparkEngine needs the spark extra: pip install 'fraudops[spark]'"
_STAGES = 4
_UTC = pa.timestamp("us", tz="UTC")

#: The configuration of :func:`local_session`: loopback only, no UI, UTC, few partitions.
LOCAL_SPARK_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.eventLog.enabled": "false",
}


def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as error:
        raise ImportError(_MISSING_EXTRA) from error


def local_session(*, cores: int = 2, driver_memory: str = "2g",
                  conf: Mapping[str, str] | None = None) -> SparkSession:
    """A Spark session on this machine (``local[cores]``), bound to 127.0.0.1, UI off, UTC.

    Returns the active session if one exists already (Spark keeps one per process), so
    ``driver_memory`` applies only to the first. Stop it with ``session.stop()``.
    """
    _require_pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(f"local[{int(cores)}]").appName("fraudops")
    for key, value in {**LOCAL_SPARK_CONF, "spark.driver.memory": driver_memory,
                       **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkEngine:
    """Compute features over the event store on Spark, exactly as :class:`OfflineEngine`.

    Parameters
    ----------
    store : EventStore
        Where the transactions and label events are (its Parquet files are read by Spark,
        so on a cluster the store must be on storage every executor sees).
    spark : SparkSession or None
        The session to run on; ``None`` uses :func:`local_session` (created on first use and
        left running for the next backfill).

    Raises
    ------
    ImportError
        When ``pyspark`` is not installed: ``pip install 'fraudops[spark]'``.

    Notes
    -----
    The values are those of the DuckDB engine within the parity tolerance of
    ``docs/features.md``; integer columns (``amount`` as cents) are aggregated exactly, float
    columns may differ in the last bits because Spark adds in another order. Label-aware
    features read labels as they were known at each event, as in :class:`OfflineEngine`.
    Only :meth:`backfill` exists on Spark; training sets as of arbitrary instants are
    :meth:`OfflineEngine.training_set`.
    """

    def __init__(self, store: EventStore, *, spark: SparkSession | None = None) -> None:
        _require_pyspark()
        self.store = store
        self.spark = spark

    def backfill(self, feature_set: FeatureSet, *, tenants: Iterable[str] | None = None,
                 start: datetime | None = None, end: datetime | None = None,
                 progress: Progress = null_progress) -> pa.Table:
        """Every feature for every stored transaction with ``start <= event_time < end``.

        Returns columns ``tenant, event_id, event_time`` and the features (float64, null when
        missing) in ``feature_set.names`` order, rows ordered by ``(tenant, event_time,
        event_id)``. Events before ``start`` are read as history for the windows.
        """
        types = {f.name: f.type for f in self.store.empty("transactions").schema}
        feature_set.validate(types)
        start_us, end_us = _micros(start, "start"), _micros(end, "end")
        tenant_list = None if tenants is None else [str(t) for t in tenants]
        partials, expressions = compile_features(feature_set, types)
        if not self.store.files("transactions") or tenant_list == []:
            return _with_definition(_empty(feature_set), feature_set)
        spark = self.spark if self.spark is not None else local_session()
        progress("load", 0, _STAGES)
        rows = self._rows(spark, feature_set, types, tenant_list, start_us, end_us)
        progress("labels", 1, _STAGES)
        rows = self._with_sweeps(spark, rows, feature_set)
        progress("compute", 2, _STAGES)
        frame = rows.selectExpr("*", *(f"{sql} AS {alias}" for sql, alias in partials.items()))
        if start_us is not None:
            frame = frame.where(f"_t >= {start_us}L")
        frame = frame.selectExpr("tenant", "event_id", "event_time", *(
            f"CAST({sql} AS DOUBLE) AS {quote(name)}" for name, sql in expressions.items()))
        table = frame.toArrow()
        progress("compute", _STAGES, _STAGES)
        return _with_definition(_conform(table, feature_set), feature_set)

    # -- steps -------------------------------------------------------------------------------
    def _rows(self, spark: SparkSession, feature_set: FeatureSet, types: Mapping[str, pa.DataType],
              tenants: list[str] | None, start_us: int | None, end_us: int | None) -> DataFrame:
        """The transactions' columns the features read, with ``_t`` (µs), filtered."""
        from pyspark.sql import functions

        paths = [str(p) for p in self.store.files("transactions")]
        stored = spark.read.option("mergeSchema", "true").parquet(*paths)
        present = set(stored.columns)
        needed = ["tenant", "event_id", "event_time", *sorted(feature_columns(feature_set))]
        select = [quote(c) if c in present else f"CAST(NULL AS {_spark_type(types[c])}) AS {quote(c)}"
                  for c in dict.fromkeys(needed)]
        rows = stored.selectExpr(*select, "unix_micros(event_time) AS _t")
        if tenants is not None:
            rows = rows.where(functions.col("tenant").isin(tenants))
        if start_us is not None:
            rows = rows.where(f"_t >= {start_us - _horizon(feature_set)}L")
        if end_us is not None:
            rows = rows.where(f"_t < {end_us}L")
        return rows

    def _with_sweeps(self, spark: SparkSession, rows: DataFrame, feature_set: FeatureSet) -> DataFrame:
        """``rows`` with the label sweeps' fraud counts joined in (see :mod:`._offline_spark_labels`)."""
        lags = label_lags(feature_set)
        if not lags:
            return rows
        labels = self.store.files("labels")
        if labels:
            label_frame = spark.read.parquet(*[str(p) for p in labels]).select(
                "tenant", "event_id", "is_fraud", "label_time")
        else:
            label_frame = spark.createDataFrame(
                [], "tenant STRING, event_id STRING, is_fraud BOOLEAN, label_time TIMESTAMP")
        intervals = spark.sql(FRAUD_INTERVALS_SQL, labels=label_frame)
        groups = []
        for entity, lag in lags:
            lengths = sorted({s.effective.length_us for s in feature_set.aggregations
                              if s.op.reads_labels and s.entity == entity
                              and s.effective.lag_us == lag})
            groups.append(SweepGroup(entity, feature_set.entities.index(entity), lag,
                                     tuple(lengths)))
        sweep = spark.sql(sweep_sql(groups), rows=rows, intervals=intervals)
        return rows.join(sweep, on=["tenant", "event_id"], how="left")


# -- helpers ---------------------------------------------------------------------------------
def _spark_type(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "BOOLEAN"
    if pa.types.is_integer(dtype):
        return "BIGINT"
    if pa.types.is_floating(dtype):
        return "DOUBLE"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP"
    return "STRING"


def _empty(feature_set: FeatureSet) -> pa.Table:
    fields = [pa.field("tenant", pa.string()), pa.field("event_id", pa.string()),
              pa.field("event_time", _UTC)]
    fields += [pa.field(name, pa.float64()) for name in feature_set.names]
    return pa.schema(fields).empty_table()


def _conform(table: pa.Table, feature_set: FeatureSet) -> pa.Table:
    """The DuckDB engine's schema and order: string ids, UTC µs times, float64 features."""
    schema = _empty(feature_set).schema
    columns: list[Any] = [table.column(f.name).cast(f.type) for f in schema]
    out = pa.Table.from_arrays(columns, schema=schema)
    order = pc.sort_indices(out, sort_keys=[("tenant", "ascending"), ("event_time", "ascending"),
                                            ("event_id", "ascending")])
    return out.take(order)
