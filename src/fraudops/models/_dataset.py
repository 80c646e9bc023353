"""The training dataset: features from the offline engine joined with labels and card ids.

A :class:`Dataset` is the one value that crosses from data to training: NumPy arrays in
``(tenant, event_time, event_id)`` order. :func:`build_dataset` assembles it in DuckDB from an
offline backfill (or a feature set to backfill) and the event store's labels, either as known
today or *as known at* a given instant (what a model trained then could have known).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudops.events import EventStore
from fraudops.features import FeatureSet, OfflineEngine

_KEY_COLUMNS = ("tenant", "event_id", "event_time")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_FINGERPRINT_VERSION = b"fraudops-dataset-v1"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Feature matrix, labels and the event columns metrics need, row-aligned.

    Parameters
    ----------
    X : ndarray of float64, shape (n, d)
        Feature values; NaN is missing.
    feature_names : tuple of str
        The ``d`` column names of ``X``.
    y : ndarray of int8, shape (n,)
        1 for fraud, 0 otherwise: the label used for training and evaluation.
    event_id, tenant, card_id : ndarray of object (str), shape (n,)
        ``card_id`` is the entity Card Precision@k counts and known-compromised cards are
        removed by (the handbook's ``CUSTOMER_ID``).
    event_time : ndarray of datetime64[us], shape (n,)
        UTC, naive NumPy values.
    amount : ndarray of float64, shape (n,)
        Transaction amount in major units (``amount_cents / 100``), for the cost view.

    Notes
    -----
    Rows built by :func:`build_dataset` are ordered by ``(tenant, event_time, event_id)``;
    :meth:`subset` with a boolean mask or increasing indices keeps that order.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(X=np.array([[1.0], [np.nan]]), feature_names=("f",),
    ...              y=np.array([0, 1], dtype=np.int8), event_id=np.array(["a", "b"], dtype=object),
    ...              tenant=np.array(["t", "t"], dtype=object),
    ...              event_time=np.array(["2024-01-01T00:00", "2024-01-01T01:00"], "datetime64[us]"),
    ...              card_id=np.array(["c", "c"], dtype=object), amount=np.array([1.5, 2.0]))
    >>> len(ds), len(ds.subset(ds.y == 1))
    (2, 1)
    >>> ds.fingerprint() == ds.subset(np.array([0, 1])).fingerprint()
    True
    """

    X: np.ndarray
    feature_names: tuple[str, ...]
    y: np.ndarray
    event_id: np.ndarray
    tenant: np.ndarray
    event_time: np.ndarray
    card_id: np.ndarray
    amount: np.ndarray

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise ValueError(f"Dataset 'X' must be 2-dimensional; got shape {self.X.shape}")
        n, d = self.X.shape
        if len(self.feature_names) != d:
            raise ValueError(f"Dataset 'feature_names' must name the {d} columns of X; "
                             f"got {len(self.feature_names)} names")
        if len(set(self.feature_names)) != d:
            raise ValueError(f"Dataset 'feature_names' must be unique; got {list(self.feature_names)}")
        for name in ("y", "event_id", "tenant", "event_time", "card_id", "amount"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"Dataset {name!r} must have shape ({n},) like the rows of X; "
                                 f"got {shape}")
        if self.event_time.dtype != np.dtype("datetime64[us]"):
            raise ValueError("Dataset 'event_time' must be datetime64[us] (UTC); "
                             f"got {self.event_time.dtype}")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.feature_names)

    def subset(self, rows: np.ndarray | Sequence[int]) -> Dataset:
        """The rows picked by a boolean mask of length ``n`` or by integer indices."""
        index = np.asarray(rows)
        if index.dtype == bool and index.shape != (len(self),):
            raise ValueError(f"a boolean mask for subset must have shape ({len(self)},); "
                             f"got {index.shape}")
        if index.dtype != bool and index.size and not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"subset takes a boolean mask or integer indices; got dtype {index.dtype}")
        if index.dtype != bool:
            index = index.astype(np.intp)
        return Dataset(X=self.X[index], feature_names=self.feature_names, y=self.y[index],
                       event_id=self.event_id[index], tenant=self.tenant[index],
                       event_time=self.event_time[index], card_id=self.card_id[index],
                       amount=self.amount[index])

    def select(self, feature_names: Iterable[str]) -> Dataset:
        """The same rows with only the named feature columns, in the order given."""
        names = tuple(feature_names)
        position = {n: i for i, n in enumerate(self.feature_names)}
        unknown = [n for n in names if n not in position]
        if unknown:
            raise ValueError(f"feature(s) {unknown} are not in the dataset; "
                             f"its features are {list(self.feature_names)}")
        columns = [position[n] for n in names]
        return Dataset(X=self.X[:, columns], feature_names=names, y=self.y,
                       event_id=self.event_id, tenant=self.tenant, event_time=self.event_time,
                       card_id=self.card_id, amount=self.amount)

    def fingerprint(self) -> str:
        """A SHA-256 of every row's ids, time, card, amount, label and feature values.

        It identifies the exact training data of a run: stable across processes and
        machines (no Python ``hash``; NaN payloads are normalised), and changed by any
        change of a row, a label, a value, a feature name or the row order.
        """
        digest = hashlib.sha256(_FINGERPRINT_VERSION)
        for name in self.feature_names:
            digest.update(_text_bytes([name]))
        for column in (self.tenant, self.event_id, self.card_id):
            digest.update(_text_bytes(column))
        digest.update(np.ascontiguousarray(self.event_time.astype(np.int64)).astype("<i8").tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype=np.int8).tobytes())
        digest.update(_float_bytes(self.amount))
        for j in range(self.X.shape[1]):  # column by column: independent of memory layout
            digest.update(_float_bytes(self.X[:, j]))
        return digest.hexdigest()


def _text_bytes(values: Sequence[Any] | np.ndarray) -> bytes:
    """UTF-8 strings with their offsets, so that no separator inside a string can collide."""
    array = pa.array(values, type=pa.large_string()) if len(values) else pa.array([], pa.large_string())
    if array.null_count:
        raise ValueError("Dataset string columns must not contain None")
    _, offset_buffer, data = array.buffers()  # a fresh array: offsets start at 0
    offsets = np.frombuffer(offset_buffer, dtype="<i8")[: len(array) + 1]
    end = int(offsets[-1])
    return offsets.tobytes() + (data.to_pybytes()[:end] if data is not None else b"")


def _float_bytes(values: np.ndarray) -> bytes:
    array = np.ascontiguousarray(values, dtype="<f8")
    nan = np.isnan(array)
    if nan.any():
        array = np.where(nan, np.nan, array)  # one NaN bit pattern
    return array.tobytes()


def factorize(*columns: np.ndarray) -> np.ndarray:
    """Integer codes (int64, from 0) of the distinct tuples of the given string columns.

    Hash based (Arrow's dictionary encoding), so it is fast on millions of rows; codes are in
    order of first appearance, not sorted.
    """
    if not columns:
        raise ValueError("factorize needs at least one column")
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        encoded = pc.dictionary_encode(pa.array(column, type=pa.string()))
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        codes = codes * max(len(encoded.dictionary), 1) + indices
        if len(columns) > 1:  # keep the codes dense so that the product cannot overflow
            codes = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return codes


def _micros(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"The {name!r} parameter of build_dataset must be a timezone-aware "
                         f"datetime or None; got {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"The {name!r} parameter of build_dataset must be timezone-aware (UTC); "
                         f"got the naive datetime {value.isoformat()}")
    return (value - _EPOCH) // _ONE_MICROSECOND


def _feature_names(table: pa.Table, feature_names: Iterable[str] | None) -> tuple[str, ...]:
    missing_keys = [c for c in _KEY_COLUMNS if c not in table.column_names]
    if missing_keys:
        raise ValueError(f"the 'features' table must have columns {list(_KEY_COLUMNS)} (an offline "
                         f"backfill); it lacks {missing_keys}")
    available = [c for c in table.column_names if c not in _KEY_COLUMNS]
    if feature_names is None:
        names = tuple(available)
    else:
        names = tuple(feature_names)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"The 'feature_names' parameter of build_dataset names {unknown}, "
                             f"which the features table does not have; it has {available}")
    for name in names:
        dtype = table.schema.field(name).type
        if not (pa.types.is_floating(dtype) or pa.types.is_integer(dtype)
                or pa.types.is_boolean(dtype)):
            raise ValueError(f"feature {name!r} has type {dtype}; features must be numbers")
    if len(set(names)) != len(names):
        raise ValueError(f"The 'feature_names' parameter of build_dataset has duplicates: {list(names)}")
    return names


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tenant_list(tenants: Iterable[str] | None) -> list[str] | None:
    if tenants is None:
        return None
    if isinstance(tenants, str):
        raise ValueError("The 'tenants' parameter of build_dataset must be an iterable of tenant "
                         f"names, not a single string; got {tenants!r} (use [{tenants!r}])")
    return sorted(set(tenants))


def build_dataset(store: EventStore, features: pa.Table | FeatureSet, *,
                  feature_names: Iterable[str] | None = None,
                  labels_as_of: datetime | None = None,
                  tenants: Iterable[str] | None = None,
                  start: datetime | None = None, end: datetime | None = None) -> Dataset:
    """Join features with labels, card ids and amounts from the event store.

    Parameters
    ----------
    store : EventStore
        The store the features were computed from.
    features : pyarrow.Table or FeatureSet
        A backfill table (``tenant, event_id, event_time`` and feature columns, as
        :meth:`OfflineEngine.backfill` returns), or a feature set, which is backfilled here for
        ``tenants`` and ``[start, end)``.
    feature_names : iterable of str, optional
        The feature columns to use, in this order; by default every non-key column.
    labels_as_of : datetime, optional
        ``None``: each event's current label (its latest label event; a fraud label wins a
        tie). A timezone-aware instant: the label *as known* then, from the label events with
        ``label_time <= labels_as_of``, which is all a model trained at that instant could know.
        An event without a (visible) label is not fraud (``y = 0``).
    tenants : iterable of str, optional
        Keep only these tenants.
    start, end : datetime, optional
        Keep events with ``start <= event_time < end`` (timezone-aware).

    Returns
    -------
    Dataset
        One row per feature row, ordered by ``(tenant, event_time, event_id)``. ``card_id`` is
        the transaction's ``card_id``, or its ``customer_id`` where that is null, or
        ``"event:<event_id>"`` where both are (a card of its own).

    Notes
    -----
    ``labels_as_of`` only hides labels; it does not drop events after that instant (use
    ``end``). Labels as known at a past instant are noisier than today's: recent frauds are
    not yet labelled, which is what a model retrained then would really have learnt from.

    Raises
    ------
    ValueError
        If a parameter is invalid or a feature row's event is not in the store.
    """
    as_of_us = _micros(labels_as_of, "labels_as_of")
    start_us, end_us = _micros(start, "start"), _micros(end, "end")
    tenant_list = _tenant_list(tenants)
    if isinstance(features, FeatureSet):
        features = OfflineEngine(store).backfill(features, tenants=tenant_list, start=start, end=end)
    elif not isinstance(features, pa.Table):
        raise ValueError("The 'features' parameter of build_dataset must be a pyarrow.Table (a "
                         f"backfill) or a FeatureSet; got {type(features).__name__}")
    names = _feature_names(features, feature_names)
    where = []
    if tenant_list is not None:
        where.append("f.tenant IN (" + ", ".join("'" + t.replace("'", "''") + "'"
                                                  for t in tenant_list) + ")")
    if start_us is not None:
        where.append(f"epoch_us(f.event_time) >= {start_us}")
    if end_us is not None:
        where.append(f"epoch_us(f.event_time) < {end_us}")
    condition = ("WHERE " + " AND ".join(where)) if where else ""
    if as_of_us is None:
        labels = "SELECT tenant, event_id, is_fraud FROM current_labels"
    else:
        labels = f"""
            SELECT tenant, event_id, arg_max(is_fraud, 2 * epoch_us(label_time) + CAST(is_fraud AS BIGINT))
                   AS is_fraud
            FROM labels WHERE epoch_us(label_time) <= {as_of_us} GROUP BY tenant, event_id"""
    # the join and the sort run on the keys only; feature columns are gathered by row number
    sql = f"""
        SELECT f._row, f.tenant, f.event_id, epoch_us(f.event_time) AS _t,
               t.event_id IS NULL AS _missing,
               coalesce(t.card_id, t.customer_id, 'event:' || f.event_id) AS card_id,
               coalesce(t.amount_cents, 0) / 100.0 AS amount,
               CAST(coalesce(l.is_fraud, false) AS TINYINT) AS y
        FROM _features f
        LEFT JOIN transactions t ON t.tenant = f.tenant AND t.event_id = f.event_id
        LEFT JOIN ({labels}) l ON l.tenant = f.tenant AND l.event_id = f.event_id
        {condition}
        ORDER BY f.tenant, f.event_time, f.event_id
    """
    keys = features.select(list(_KEY_COLUMNS)).append_column(
        "_row", pa.array(np.arange(features.num_rows, dtype=np.int64)))
    with store.connect() as con:
        con.register("_features", keys)
        table = con.sql(sql).to_arrow_table()
    missing = table.filter(table.column("_missing"))
    if missing.num_rows:
        example = missing.slice(0, 3).select(["tenant", "event_id"]).to_pylist()
        raise ValueError(f"{missing.num_rows} feature row(s) have no transaction in the store, "
                         f"e.g. {example}: were the features computed from another store?")
    rows = np.asarray(table.column("_row").to_numpy(), dtype=np.int64)
    return _to_dataset(table, _feature_matrix(features, names, rows), names)


def _feature_matrix(features: pa.Table, names: tuple[str, ...], rows: np.ndarray) -> np.ndarray:
    """Feature columns as float64 (null → NaN) in the order of ``rows``.

    Filled column by column into a column-major array (its transpose is returned, shape
    ``(n, d)``), which is several times faster than writing strided columns of a row-major one.
    """
    identity = len(rows) == features.num_rows and bool((rows == np.arange(len(rows))).all())
    columns = np.empty((len(names), len(rows)), dtype=np.float64)
    for j, name in enumerate(names):
        values = features.column(name)
        if not pa.types.is_floating(values.type) or values.type != pa.float64():
            values = values.cast(pa.float64())
        array = values.to_numpy()  # float64: nulls become NaN
        columns[j] = array if identity else array[rows]
    return columns.T


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _to_dataset(table: pa.Table, matrix: np.ndarray, names: tuple[str, ...]) -> Dataset:
    return Dataset(
        X=matrix, feature_names=names,
        y=np.asarray(table.column("y").to_numpy(), dtype=np.int8),
        event_id=_strings(table.column("event_id")),
        tenant=_strings(table.column("tenant")),
        event_time=np.asarray(table.column("_t").to_numpy(), dtype=np.int64).view("datetime64[us]"),
        card_id=_strings(table.column("card_id")),
        amount=np.asarray(table.column("amount").to_numpy(), dtype=np.float64),
    )
