"""Apply a mapping to a raw source table: typed canonical and attribute columns, per-row errors.

This is the one place where a mapping's meaning lives; ingestion orchestrates it and the
quarantine reports what it found.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import MappingError, SchemaError

from ._mapping import FieldSpec, Mapping
from ._parsers import (
    Parsed,
    dict_items,
    parse_bool,
    parse_field,
    parse_hour,
    parse_string,
    sanitise_key,
)
from ._schema import UTC_TIME, check_attribute_name

_TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
REQUIRED = ("event_id", "tenant", "event_time", "amount_cents")


@dataclass(frozen=True)
class FieldErrors:
    """Per-row reasons (null where fine) for one target field read from one source column."""

    field: str
    column: str | None
    errors: pa.Array


@dataclass(frozen=True)
class Conversion:
    """Everything a mapping produced from a table, aligned row by row with it."""

    columns: dict[str, pa.Array]
    errors: tuple[FieldErrors, ...]
    is_fraud: pa.Array | None
    label_time: pa.Array | None
    fraud_type: pa.Array | None = None

    def failed(self) -> pa.Array:
        """True for every row with at least one error."""
        mask = pa.array([False] * self._rows)
        for item in self.errors:
            mask = pc.or_(mask, pc.is_valid(item.errors))
        return mask

    @property
    def _rows(self) -> int:
        return len(next(iter(self.columns.values())))


def check_columns(table: pa.Table, mapping: Mapping) -> None:
    """Every source column the mapping names must be in the file."""
    missing = [c for c in mapping.source_columns if c not in table.column_names]
    if missing:
        raise MappingError(f"mapping {mapping.origin}: column(s) {missing} are not in the file;"
                           f" the file has {table.column_names}")


def apply_mapping(table: pa.Table, mapping: Mapping, *, default_tenant: str,
                  now: datetime) -> Conversion:
    """Parse every mapped field of ``table`` (already trimmed and null-normalised)."""
    check_columns(table, mapping)
    rows = table.num_rows
    columns: dict[str, pa.Array] = {}
    errors: list[FieldErrors] = []

    sources: dict[str, str | None] = {}
    for spec in mapping.fields:
        target = "amount_cents" if spec.name == "amount" else spec.name
        sources[target] = spec.column
        columns[target] = _read(table, spec, mapping, target, errors)
    if "tenant" not in columns:
        columns["tenant"] = pa.array([default_tenant] * rows, pa.string())
    errors.append(_tenant_errors(columns["tenant"], mapping))
    for spec in mapping.attributes:
        if spec.type == "dict":
            produced, problems = _expand_dict(table.column(spec.column).combine_chunks(), spec,
                                              mapping)
            for name in produced:
                if name in columns:
                    raise MappingError(f"mapping {mapping.origin} [attributes].{spec.name}:"
                                       f" expands to {name!r}, which is already mapped")
            columns.update(produced)
            errors.extend(problems)
        else:
            columns[spec.name] = _read(table, spec, mapping, spec.name, errors)
    for name in REQUIRED:
        if name == "event_id" and mapping.derive_event_id is not None:
            continue
        errors.append(FieldErrors(name, sources.get(name), _missing(columns[name], errors, name)))
    is_fraud, label_time = _labels(table, mapping, columns, errors, now)
    fraud_type = None
    if mapping.label is not None and mapping.label.fraud_type is not None:
        fraud_type = parse_string(table.column(mapping.label.fraud_type).combine_chunks()).values
    return Conversion(columns, tuple(errors), is_fraud, label_time, fraud_type)


def _read(table: pa.Table, spec: FieldSpec, mapping: Mapping, target: str,
          errors: list[FieldErrors]) -> pa.Array:
    """Parse one field's column (and hour column), recording errors against each column."""
    if spec.column is None:
        return _constant(spec, table.num_rows).values
    parsed = parse_field(table.column(spec.column).combine_chunks(), spec, mapping.source)
    errors.append(FieldErrors(target, spec.column, parsed.errors))
    if spec.hour_column is None:
        return parsed.values
    hour = parse_hour(table.column(spec.hour_column).combine_chunks())
    errors.append(FieldErrors(target, spec.hour_column, hour.errors))
    return pc.add(parsed.values, hour.values)


def _constant(spec: FieldSpec, rows: int) -> Parsed:
    kinds = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    try:
        return Parsed.ok(pa.array([spec.value] * rows, kinds[spec.type]))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise MappingError(f"field {spec.name!r}: value = {spec.value!r} is not a"
                           f" {spec.type}") from None


def _tenant_errors(tenant: pa.Array, mapping: Mapping) -> FieldErrors:
    bad = pc.and_(pc.is_valid(tenant), pc.invert(pc.match_substring_regex(tenant, _TENANT)))
    column = next((f.column for f in mapping.fields if f.name == "tenant"), None)
    reasons = pc.if_else(bad, pc.binary_join_element_wise(
        "'", tenant, "' is not a tenant name (letters, digits, '_', '.', '-'; at most 64)", ""),
        pa.scalar(None, pa.string()))
    return FieldErrors("tenant", column, reasons)


def _missing(values: pa.Array, errors: list[FieldErrors], name: str) -> pa.Array:
    """'is missing' where a required value is null and no parse error explains it already."""
    explained = pa.array([False] * len(values))
    for item in errors:
        if item.field == name:
            explained = pc.or_(explained, pc.is_valid(item.errors))
    missing = pc.and_(pc.is_null(values), pc.invert(explained))
    return pc.if_else(missing, pa.scalar(f"{name} is missing", pa.string()),
                      pa.scalar(None, pa.string()))


def _expand_dict(array: pa.Array, spec: FieldSpec, mapping: Mapping
                 ) -> tuple[dict[str, pa.Array], list[FieldErrors]]:
    """One dict-text column into one attribute per key (``device_os``, ``device_model`` ...)."""
    items, row_errors = dict_items(array, spec.item_separator)
    prefix = spec.prefix if spec.prefix is not None else f"{spec.name}_"
    declared = dict(spec.keys)
    seen = list(dict.fromkeys(k for item in items if item for k in item))
    errors = [FieldErrors(spec.name, spec.column, pa.array(row_errors, pa.string()))]
    unknown = [k for k in seen if k not in declared]
    if spec.other_keys == "error" and unknown:
        reasons = [next((f"has the unexpected key {k!r}" for k in item if k not in declared), None)
                   if item else None for item in items]
        errors.append(FieldErrors(spec.name, spec.column, pa.array(reasons, pa.string())))
    keys = dict(declared)
    if spec.other_keys == "string":
        keys.update((k, "string") for k in unknown)
    columns: dict[str, pa.Array] = {}
    for key, type_name in keys.items():
        name = f"{prefix}{sanitise_key(key)}"
        try:
            check_attribute_name(name)
        except SchemaError as exc:
            raise MappingError(f"mapping {mapping.origin} [attributes].{spec.name}: {exc}") from None
        raw = pa.array([item.get(key) if item else None for item in items], pa.string())
        key_spec = replace(spec, name=name, type=type_name, keys=())
        parsed = parse_string(raw) if type_name == "string" else \
            parse_field(raw, key_spec, mapping.source)
        columns[name] = parsed.values
        errors.append(FieldErrors(name, spec.column, parsed.errors))
    return columns, errors


def _labels(table: pa.Table, mapping: Mapping, columns: dict[str, pa.Array],
            errors: list[FieldErrors], now: datetime) -> tuple[pa.Array | None, pa.Array | None]:
    label = mapping.label
    if label is None:
        return None, None
    parsed = parse_bool(table.column(label.column).combine_chunks(), label.true_values,
                        label.false_values)
    errors.append(FieldErrors("label", label.column, parsed.errors))
    rows = table.num_rows
    if label.time == "ingested":
        label_time = pa.array([now] * rows, UTC_TIME)
    elif label.time == "delay":
        label_time = pc.add(columns["event_time"], pa.scalar(label.delay, pa.duration("us")))
    else:
        assert label.time_field is not None
        before = len(errors)
        label_time = _read(table, label.time_field, mapping, "label_time", errors)
        explained = pa.array([False] * rows)
        for item in errors[before:]:
            explained = pc.or_(explained, pc.is_valid(item.errors))
        labelled = pc.is_valid(parsed.values)
        missing = pc.and_(pc.and_(labelled, pc.is_null(label_time)), pc.invert(explained))
        early = pc.fill_null(pc.less(label_time, columns["event_time"]), False)
        errors.append(FieldErrors("label_time", label.time_field.column, pc.if_else(
            missing, pa.scalar("label_time is missing for a labelled row", pa.string()),
            pc.if_else(early, pa.scalar("label_time is before event_time", pa.string()),
                       pa.scalar(None, pa.string())))))
    return parsed.values, pc.cast(label_time, UTC_TIME)
