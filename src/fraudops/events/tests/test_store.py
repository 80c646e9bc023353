"""The event store: contracts enforced on write, day partitions, latest label wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from fraudops.core import SchemaError
from fraudops.events import UTC_TIME, EventStore


def txns(ids: list[str], times: list[datetime], **extra: list[object]) -> pa.Table:
    return pa.table({"event_id": ids, "event_time": pa.array(times, UTC_TIME),
                     "tenant": ["t"] * len(ids), "amount_cents": [100] * len(ids), **extra})


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2020, 1, day, hour, tzinfo=UTC)


def test_transactions_are_partitioned_by_utc_day(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a", "b", "c"], [at(2, 23), at(1), at(2)]), batch_id="b1")
    folders = [p.parent.name for p in store.files("transactions")]
    assert folders == ["date=2020-01-01", "date=2020-01-02"]
    assert store.read_transactions().column("event_id").to_pylist() == ["b", "c", "a"]


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a"], [at(1)]), batch_id="b1")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_reusing_a_batch_id_is_refused(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a"], [at(1)]), batch_id="b1")
    with pytest.raises(Exception, match="batch ids must be unique"):
        store.append_transactions(txns(["b"], [at(1)]), batch_id="b1")


@pytest.mark.parametrize(("table", "message"), [
    (pa.table({"event_id": ["a"], "tenant": ["t"], "amount_cents": [1]}),
     r"missing required column\(s\) \['event_time'\]"),
    (txns(["a"], [at(1)]).set_column(1, "event_time", pa.array([datetime(2020, 1, 1)])),
     "naive timestamps"),
    (txns([None], [at(1)]), "'event_id' has 1 null"),  # type: ignore[list-item]
    (txns(["a"], [at(1)], Channel=["web"]), "lower snake case"),
    (txns(["a"], [at(1)], tags=pa.array([[1]])), "not an attribute type"),
])
def test_contract_violations_are_refused(tmp_path: Path, table: pa.Table, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        EventStore(tmp_path).append_transactions(table, batch_id="b1")


def test_attributes_union_across_batches(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a"], [at(1)], os=["ios"]), batch_id="b1")
    store.append_transactions(txns(["b"], [at(2)], score=[0.5]), batch_id="b2")
    rows = store.read_transactions().to_pylist()
    assert [(r["os"], r["score"]) for r in rows] == [("ios", None), (None, 0.5)]
    assert store.attribute_types() == {"os": "string", "score": "float"}


def test_current_label_is_the_latest_and_fraud_wins_ties(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a", "b"], [at(1), at(1)]), batch_id="b1")
    labels = pa.table({
        "event_id": ["a", "a", "b", "b"], "tenant": ["t"] * 4,
        "is_fraud": [True, False, False, True],
        "label_time": pa.array([at(3), at(5), at(4), at(4)], UTC_TIME)})
    store.append_labels(labels, batch_id="b1")
    with store.connect() as con:
        current = con.sql("SELECT event_id, is_fraud FROM current_labels ORDER BY 1").fetchall()
    assert current == [("a", False), ("b", True)]


def test_summary_counts_per_tenant(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(txns(["a", "b"], [at(1), at(3)]), batch_id="b1")
    store.append_labels(pa.table({"event_id": ["a"], "tenant": ["t"], "is_fraud": [True],
                                  "label_time": pa.array([at(1) + timedelta(days=9)], UTC_TIME)}),
                        batch_id="b1")
    (summary,) = store.summary()
    assert (summary.tenant, summary.transactions, summary.days, summary.labelled_fraud) == \
        ("t", 2, 2, 1)


def test_empty_store_reads_as_empty_tables(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    assert store.read_transactions().num_rows == 0
    assert store.read_labels().num_rows == 0
    assert store.summary() == []
