"""The ingestion mapping: a declarative TOML file that says how a source export becomes events.

A mapping has four tables (see ``docs/mapping.md`` for every key, with examples)::

    [source]        how to read the file: format, delimiter, decimal mark, nulls, time zone
    [transaction]   canonical fields: event_id, tenant, event_time, amount, entity keys
    [attributes]    any other columns to keep, typed (string, int, float, bool, timestamp, dict)
    [label]         an optional fraud label column, turned into label events

A field is either a column name (``card_id = "CARD"``) or a table with ``column`` (or
``value`` for a constant) and parse options. Parsing the mapping validates every key, so a
typo fails before any row is read.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fraudops.core import MappingError, SchemaError, parse_duration

from ._schema import ATTRIBUTE_TYPES, ENTITY_KEYS, check_attribute_name

FieldType = Literal["string", "int", "float", "bool", "timestamp", "amount", "dict"]
FIELD_TYPES: tuple[str, ...] = ("string", "int", "float", "bool", "timestamp", "amount", "dict")
SOURCE_FORMATS = ("csv", "parquet", "jsonl")

DEFAULT_NULLS = ("", "N/A", "n/a", "NA", "NULL", "null", "None", "NaN", "nan")
DEFAULT_TRUE = ("true", "t", "yes", "y", "1")
DEFAULT_FALSE = ("false", "f", "no", "n", "0")

#: Canonical fields of [transaction] and the type each is parsed as.
CANONICAL_FIELDS: dict[str, str] = {
    "event_id": "string", "tenant": "string", "event_time": "timestamp",
    "amount": "amount", "amount_cents": "int", "currency": "string",
    **{key: "string" for key in ENTITY_KEYS},
}

_FIELD_KEYS = {
    "column", "value", "type", "format", "unit", "origin", "hour_column", "timezone",
    "true_values", "false_values", "item_separator", "keys", "prefix", "other_keys",
    "minor_units", "decimal", "thousands", "lowercase",
}
_SOURCE_KEYS = {"format", "delimiter", "quote", "decimal", "thousands", "encoding",
                "null_values", "repair_text", "strip", "timezone"}
_LABEL_KEYS = {"column", "true_values", "false_values", "time", "source", "fraud_type"}


@dataclass(frozen=True)
class SourceOptions:
    """How the file is read; defaults suit a plain UTF-8 CSV with a header."""

    format: str | None = None
    delimiter: str = ","
    quote: str = '"'
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"
    null_values: tuple[str, ...] = DEFAULT_NULLS
    repair_text: bool = True
    strip: bool = True
    timezone: str = "UTC"


@dataclass(frozen=True)
class FieldSpec:
    """How one target (a canonical field, an attribute, a dict key) is read from the source."""

    name: str
    type: str
    column: str | None = None
    value: Any = None
    format: str | None = None
    unit: str | None = None
    origin: str | None = None
    hour_column: str | None = None
    timezone: str | None = None
    true_values: tuple[str, ...] = DEFAULT_TRUE
    false_values: tuple[str, ...] = DEFAULT_FALSE
    item_separator: str = ";"
    keys: tuple[tuple[str, str], ...] = ()
    prefix: str | None = None
    other_keys: str = "string"
    minor_units: int = 100
    decimal: str | None = None
    thousands: str | None = None
    lowercase: bool = False

    @property
    def source_columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.column, self.hour_column) if c is not None)


@dataclass(frozen=True)
class LabelSpec:
    """A fraud-label column in the same file, turned into label events.

    ``time`` says when the label became known: ``'ingested'`` (now), a fixed ``delay`` after
    the event, or another column (``time_field``). ``fraud_type`` names an optional column
    with the kind of fraud (a reason code, a scenario).
    """

    column: str
    true_values: tuple[str, ...] = DEFAULT_TRUE
    false_values: tuple[str, ...] = DEFAULT_FALSE
    time: Literal["ingested", "delay", "column"] = "ingested"
    delay: timedelta = timedelta(0)
    time_field: FieldSpec | None = None
    source: str | None = None
    fraud_type: str | None = None


@dataclass(frozen=True)
class Mapping:
    """A parsed, validated mapping."""

    source: SourceOptions
    fields: tuple[FieldSpec, ...]
    attributes: tuple[FieldSpec, ...] = ()
    label: LabelSpec | None = None
    derive_event_id: tuple[str, ...] | None = None
    origin: str = "<mapping>"

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every source column the mapping reads, in order of first use."""
        specs = [*self.fields, *self.attributes]
        columns = [c for spec in specs for c in spec.source_columns]
        if self.label is not None:
            columns.append(self.label.column)
            if self.label.fraud_type is not None:
                columns.append(self.label.fraud_type)
            if self.label.time_field is not None:
                columns.extend(self.label.time_field.source_columns)
        return tuple(dict.fromkeys(columns))


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate a mapping file; every problem is a :class:`MappingError`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"mapping {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"mapping {path}: not valid TOML: {exc}") from None
    return parse_mapping(raw, origin=str(path))


def parse_mapping(raw: dict[str, Any], *, origin: str = "<mapping>") -> Mapping:
    """Validate a mapping given as a dict (the parsed TOML)."""
    where = f"mapping {origin}"
    _no_unknown(raw, {"source", "transaction", "attributes", "label"}, where)
    source = _parse_source(_table(raw, "source", where, required=False), where)
    transaction = _table(raw, "transaction", where, required=True)
    fields, derive = _parse_transaction(transaction, source, where)
    attributes = tuple(
        _parse_field(name, spec, None, source, f"{where} [attributes].{name}")
        for name, spec in _table(raw, "attributes", where, required=False).items())
    for spec in attributes:
        try:
            check_attribute_name(spec.name)
        except SchemaError as exc:
            raise MappingError(f"{where} [attributes]: {exc}") from None
    label_raw = raw.get("label")
    label = None if label_raw is None else _parse_label(label_raw, source, f"{where} [label]")
    return Mapping(source=source, fields=fields, attributes=attributes, label=label,
                   derive_event_id=derive, origin=origin)


def _parse_source(raw: dict[str, Any], where: str) -> SourceOptions:
    _no_unknown(raw, _SOURCE_KEYS, f"{where} [source]")
    options = SourceOptions(**_typed(raw, f"{where} [source]"))
    if options.format is not None and options.format not in SOURCE_FORMATS:
        raise MappingError(f"{where} [source] format = {options.format!r}:"
                           f" must be one of {list(SOURCE_FORMATS)}")
    for key in ("delimiter", "quote", "decimal"):
        value = getattr(options, key)
        if not isinstance(value, str) or len(value) != 1:
            raise MappingError(f"{where} [source] {key} = {value!r}: must be one character")
    if options.decimal == options.thousands:
        raise MappingError(f"{where} [source]: decimal and thousands must differ")
    _check_timezone(options.timezone, f"{where} [source] timezone")
    return options


def _parse_transaction(raw: dict[str, Any], source: SourceOptions, where: str
                       ) -> tuple[tuple[FieldSpec, ...], tuple[str, ...] | None]:
    where = f"{where} [transaction]"
    _no_unknown(raw, set(CANONICAL_FIELDS), where)
    derive: tuple[str, ...] | None = None
    fields: list[FieldSpec] = []
    for name, spec in raw.items():
        if name == "event_id" and isinstance(spec, dict) and "derive" in spec:
            derive = _parse_derive(spec, where)
            continue
        fields.append(_parse_field(name, spec, CANONICAL_FIELDS[name], source, f"{where}.{name}"))
    names = {f.name for f in fields}
    if "event_time" not in names:
        raise MappingError(f"{where}: event_time is required (the column holding the event time)")
    if ("amount" in names) == ("amount_cents" in names):
        raise MappingError(f"{where}: give exactly one of amount (major units, e.g. 12,50)"
                           " and amount_cents (integer minor units)")
    if "event_id" not in names and derive is None:
        raise MappingError(f"{where}: event_id is required; name its column, or write"
                           " event_id = {{ derive = true }} to derive a stable id from the row")
    if derive:
        unknown = [d for d in derive if d not in names]
        if unknown:
            raise MappingError(f"{where}.event_id derive: {unknown} are not mapped fields;"
                               f" mapped: {sorted(names)}")
    return tuple(fields), derive


def _parse_derive(spec: dict[str, Any], where: str) -> tuple[str, ...]:
    _no_unknown(spec, {"derive"}, f"{where}.event_id")
    value = spec["derive"]
    if value is True:
        return ()
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MappingError(f"{where}.event_id derive = {value!r}: must be true or a list of"
                       " mapped field names")


def _parse_field(name: str, spec: Any, fixed_type: str | None, source: SourceOptions,
                 where: str) -> FieldSpec:
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: must be a column name or a table; got {spec!r}")
    _no_unknown(spec, _FIELD_KEYS, where)
    if ("column" in spec) == ("value" in spec):
        raise MappingError(f"{where}: give exactly one of column (a source column) and value"
                           " (a constant)")
    type_name = spec.get("type", fixed_type or "string")
    if fixed_type is not None and type_name != fixed_type:
        raise MappingError(f"{where}: type is always {fixed_type!r} for this field")
    if type_name not in FIELD_TYPES or (fixed_type is None and type_name == "amount"):
        allowed = [t for t in FIELD_TYPES if t != "amount"]
        raise MappingError(f"{where} type = {type_name!r}: must be one of {allowed}")
    values = _typed({k: v for k, v in spec.items() if k != "type"}, where)
    if "keys" in values:
        values["keys"] = _parse_dict_keys(values["keys"], where)
    if "timezone" in values:
        _check_timezone(values["timezone"], f"{where} timezone")
    if values.get("other_keys", "string") not in ("string", "ignore", "error"):
        raise MappingError(f"{where} other_keys = {values['other_keys']!r}: must be 'string',"
                           " 'ignore' or 'error'")
    if values.get("unit") not in (None, "s", "ms", "us"):
        raise MappingError(f"{where} unit = {values['unit']!r}: must be 's', 'ms' or 'us'")
    minor = values.get("minor_units", 100)
    if not isinstance(minor, int) or minor < 1:
        raise MappingError(f"{where} minor_units = {minor!r}: must be a positive integer")
    for key in ("true_values", "false_values"):
        if key in values:
            values[key] = tuple(str(v).lower() for v in values[key])
    if "value" in values and type_name not in ("string", "int", "float", "bool"):
        raise MappingError(f"{where}: a constant value is only allowed for string, int, float"
                           " or bool fields")
    return FieldSpec(name=name, type=type_name, **values)


def _parse_dict_keys(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise MappingError(f"{where} keys: must be a table of key = type")
    allowed = sorted(ATTRIBUTE_TYPES)
    for key, type_name in raw.items():
        if type_name not in ATTRIBUTE_TYPES:
            raise MappingError(f"{where} keys.{key} = {type_name!r}: must be one of {allowed}")
    return tuple(raw.items())


def _parse_label(raw: Any, source: SourceOptions, where: str) -> LabelSpec:
    if isinstance(raw, str):
        raw = {"column": raw}
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: must be a table with at least column = ...")
    _no_unknown(raw, _LABEL_KEYS, where)
    if "column" not in raw:
        raise MappingError(f"{where}: column is required (the source column with the label)")
    time = raw.get("time", "ingested")
    values: dict[str, Any] = {"column": raw["column"], "source": raw.get("source"),
                              "fraud_type": raw.get("fraud_type")}
    for key in ("true_values", "false_values"):
        if key in raw:
            values[key] = tuple(str(v).lower() for v in raw[key])
    if time == "ingested":
        return LabelSpec(time="ingested", **values)
    if isinstance(time, dict) and set(time) == {"delay"}:
        try:
            delay = parse_duration(time["delay"], field=f"{where} time.delay")
        except ValueError as exc:
            raise MappingError(str(exc)) from None
        return LabelSpec(time="delay", delay=delay, **values)
    if isinstance(time, dict) and "column" in time:
        spec = _parse_field("label_time", time, "timestamp", source, f"{where} time")
        return LabelSpec(time="column", time_field=spec, **values)
    raise MappingError(f"{where} time = {time!r}: must be 'ingested', {{ delay = '30d' }} or"
                       " { column = '...', format = '...' }")


_KEY_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "delimiter": str, "quote": str, "decimal": str, "thousands": str,
    "encoding": str, "null_values": list, "repair_text": bool, "strip": bool, "timezone": str,
    "column": str, "unit": str, "origin": str, "hour_column": str, "true_values": list,
    "false_values": list, "item_separator": str, "keys": dict, "prefix": str, "other_keys": str,
    "minor_units": int, "lowercase": bool, "value": (str, int, float, bool),
}


def _typed(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Check each key's TOML type (a string where a string belongs); lists become tuples."""
    checked: dict[str, Any] = {}
    for key, value in raw.items():
        expected = _KEY_TYPES.get(key, object)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            names = expected.__name__ if isinstance(expected, type) else \
                " or ".join(t.__name__ for t in expected)
            kind = {"str": "a string", "list": "a list", "bool": "true or false",
                    "dict": "a table", "int": "an integer"}.get(names, names)
            raise MappingError(f"{where} {key} = {value!r}: must be {kind}")
        if isinstance(value, list):
            if not all(isinstance(v, str | int) for v in value):
                raise MappingError(f"{where} {key} = {value!r}: must be a list of strings")
            value = tuple(str(v) for v in value)
        checked[key] = value
    return checked


def _table(raw: dict[str, Any], key: str, where: str, *, required: bool) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise MappingError(f"{where}: the [{key}] table is required")
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"{where}: [{key}] must be a table")
    return value


def _no_unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _check_timezone(name: Any, where: str) -> None:
    try:
        zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"{where} = {name!r}: not an IANA time zone such as 'UTC' or"
                           " 'Europe/Madrid'") from None
