"""Vectorised value parsers that report, per row, why a value could not be read.

Every parser takes one source column (strings from CSV/JSONL, typed from Parquet) and returns
:class:`Parsed`: the converted values and, aligned with them, a reason for each row that failed
(null where the row is fine). Missing values stay missing here; whether a field may be missing
is decided by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import ftfy
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._mapping import FieldSpec, SourceOptions
from ._schema import UTC_TIME

_INT = r"^[+-]?\d+$"
_FLOAT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_AMOUNT = r"^[+-]?(\d+\.?\d*|\.\d+)$"
_AMOUNT_EXACT = r"^[+-]?(\d{1,19}\.?\d{0,9}|\.\d{1,9})$"
_DECIMAL = pa.decimal128(28, 9)
_HOUR = r"^(?P<h>\d{1,2})(?::(?P<m>\d{2}))?(?::(?P<s>\d{2}))?$"
_US = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass(frozen=True)
class Parsed:
    """Converted values and, per row, the reason the value could not be read (or null)."""

    values: pa.Array
    errors: pa.Array

    @classmethod
    def ok(cls, values: pa.Array) -> Parsed:
        return cls(values, pa.nulls(len(values), pa.string()))


def prepare_strings(table: pa.Table, options: SourceOptions) -> pa.Table:
    """Trim, turn the mapping's null markers into nulls and repair mojibake in string columns."""
    nulls = pa.array(list(options.null_values), pa.string())
    columns = []
    for column in table.columns:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
            if options.strip:
                array = pc.utf8_trim_whitespace(array)
            array = pc.if_else(pc.is_in(array, value_set=nulls), None, array)
            if options.repair_text:
                array = repair_mojibake(array)
        columns.append(array)
    return pa.table(columns, names=table.column_names)


def repair_mojibake(array: pa.Array) -> pa.Array:
    """Undo UTF-8 read as Latin-1/CP1252 (``FÃ­sica`` → ``Física``), once per distinct value."""
    suspicious = pc.match_substring_regex(array, r"[\x{80}-\x{ff}\x{152}-\x{2122}]")
    if not pc.any(suspicious).as_py():
        return array
    encoded = array.dictionary_encode()
    fixed = [None if v is None else ftfy.fix_encoding(v) for v in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(fixed, pa.string()), encoded.indices)


def parse_field(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    """Parse one column as the field's type says."""
    if spec.type == "string":
        return parse_string(array, lowercase=spec.lowercase)
    if spec.type == "int":
        return parse_int(array, spec, options)
    if spec.type == "float":
        return parse_float(array, spec, options)
    if spec.type == "amount":
        return parse_amount(array, spec, options)
    if spec.type == "bool":
        return parse_bool(array, spec.true_values, spec.false_values)
    if spec.type == "timestamp":
        return parse_timestamp(array, spec, options)
    raise ValueError(f"field {spec.name!r}: type {spec.type!r} has no single-column parser")


def parse_string(array: pa.Array, *, lowercase: bool = False) -> Parsed:
    if pa.types.is_floating(array.type):
        # ids exported through a float column (123.0) read as "123"
        integral = pc.equal(array, pc.floor(array))
        as_int = pc.cast(pc.if_else(integral, array, None), pa.int64(), safe=False)
        array = pc.coalesce(pc.cast(as_int, pa.string()), pc.cast(array, pa.string()))
    elif not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())
    return Parsed.ok(pc.utf8_lower(array) if lowercase else array)


def parse_int(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    if pa.types.is_integer(array.type):
        return Parsed.ok(pc.cast(array, pa.int64()))
    if pa.types.is_floating(array.type):
        bad = pc.not_equal(array, pc.floor(array))
        return _checked(array, pc.cast(pc.if_else(bad, None, array), pa.int64(), safe=False), bad,
                        "is not a whole number")
    text = _as_text(array)
    thousands = spec.thousands if spec.thousands is not None else options.thousands
    if thousands:
        text = pc.replace_substring(text, thousands, "")
    bad = pc.invert(pc.match_substring_regex(text, _INT))
    return _checked(array, pc.cast(pc.if_else(bad, None, text), pa.int64()), bad,
                    "is not a whole number")


def parse_float(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        values = pc.cast(array, pa.float64())
        bad = pc.invert(pc.is_finite(values))
        return _checked(array, pc.if_else(bad, None, values), bad, "is not a finite number")
    if pa.types.is_decimal(array.type):
        return Parsed.ok(pc.cast(array, pa.float64()))
    text, reason = _number_text(array, spec, options)
    bad = pc.invert(pc.match_substring_regex(text, _FLOAT))
    return _checked(array, pc.cast(pc.if_else(bad, None, text), pa.float64()), bad, reason)


def parse_amount(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    """Money as integer minor units (cents); more precision than the unit has is an error.

    Text is read exactly (as a decimal), so ``305050183.03`` is 30505018303 cents, not a
    float's neighbour of it.
    """
    minor = spec.minor_units
    excess = f"has more decimals than 1/{minor} of the currency unit"
    if pa.types.is_integer(array.type):
        return Parsed.ok(pc.multiply(pc.cast(array, pa.int64()), minor))
    if pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        number = parse_float(array, spec, options)
        scaled = pc.multiply(number.values, float(minor))
        rounded = pc.round(scaled)
        tolerance = pc.max_element_wise(pc.multiply(pc.abs(scaled), 1e-12), 1e-6)
        bad = pc.greater(pc.abs(pc.subtract(scaled, rounded)), tolerance)
        checked = _checked(array, pc.cast(rounded, pa.int64()), bad, excess)
        return Parsed(checked.values, pc.coalesce(number.errors, checked.errors))
    text, reason = _number_text(array, spec, options)
    not_number = pc.invert(pc.match_substring_regex(text, _AMOUNT))
    too_precise = pc.and_(pc.invert(not_number),
                          pc.invert(pc.match_substring_regex(text, _AMOUNT_EXACT)))
    exact = pc.cast(pc.if_else(pc.or_(not_number, too_precise), None, text), _DECIMAL)
    scaled = pc.multiply(exact, pa.scalar(minor, pa.decimal128(9, 0)))
    fractional = pc.not_equal(scaled, pc.round(scaled, 0))
    values = pc.cast(pc.round(scaled, 0), pa.int64(), safe=False)
    first = _checked(array, values, not_number, reason)
    second = _checked(array, first.values, pc.or_(too_precise, fractional), excess)
    return Parsed(second.values, pc.coalesce(first.errors, second.errors))


def _number_text(array: pa.Array, spec: FieldSpec, options: SourceOptions
                 ) -> tuple[pa.Array, str]:
    """Number text with the thousands marks removed and '.' as the decimal mark."""
    text = _as_text(array)
    thousands = spec.thousands if spec.thousands is not None else options.thousands
    decimal = spec.decimal or options.decimal
    if thousands:
        text = pc.replace_substring(text, thousands, "")
    if decimal != ".":
        # a '.' in a decimal-comma export is a thousands mark only if declared; else an error
        text = pc.replace_substring(pc.replace_substring(text, ".", "\x00"), decimal, ".")
        return text, f"is not a number with decimal mark {decimal!r}"
    return text, "is not a number"


def parse_bool(array: pa.Array, true_values: tuple[str, ...],
               false_values: tuple[str, ...]) -> Parsed:
    if pa.types.is_boolean(array.type):
        return Parsed.ok(array)
    if pa.types.is_integer(array.type):
        array = pc.cast(array, pa.string())
    text = pc.utf8_lower(_as_text(array))
    truthy = pc.is_in(text, value_set=pa.array(list(true_values), pa.string()))
    falsy = pc.is_in(text, value_set=pa.array(list(false_values), pa.string()))
    values = pc.if_else(truthy, True, pc.if_else(falsy, False, pa.scalar(None, pa.bool_())))
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.or_(truthy, falsy)))
    return _checked(array, values, bad, f"is not one of the true values {list(true_values)}"
                    f" or false values {list(false_values)}")


def parse_timestamp(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    """Timestamps to UTC: strptime formats, ISO-8601 text, epoch numbers, typed Parquet times.

    Naive times are read in the field's (or the source's) time zone; at a daylight-saving
    change an ambiguous or skipped local time resolves to the earliest instant. A separate
    hour column is added by the caller (:func:`parse_hour`) so its errors name its column.
    """
    zone = spec.timezone or options.timezone
    if pa.types.is_timestamp(array.type):
        return Parsed.ok(_to_utc(pc.cast(array, pa.timestamp("us", tz=array.type.tz)), zone))
    if pa.types.is_date(array.type):
        return Parsed.ok(_to_utc(pc.cast(pc.cast(array, pa.date32()), pa.timestamp("us")), zone))
    if spec.unit is not None:
        return _parse_epoch(array, spec, options)
    if spec.format is not None:
        return _parse_with_format(_as_text(array), spec.format, zone)
    return _parse_iso(_as_text(array), zone)


def parse_hour(array: pa.Array) -> Parsed:
    """An hour-of-day column (``14``, ``14:05``, ``14:05:09``) as a duration to add to a date."""
    text = _as_text(pc.cast(array, pa.string()) if not pa.types.is_string(array.type) else array)
    parts = pc.extract_regex(text, _HOUR)
    # unmatched optional groups come back as "" (and non-matching rows as null)
    h, m, s = (pc.cast(pc.replace_substring_regex(parts.field(k), "^$", "0"), pa.int64())
               for k in "hms")
    seconds = pc.add(pc.add(pc.multiply(h, 3600), pc.multiply(m, 60)), s)
    in_range = pc.and_(pc.and_(pc.less(h, 24), pc.less(m, 60)), pc.less(s, 60))
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(
        pc.and_(pc.is_valid(parts), in_range), False)))
    micros = pc.multiply(pc.if_else(bad, None, seconds), 1_000_000)
    return _checked(text, pc.cast(micros, pa.duration("us")), bad,
                    "is not an hour of day (H, HH:MM or HH:MM:SS)")


def _parse_with_format(text: pa.Array, fmt: str, zone: str) -> Parsed:
    parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
    if parsed.type.tz is None:
        # strptime rolls impossible dates over (31/02 -> 02/03); writing the value back in
        # the same format and comparing catches them.
        parsed = pc.if_else(pc.equal(_digits(text), _digits(pc.strftime(parsed, format=fmt))),
                            parsed, pa.scalar(None, parsed.type))
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    return _checked(text, _to_utc(parsed, zone), bad, f"does not match the format {fmt!r}")


def _digits(text: pa.Array) -> pa.Array:
    """Text compared without case and without leading zeros in numbers ('5/1' == '05/01')."""
    return pc.replace_substring_regex(pc.utf8_lower(text), r"(^|\D)0+(\d)", r"\1\2")


def _parse_iso(text: pa.Array, zone: str) -> Parsed:
    try:
        return Parsed.ok(_to_utc(pc.cast(text, pa.timestamp("us")), zone))
    except pa.ArrowInvalid:
        pass
    # Mixed offsets, 'Z', fractions or bad values: parse each distinct value exactly.
    encoded = text.dictionary_encode()
    local = ZoneInfo(zone)
    values: list[datetime | None] = []
    for value in encoded.dictionary.to_pylist():
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            values.append(None)
            continue
        moment = moment.replace(tzinfo=local) if moment.tzinfo is None else moment
        values.append(moment.astimezone(UTC))
    parsed = pc.take(pa.array(values, UTC_TIME), encoded.indices)
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    return _checked(text, parsed, bad, "is not an ISO-8601 timestamp")


def _parse_epoch(array: pa.Array, spec: FieldSpec, options: SourceOptions) -> Parsed:
    number = parse_float(array, spec, options)
    origin = 0
    if spec.origin is not None:
        start = datetime.fromisoformat(spec.origin)
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        origin = int(start.timestamp()) * 1_000_000 + start.microsecond
    assert spec.unit is not None
    micros = pc.add(pc.cast(pc.round(pc.multiply(number.values, float(_US[spec.unit]))),
                            pa.int64()), origin)
    return Parsed(pc.cast(pc.cast(micros, pa.int64()), UTC_TIME), number.errors)


def _to_utc(values: pa.Array, zone: str) -> pa.Array:
    if values.type.tz is None:
        if zone != "UTC":
            values = pc.assume_timezone(values, timezone=zone, ambiguous="earliest",
                                        nonexistent="earliest")
        else:
            return pc.cast(values, UTC_TIME)
    return pc.cast(values, UTC_TIME)


def _as_text(array: pa.Array) -> pa.Array:
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def _checked(source: pa.Array, values: pa.Array, bad: pa.Array, reason: str) -> Parsed:
    """Attach ``'<value>' <reason>`` to the rows flagged ``bad`` (null flags mean fine)."""
    bad = pc.fill_null(bad, False)
    text = _as_text(source) if not pa.types.is_string(source.type) else source
    errors = pa.nulls(len(values), pa.string())
    return Parsed(pc.if_else(bad, pa.scalar(None, values.type), values),
                  _quote_errors(text, errors, bad, reason))


def _quote_errors(text: pa.Array, errors: pa.Array, bad: pa.Array,
                  reason: str | None = None) -> pa.Array:
    if not pc.any(bad).as_py():
        return errors
    if reason is None:
        return pc.if_else(bad, pc.binary_join_element_wise("'", text, "' ", errors, ""), errors)
    return pc.if_else(bad, pc.binary_join_element_wise("'", text, f"' {reason}", ""), errors)


def sanitise_key(key: str) -> str:
    """A dict key as part of an attribute name: lower snake case."""
    return re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_") or "key"


def split_dict_text(text: str, separator: str) -> dict[str, str | None]:
    """Parse ``"{'model': 2020; 'os': 'ANDROID'}"`` into ``{'model': '2020', 'os': 'ANDROID'}``.

    Items are split on ``separator`` outside quotes; quoted values lose their quotes; bare
    ``None``/``null`` become missing. Raises ``ValueError`` with the reason when malformed.
    """
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError("is not a {key: value, ...} text")
    result: dict[str, str | None] = {}
    for item in _split_outside_quotes(body[1:-1], separator):
        if not item.strip():
            continue
        key, colon, value = _split_outside_quotes_once(item, ":")
        if not colon:
            raise ValueError(f"item {item.strip()!r} has no ':'")
        name = _unquote(key.strip())
        if not name:
            raise ValueError(f"item {item.strip()!r} has an empty key")
        raw = value.strip()
        result[name] = None if raw in ("None", "null", "") else _unquote(raw)
    return result


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote:
        raise ValueError("has an unclosed quote")
    parts.append("".join(current))
    return parts


def _split_outside_quotes_once(text: str, separator: str) -> tuple[str, str, str]:
    pieces = _split_outside_quotes(text, separator)
    if len(pieces) == 1:
        return text, "", ""
    return pieces[0], separator, separator.join(pieces[1:])


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def dict_items(array: pa.Array, separator: str) -> tuple[list[dict[str, str | None] | None],
                                                         list[str | None]]:
    """Split every row of a dict-text column; returns the per-row items and per-row errors."""
    items: list[dict[str, str | None] | None] = []
    errors: list[str | None] = []
    for value in _as_text(array).to_pylist():
        if value is None:
            items.append(None)
            errors.append(None)
            continue
        try:
            items.append(split_dict_text(value, separator))
            errors.append(None)
        except ValueError as exc:
            items.append(None)
            errors.append(f"{value!r} {exc}")
    return items, errors


def indices_where(mask: pa.Array) -> np.ndarray:
    """Positions where a boolean array is true (nulls count as false)."""
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
