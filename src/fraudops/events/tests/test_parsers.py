"""Value parsers: each checked against a slow, obvious Python reading of the same text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudops.events import FieldSpec, SourceOptions
from fraudops.events._parsers import (
    parse_bool,
    parse_field,
    parse_hour,
    prepare_strings,
    split_dict_text,
)

OPTIONS = SourceOptions()
EU = SourceOptions(decimal=",", thousands=".")


def parse(values: list[object], spec: FieldSpec, options: SourceOptions = OPTIONS,
          dtype: pa.DataType | None = None) -> tuple[list[object], list[str | None]]:
    parsed = parse_field(pa.array(values, dtype), spec, options)
    return parsed.values.to_pylist(), parsed.errors.to_pylist()


def european(value: Decimal) -> str:
    """The obvious way a European export writes a number: 1.234.567,89."""
    sign = "-" if value < 0 else ""
    whole, _, frac = f"{abs(value):.2f}".partition(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{'.'.join(groups)},{frac}"


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2,
                   allow_nan=False, allow_infinity=False))
def test_decimal_comma_amounts_become_exact_cents(value: Decimal) -> None:
    values, errors = parse([european(value)], FieldSpec("amount", "amount"), EU)
    assert values == [int(value * 100)]
    assert errors == [None]


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integers_with_thousands_marks(value: int) -> None:
    text = f"{value:,}".replace(",", ".")
    assert parse([text], FieldSpec("n", "int"), EU)[0] == [value]


def test_point_in_a_decimal_comma_export_is_an_error_unless_declared_thousands() -> None:
    values, errors = parse(["1.234,5"], FieldSpec("x", "float"), SourceOptions(decimal=","))
    assert values == [None]
    assert errors == ["'1.234,5' is not a number with decimal mark ','"]


def test_amount_with_more_precision_than_cents_is_rejected() -> None:
    values, errors = parse(["0.125", "0.12"], FieldSpec("amount", "amount"))
    assert values == [None, 12]
    assert errors[0] == "'0.125' has more decimals than 1/100 of the currency unit"


def test_amount_in_a_currency_without_minor_units() -> None:
    values, _ = parse(["1500"], FieldSpec("amount", "amount", minor_units=1))
    assert values == [1500]


def test_missing_values_are_not_errors() -> None:
    for type_name in ("int", "float", "bool", "timestamp", "amount", "string"):
        values, errors = parse([None], FieldSpec("x", type_name), dtype=pa.string())
        assert values == [None]
        assert errors == [None]


@pytest.mark.parametrize(("text", "expected"), [
    ("TRUE", True), ("false", False), ("Yes", True), ("0", False), (" n ", None)])
def test_booleans_default_vocabulary(text: str, expected: bool | None) -> None:
    parsed = parse_bool(pa.array([text]), ("true", "t", "yes", "y", "1"),
                        ("false", "f", "no", "n", "0"))
    assert parsed.values.to_pylist() == [expected]
    assert (parsed.errors.to_pylist()[0] is None) == (expected is not None)


def test_booleans_custom_vocabulary() -> None:
    values, errors = parse(["S", "N", "TRUE"],
                           FieldSpec("b", "bool", true_values=("s",), false_values=("n",)))
    assert values == [True, False, None]
    assert errors[2] is not None


def test_day_first_dates_with_single_digit_days() -> None:
    values, errors = parse(["5/01/2020", "15/12/2020", "31/02/2020"],
                           FieldSpec("t", "timestamp", format="%d/%m/%Y"))
    assert values[:2] == [datetime(2020, 1, 5, tzinfo=UTC), datetime(2020, 12, 15, tzinfo=UTC)]
    assert values[2] is None
    assert errors[2] == "'31/02/2020' does not match the format '%d/%m/%Y'"


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0), ("9", 9 * 3600), ("14:05", 14 * 3600 + 300), ("23:59:59", 86399)])
def test_hour_column_offsets(text: str, seconds: int) -> None:
    parsed = parse_hour(pa.array([text]))
    assert parsed.values.to_pylist() == [timedelta(seconds=seconds)]


@pytest.mark.parametrize("text", ["24", "12:60", "1pm", "-1"])
def test_bad_hours_are_errors(text: str) -> None:
    parsed = parse_hour(pa.array([text]))
    assert parsed.values.to_pylist() == [None]
    assert "is not an hour of day" in parsed.errors.to_pylist()[0]


def test_local_times_convert_to_utc_across_daylight_saving() -> None:
    spec = FieldSpec("t", "timestamp", timezone="Europe/Madrid")
    values, _ = parse(["2020-01-15 12:00:00", "2020-07-15 12:00:00"], spec)
    assert values == [datetime(2020, 1, 15, 11, tzinfo=UTC), datetime(2020, 7, 15, 10, tzinfo=UTC)]


def test_iso_times_with_mixed_offsets_fractions_and_garbage() -> None:
    values, errors = parse(["2020-01-01T10:00:00+02:00", "2020-01-01T10:00:00.5Z",
                            "2020-01-01 10:00", "not a time"], FieldSpec("t", "timestamp"))
    assert values[:3] == [datetime(2020, 1, 1, 8, tzinfo=UTC),
                          datetime(2020, 1, 1, 10, 0, 0, 500000, tzinfo=UTC),
                          datetime(2020, 1, 1, 10, tzinfo=UTC)]
    assert errors[3] == "'not a time' is not an ISO-8601 timestamp"


def test_epoch_seconds_from_an_origin() -> None:
    spec = FieldSpec("t", "timestamp", unit="s", origin="2018-04-01")
    values, _ = parse([31, 86400], spec, dtype=pa.int64())
    assert values == [datetime(2018, 4, 1, 0, 0, 31, tzinfo=UTC), datetime(2018, 4, 2, tzinfo=UTC)]


def test_ids_from_float_columns_read_without_decimals() -> None:
    values, _ = parse([596.0, 2.5], FieldSpec("card_id", "string"), dtype=pa.float64())
    assert values == ["596", "2.5"]


def test_dict_text_with_semicolon_items() -> None:
    text = "{'model': 2020; 'device_score': 3; 'os': 'ANDROID'}"
    assert split_dict_text(text, ";") == {"model": "2020", "device_score": "3", "os": "ANDROID"}


def test_dict_text_keeps_separators_inside_quotes_and_reads_none() -> None:
    text = "{'ua': 'Mozilla; Linux'; 'ref': None; \"x\": 'a:b'}"
    assert split_dict_text(text, ";") == {"ua": "Mozilla; Linux", "ref": None, "x": "a:b"}


@pytest.mark.parametrize(("text", "reason"), [
    ("model: 2020", "is not a {key: value, ...} text"),
    ("{'model' 2020}", "has no ':'"),
    ("{'model': 'x}", "unclosed quote"),
])
def test_malformed_dict_text_says_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        split_dict_text(text, ";")


def test_prepare_strings_trims_nulls_and_repairs_mojibake() -> None:
    table = pa.table({"a": [" FÃ\u00adsica ", "N/A", "", "MÃ¼nchen", "ok"]})
    prepared = prepare_strings(table, OPTIONS)
    assert prepared.column("a").to_pylist() == ["Física", None, None, "München", "ok"]


def test_prepare_strings_can_keep_text_as_is() -> None:
    table = pa.table({"a": [" FÃ\u00adsica "]})
    prepared = prepare_strings(table, SourceOptions(repair_text=False, strip=False))
    assert prepared.column("a").to_pylist() == [" FÃ\u00adsica "]
