"""The event contracts: what a canonical transaction and a label event are.

A **transaction** has ``event_id`` (unique per tenant), ``event_time`` (UTC), ``tenant``,
``amount_cents`` (integer minor units, so sums are exact online and offline), optional
``currency``, optional entity keys (:data:`ENTITY_KEYS`, opaque strings) and any number of typed
attributes. A **label event** is ``(event_id, tenant, is_fraud, label_time)`` plus where it came
from; the latest label with ``label_time <= t`` is the truth known at ``t``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import SchemaError

UTC_TIME = pa.timestamp("us", tz="UTC")

#: Columns every transaction has, in this order.
TRANSACTION_CORE: dict[str, pa.DataType] = {
    "event_id": pa.string(),
    "event_time": UTC_TIME,
    "tenant": pa.string(),
    "amount_cents": pa.int64(),
}
#: Entity keys a transaction may carry; all are opaque strings ("0012" is not 12).
ENTITY_KEYS: tuple[str, ...] = (
    "card_id", "customer_id", "account_id", "terminal_id", "merchant_id",
    "email", "device_id", "ip_address",
)
#: Optional canonical columns that are not entity keys.
TRANSACTION_OPTIONAL: dict[str, pa.DataType] = {"currency": pa.string()}

LABEL_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("is_fraud", pa.bool_(), nullable=False),
    pa.field("label_time", UTC_TIME, nullable=False),
    # where the label came from: 'chargeback', 'review', 'import:<file>', 'simulator' ...
    pa.field("source", pa.string()),
    # the kind of fraud when known (a simulator scenario, a chargeback reason code)
    pa.field("fraud_type", pa.string()),
])

#: Types an attribute may have, by the name a mapping uses.
ATTRIBUTE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": UTC_TIME,
}
_TYPE_NAMES = {str(t): name for name, t in ATTRIBUTE_TYPES.items()}
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED = frozenset({*TRANSACTION_CORE, *ENTITY_KEYS, *TRANSACTION_OPTIONAL, "date", "is_fraud",
                      "label_time"})


def canonical_columns() -> dict[str, pa.DataType]:
    """Core, optional and entity-key columns with their types, in store order."""
    return {**TRANSACTION_CORE, **TRANSACTION_OPTIONAL, **{k: pa.string() for k in ENTITY_KEYS}}


def check_attribute_name(name: str) -> str:
    """An attribute name becomes a column: lower snake case, not a canonical name."""
    if not _ATTRIBUTE_NAME.match(name):
        raise SchemaError(
            f"attribute {name!r}: names must be lower snake case ([a-z][a-z0-9_]*, at most 64)")
    if name in RESERVED:
        raise SchemaError(f"attribute {name!r}: the name is reserved for a canonical column")
    return name


def attribute_type_name(dtype: pa.DataType) -> str:
    """The mapping name of an attribute's Arrow type ('float' for float64)."""
    try:
        return _TYPE_NAMES[str(dtype)]
    except KeyError:
        raise SchemaError(
            f"type {dtype} is not an attribute type; use one of {sorted(ATTRIBUTE_TYPES)}"
        ) from None


def conform_transactions(table: pa.Table) -> pa.Table:
    """Check a table against the transaction contract and return it in canonical column order.

    Canonical columns are cast to their contract types; the remaining columns are attributes
    and must have an attribute type. Raises :class:`SchemaError` naming the column and reason.
    """
    names = set(table.column_names)
    missing = [c for c in TRANSACTION_CORE if c not in names]
    if missing:
        raise SchemaError(f"transactions: missing required column(s) {missing}")
    columns: dict[str, pa.ChunkedArray] = {}
    for name, dtype in canonical_columns().items():
        if name in names:
            columns[name] = _cast(table.column(name), dtype, name)
    for name in table.column_names:
        if name in columns:
            continue
        check_attribute_name(name)
        attribute_type_name(table.schema.field(name).type)
        columns[name] = table.column(name)
    for name in TRANSACTION_CORE:
        nulls = columns[name].null_count
        if nulls:
            raise SchemaError(f"transactions: column {name!r} has {nulls} null value(s)")
    return pa.table(columns)


def conform_labels(table: pa.Table) -> pa.Table:
    """Check a table against the label contract and return it with exactly :data:`LABEL_SCHEMA`."""
    names = set(table.column_names)
    extra = names - set(LABEL_SCHEMA.names)
    if extra:
        raise SchemaError(f"labels: unknown column(s) {sorted(extra)}; labels have {LABEL_SCHEMA.names}")
    columns = []
    for field in LABEL_SCHEMA:
        if field.name in names:
            column = _cast(table.column(field.name), field.type, field.name)
        elif field.nullable:
            column = pa.nulls(table.num_rows, field.type)
        else:
            raise SchemaError(f"labels: missing required column {field.name!r}")
        if not field.nullable and column.null_count:
            raise SchemaError(f"labels: column {field.name!r} has {column.null_count} null value(s)")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=LABEL_SCHEMA)


def attribute_types(table: pa.Table) -> dict[str, str]:
    """Attribute columns of a conformed transaction table, with their type names."""
    canonical = canonical_columns()
    return {f.name: attribute_type_name(f.type) for f in table.schema if f.name not in canonical}


def merge_attribute_types(known: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Union of two attribute schemas; one attribute must keep one type forever."""
    merged = dict(known)
    for name, type_name in new.items():
        if merged.setdefault(name, type_name) != type_name:
            raise SchemaError(
                f"attribute {name!r} is stored as {merged[name]!r}, this data has {type_name!r};"
                " an attribute keeps its type: map it to a new name")
    return merged


def _cast(column: pa.ChunkedArray, dtype: pa.DataType, name: str) -> pa.ChunkedArray:
    if column.type == dtype:
        return column
    if pa.types.is_timestamp(dtype) and pa.types.is_timestamp(column.type) and column.type.tz is None:
        raise SchemaError(
            f"column {name!r} holds naive timestamps; event times must be UTC"
            " (localise them first: which time zone were they written in?)")
    try:
        return pc.cast(column, dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"column {name!r}: cannot be read as {dtype}: {exc}") from None
