"""Ingestion of messy exports: every value parsed, every row accounted for, nothing twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from fraudops.core import InputError, MappingError, SchemaError, Workspace
from fraudops.events import EventStore, ingest_file, parse_mapping

NOW = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)

# A Spanish bank export: BOM, CRLF, ';' with decimal commas, d/m/Y dates with the hour apart,
# a dict-like device column with ';' items, mojibake, TRUE/FALSE, N/A, the label in the file
# and no event id.
MESSY_HEADER = "FECHA;HORA;IMPORTE;TARJETA;TIPO_PERSONA;ONLINE;DISPOSITIVO;FRAUDE"
MESSY_ROWS = [
    "5/01/2020;14;12,50;C1;FÃ\u00adsica;TRUE;\"{'model': 2020; 'device_score': 3; 'os': 'ANDROID'}\";0",
    "15/01/2020;9:30;1.234,56;C2;N/A;FALSE;;1",
    "6/01/2020;23:59:59;0,99;C1;Jurídica;false;\"{'model': 2018; 'device_score': 1; 'os': 'IOS'}\";",
    "32/01/2020;1;3;C3;x;TRUE;;0",
    "6/01/2020;2;abc;C4;;maybe;;",
    "6/01/2020;2;5;C5",
    "7/01/2020;25;5;C6;;TRUE;;0",
    "7/01/2020;8;7,5;C7;;TRUE;\"{'model': 2020; 'device_score': 'high'}\";0",
    "7/01/2020;8;;C8;;TRUE;;0",
    "8/01/2020;10;12,345;C9;;TRUE;;0",
    "5/01/2020;14;12,50;C1;FÃ\u00adsica;TRUE;\"{'model': 2020; 'device_score': 3; 'os': 'ANDROID'}\";0",
]
MESSY_MAPPING = {
    "source": {"delimiter": ";", "decimal": ",", "thousands": "."},
    "transaction": {
        "event_id": {"derive": True},
        "tenant": {"value": "acme"},
        "event_time": {"column": "FECHA", "format": "%d/%m/%Y", "hour_column": "HORA"},
        "amount": "IMPORTE",
        "card_id": "TARJETA",
    },
    "attributes": {
        "persona": "TIPO_PERSONA",
        "online": {"column": "ONLINE", "type": "bool"},
        "device": {"column": "DISPOSITIVO", "type": "dict",
                   "keys": {"model": "int", "device_score": "int", "os": "string"}},
    },
    "label": {"column": "FRAUDE"},
}


def write_messy_csv(path: Path) -> Path:
    text = "\r\n".join([MESSY_HEADER, *MESSY_ROWS]) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return path


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return write_messy_csv(tmp_path / "export.csv")


def test_messy_export_reconciles_exactly(workspace: Workspace, messy: Path) -> None:
    report = ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    assert (report.rows_read, report.accepted, report.quarantined, report.duplicates) == \
        (11, 4, 7, 0)
    assert report.reconciles


def test_messy_export_parses_every_value(workspace: Workspace, messy: Path) -> None:
    ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    rows = EventStore(workspace.events_dir).read_transactions().to_pylist()
    got = [(r["event_time"], r["amount_cents"], r["card_id"], r["persona"], r["online"],
            r["device_model"], r["device_device_score"], r["device_os"]) for r in rows]
    assert got == [
        (utc(2020, 1, 5, 14), 1250, "C1", "Física", True, 2020, 3, "ANDROID"),
        (utc(2020, 1, 5, 14), 1250, "C1", "Física", True, 2020, 3, "ANDROID"),
        (utc(2020, 1, 6, 23, 59, 59), 99, "C1", "Jurídica", False, 2018, 1, "IOS"),
        (utc(2020, 1, 15, 9, 30), 123456, "C2", None, False, None, None, None),
    ]
    assert all(r["tenant"] == "acme" for r in rows)


def test_identical_rows_in_one_file_get_distinct_stable_ids(workspace: Workspace,
                                                            messy: Path) -> None:
    ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    ids = EventStore(workspace.events_dir).read_transactions().column("event_id").to_pylist()
    assert len(set(ids)) == 4


def test_label_column_becomes_label_events(workspace: Workspace, messy: Path) -> None:
    ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    store = EventStore(workspace.events_dir)
    ids = store.read_transactions(["event_id", "card_id"])
    cards = dict(zip(ids.column("event_id").to_pylist(), ids.column("card_id").to_pylist(),
                     strict=True))
    labels = {(cards[r["event_id"]], r["is_fraud"], r["label_time"])
              for r in store.read_labels().to_pylist()}
    # the third row has an empty label: unlabelled, no label event
    assert labels == {("C1", False, NOW), ("C2", True, NOW)}


def test_second_ingest_of_the_same_file_adds_nothing(workspace: Workspace, messy: Path) -> None:
    mapping = parse_mapping(MESSY_MAPPING)
    ingest_file(workspace, messy, mapping, now=NOW)
    store = EventStore(workspace.events_dir)
    before = (store.read_transactions(), store.read_labels())
    again = ingest_file(workspace, messy, mapping, now=datetime(2021, 4, 1, tzinfo=UTC))
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 4, 7)
    assert again.labels_added == 0
    assert again.reconciles
    assert store.read_transactions().equals(before[0])
    assert store.read_labels().equals(before[1])


def test_quarantine_names_row_field_column_and_reason(workspace: Workspace, messy: Path) -> None:
    report = ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    assert report.quarantine_dir is not None
    problems = pcsv.read_csv(Path(report.quarantine_dir) / "problems.csv").to_pylist()
    found = {(p["row"], p["field"], p["column"], p["reason"]) for p in problems}
    assert found == {
        (4, "event_time", "FECHA", "'32/01/2020' does not match the format '%d/%m/%Y'"),
        (5, "amount_cents", "IMPORTE", "'abc' is not a number with decimal mark ','"),
        (5, "online", "ONLINE", "'maybe' is not one of the true values"
            " ['true', 't', 'yes', 'y', '1'] or false values ['false', 'f', 'no', 'n', '0']"),
        (6, "<record>", "", "expected 8 fields, got 4"),
        (7, "event_time", "HORA", "'25' is not an hour of day (H, HH:MM or HH:MM:SS)"),
        (8, "device_device_score", "DISPOSITIVO", "'high' is not a whole number"),
        (9, "amount_cents", "IMPORTE", "amount_cents is missing"),
        (10, "amount_cents", "IMPORTE", "'12,345' has more decimals than 1/100 of the"
             " currency unit"),
    }


def test_quarantined_rows_are_kept_verbatim_for_reingestion(workspace: Workspace,
                                                            messy: Path) -> None:
    report = ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    assert report.quarantine_dir is not None
    rows = pcsv.read_csv(Path(report.quarantine_dir) / "rows.csv",
                         parse_options=pcsv.ParseOptions(delimiter=";"),
                         convert_options=pcsv.ConvertOptions(strings_can_be_null=False,
                                                             column_types={"HORA": pa.string()}))
    assert rows.column("_row").to_pylist() == [4, 5, 7, 8, 9, 10]
    assert rows.column("IMPORTE").to_pylist() == ["3", "abc", "5", "7,5", "", "12,345"]


def test_log_records_every_batch(workspace: Workspace, messy: Path) -> None:
    ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    ingest_file(workspace, messy, parse_mapping(MESSY_MAPPING), now=NOW)
    lines = [json.loads(line) for line in workspace.ingest_log.read_text().splitlines()]
    assert [(x["accepted"], x["duplicates"], x["reconciles"]) for x in lines] == \
        [(4, 0, True), (0, 4, True)]


def _write_rows(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


SIMPLE = {
    "transaction": {"event_id": "id", "event_time": "time", "amount": "amount",
                    "card_id": "card"},
    "label": {"column": "fraud", "time": {"delay": "7d"}},
}


def test_same_id_with_other_values_is_quarantined_and_first_wins(workspace: Workspace,
                                                                  tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "x.csv", "id,time,amount,card,fraud",
                       ["a,2020-01-01 10:00:00,1.00,c1,0", "a,2020-01-01 10:00:00,2.00,c1,0",
                        "a,2020-01-01 10:00:00,1.00,c1,0"])
    report = ingest_file(workspace, path, parse_mapping(SIMPLE))
    assert (report.accepted, report.quarantined, report.duplicates) == (1, 1, 1)
    assert EventStore(workspace.events_dir).read_transactions().column(
        "amount_cents").to_pylist() == [100]


def test_changed_label_in_a_later_export_adds_a_label_event(workspace: Workspace,
                                                            tmp_path: Path) -> None:
    first = _write_rows(tmp_path / "a.csv", "id,time,amount,card,fraud",
                        ["a,2020-01-01 10:00:00,1.00,c1,0"])
    second = _write_rows(tmp_path / "b.csv", "id,time,amount,card,fraud",
                         ["a,2020-01-01 10:00:00,1.00,c1,1"])
    ingest_file(workspace, first, parse_mapping(SIMPLE), now=NOW)
    report = ingest_file(workspace, second, parse_mapping(SIMPLE), now=NOW)
    assert (report.accepted, report.duplicates, report.labels_added) == (0, 1, 1)
    labels = EventStore(workspace.events_dir).read_labels().to_pylist()
    # the correction was learned at the second ingestion, not at the delay rule's time
    assert [(x["is_fraud"], x["label_time"]) for x in labels] == [
        (False, utc(2020, 1, 8, 10)), (True, NOW)]


def test_jsonl_source_with_nested_object_and_broken_line(workspace: Workspace,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": 1, "ts": "2020-01-01T10:00:00+01:00", "amt": 10.5, "card": 7,
                    "meta": {"os": "IOS", "score": 0.5}, "vip": True}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": 2, "ts": "2020-01-01T10:00:00Z", "amt": 3, "card": "8", "vip": False}),
    ]) + "\n")
    mapping = parse_mapping({
        "transaction": {"event_id": "id", "event_time": "ts", "amount": "amt", "card_id": "card"},
        "attributes": {"meta": {"column": "meta", "type": "dict", "item_separator": ",",
                                "keys": {"os": "string", "score": "float"}},
                       "vip": {"column": "vip", "type": "bool"}},
    })
    report = ingest_file(workspace, path, mapping)
    assert (report.rows_read, report.accepted, report.quarantined) == (4, 2, 2)
    rows = EventStore(workspace.events_dir).read_transactions().to_pylist()
    assert [(r["event_id"], r["event_time"], r["amount_cents"], r["card_id"], r["meta_os"],
             r["meta_score"], r["vip"]) for r in rows] == [
        ("1", utc(2020, 1, 1, 9), 1050, "7", "IOS", 0.5, True),
        ("2", utc(2020, 1, 1, 10), 300, "8", None, None, False)]


def test_parquet_source_with_typed_columns_and_local_time(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table({
        "TRANSACTION_ID": pa.array([10, 11], pa.int64()),
        "TX_DATETIME": pa.array([datetime(2020, 3, 29, 1, 30), datetime(2020, 7, 1, 12)],
                                pa.timestamp("ns")),
        "TX_AMOUNT": [57.16, 0.1],
        "CUSTOMER_ID": pa.array([596.0, 2.0]),
        "TX_FRAUD": pa.array([0, 1], pa.int8()),
    }), path)
    mapping = parse_mapping({
        "source": {"timezone": "Europe/Madrid"},
        "transaction": {"event_id": "TRANSACTION_ID", "event_time": "TX_DATETIME",
                        "amount": "TX_AMOUNT", "customer_id": "CUSTOMER_ID"},
        "label": {"column": "TX_FRAUD", "time": {"delay": "0d"}},
    })
    report = ingest_file(workspace, path, mapping)
    assert report.accepted == 2
    rows = EventStore(workspace.events_dir).read_transactions().to_pylist()
    assert [(r["event_id"], r["event_time"], r["amount_cents"], r["customer_id"])
            for r in rows] == [("10", utc(2020, 3, 29, 0, 30), 5716, "596"),
                               ("11", utc(2020, 7, 1, 10), 10, "2")]
    labels = EventStore(workspace.events_dir).read_labels().to_pylist()
    assert [(x["event_id"], x["is_fraud"]) for x in labels] == [("10", False), ("11", True)]


def test_label_time_before_event_time_is_quarantined(workspace: Workspace,
                                                     tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "x.csv", "id,time,amount,fraud,cb",
                       ["a,2020-01-05 10:00:00,1.00,1,2020-01-09", "b,2020-01-05 10:00:00,1.00,1,"
                        "2020-01-01"])
    mapping = parse_mapping({"transaction": {"event_id": "id", "event_time": "time",
                                             "amount": "amount"},
                             "label": {"column": "fraud", "time": {"column": "cb"}}})
    report = ingest_file(workspace, path, mapping)
    assert (report.accepted, report.quarantined) == (1, 1)
    problems = pcsv.read_csv(Path(str(report.quarantine_dir)) / "problems.csv").to_pylist()
    assert [(p["row"], p["reason"]) for p in problems] == [(2, "label_time is before event_time")]


def test_unknown_source_column_is_a_mapping_error(workspace: Workspace, tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "x.csv", "id,time,amount", ["a,2020-01-01,1"])
    with pytest.raises(MappingError, match=r"column\(s\) \['card', 'fraud'\] are not in the file"):
        ingest_file(workspace, path, parse_mapping(SIMPLE))


def test_wrong_encoding_is_a_clear_input_error(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("id,time,amount,card,fraud\na,2020-01-01,1,Jos\xe9,0\n".encode("latin-1"))
    with pytest.raises(InputError, match="encoding"):
        ingest_file(workspace, path, parse_mapping(SIMPLE))


def test_declared_encoding_reads_latin1(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("id,time,amount,card,fraud\na,2020-01-01,1,Jos\xe9,0\n".encode("latin-1"))
    mapping = parse_mapping({**SIMPLE, "source": {"encoding": "latin-1"}})
    assert ingest_file(workspace, path, mapping).accepted == 1
    assert EventStore(workspace.events_dir).read_transactions().column(
        "card_id").to_pylist() == ["José"]


def test_attribute_cannot_change_type_between_batches(workspace: Workspace,
                                                      tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "x.csv", "id,time,amount,channel", ["a,2020-01-01,1,3"])
    base = {"transaction": {"event_id": "id", "event_time": "time", "amount": "amount"}}
    ingest_file(workspace, path, parse_mapping({**base, "attributes": {
        "channel": {"column": "channel", "type": "int"}}}))
    with pytest.raises(SchemaError, match="attribute 'channel' is stored as 'int'"):
        ingest_file(workspace, path, parse_mapping({**base, "attributes": {"channel": "channel"}}))


def test_missing_file_is_a_clear_input_error(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ingest_file(workspace, tmp_path / "nope.csv", parse_mapping(SIMPLE))
