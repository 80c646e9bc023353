"""Mapping validation: every mistake fails before a row is read, naming the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraudops.core import MappingError
from fraudops.events import load_mapping, parse_mapping

BASE: dict[str, Any] = {"transaction": {"event_id": "id", "event_time": "t", "amount": "a"}}


def with_(**tables: Any) -> dict[str, Any]:
    return {**BASE, **tables}


def test_minimal_mapping_parses() -> None:
    mapping = parse_mapping(BASE)
    assert [f.name for f in mapping.fields] == ["event_id", "event_time", "amount"]
    assert mapping.source_columns == ("id", "t", "a")


@pytest.mark.parametrize(("raw", "message"), [
    ({"transaction": {"event_id": "id", "amount": "a"}}, "event_time is required"),
    ({"transaction": {"event_id": "id", "event_time": "t"}}, "exactly one of amount"),
    ({"transaction": {"event_time": "t", "amount": "a"}}, "event_id is required"),
    ({"transaction": {**BASE["transaction"], "amount_cents": "c"}}, "exactly one of amount"),
    ({"transaction": {**BASE["transaction"], "card": "c"}}, r"unknown key\(s\) \['card'\]"),
    ({**BASE, "sauce": {}}, r"unknown key\(s\) \['sauce'\]"),
    (with_(source={"delimiter": ";;"}), "delimiter = ';;': must be one character"),
    (with_(source={"format": "xlsx"}), "format = 'xlsx': must be one of"),
    (with_(source={"timezone": "Mars/Base"}), "not an IANA time zone"),
    (with_(source={"decimal": ",", "thousands": ","}), "decimal and thousands must differ"),
    (with_(attributes={"x": {"column": "x", "type": "money"}}), "type = 'money'"),
    (with_(attributes={"x": {"column": "x", "type": "amount"}}), "type = 'amount'"),
    (with_(attributes={"X-Y": "x"}), "lower snake case"),
    (with_(attributes={"card_id": "x"}), "reserved"),
    (with_(attributes={"x": {"column": "x", "value": 1}}), "exactly one of column"),
    (with_(attributes={"x": {"column": "x", "type": "dict", "keys": {"a": "blob"}}}),
     "keys.a = 'blob'"),
    (with_(attributes={"x": {"column": "x", "colour": "red"}}), r"unknown key\(s\) \['colour'\]"),
    (with_(label={"column": "f", "time": "yesterday"}), "time = 'yesterday'"),
    (with_(label={"column": "f", "time": {"delay": "soon"}}), "not a duration"),
    (with_(label={"time": "ingested"}), "column is required"),
    ({"transaction": {"event_id": {"derive": ["nope"]}, "event_time": "t", "amount": "a"}},
     r"\['nope'\] are not mapped fields"),
    ({"transaction": {**BASE["transaction"], "event_time": {"column": "t", "type": "int"}}},
     "type is always 'timestamp'"),
])
def test_invalid_mappings_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(raw)


def test_label_time_variants() -> None:
    assert parse_mapping(with_(label="f")).label.time == "ingested"  # type: ignore[union-attr]
    delayed = parse_mapping(with_(label={"column": "f", "time": {"delay": "30d"}})).label
    assert delayed is not None
    assert delayed.delay.days == 30
    by_column = parse_mapping(with_(label={"column": "f", "time": {"column": "cb"}})).label
    assert by_column is not None
    assert by_column.time_field is not None
    assert by_column.time_field.column == "cb"


def test_load_mapping_reports_toml_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[transaction\nevent_id = 'id'")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_mapping(path)


def test_load_mapping_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="no such file"):
        load_mapping(tmp_path / "nope.toml")


def test_example_mappings_in_the_docs_parse() -> None:
    root = Path(__file__).resolve().parents[4]
    examples = sorted((root / "examples").rglob("*.toml"))
    assert examples, "examples/ should hold mapping examples"
    for path in examples:
        if "mapping" in path.name:
            load_mapping(path)
