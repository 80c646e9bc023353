"""Reproduce the Fraud Detection Handbook's 15 engineered features with the offline engine.

    python examples/handbook/reproduce_features.py --data PATH/fraud-handbook-simulated
    python examples/handbook/reproduce_features.py --data DIR --workspace /tmp/hb   # keep it

Ingests ``transactions_raw.parquet`` with ``mapping.toml`` into a workspace (a temporary one
unless ``--workspace`` is given; an existing workspace is reused as it is), backfills the
``HANDBOOK`` feature set of ``features.py`` and compares every row (by ``TRANSACTION_ID`` =
``event_id``) and every column with ``handbook_features_2018-07-25_to_2018-08-14.parquet``.

Exits 0 when the only differences are the ones the data's SOURCE.md documents: the two
transactions of one card in the same second (ids 1240489 and 1240490), whose customer
features the handbook computes with an unstable order of ties.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraudops.core import Workspace
from fraudops.events import EventStore, ingest_file, load_mapping
from fraudops.features import FeatureSet, OfflineEngine

HERE = Path(__file__).resolve().parent
RAW = "transactions_raw.parquet"
GOLDEN = "handbook_features_2018-07-25_to_2018-08-14.parquet"
#: SOURCE.md: same-second transactions of one card, ordered differently by the handbook.
DOCUMENTED_TIES = {"1240489", "1240490"}
TOLERANCE = 1e-9


def handbook_features() -> FeatureSet:
    spec = importlib.util.spec_from_file_location("handbook_features", HERE / "features.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {HERE / 'features.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    features: FeatureSet = module.HANDBOOK
    return features


def prepare_store(data: Path, workspace_dir: Path) -> EventStore:
    """The workspace's event store, ingesting the raw file when the store is empty."""
    if (workspace_dir / "fraudops.toml").exists():
        workspace = Workspace.open(workspace_dir)
    else:
        workspace = Workspace.init(workspace_dir, name="handbook")
    store = EventStore(workspace.events_dir)
    if not store.files("transactions"):
        report = ingest_file(workspace, data / RAW, load_mapping(HERE / "mapping.toml"))
        print(f"ingested {report.accepted:,} transactions and {report.labels_added:,} labels"
              f" in {report.seconds:.1f} s")
    return store


def compare(ours: pa.Table, golden: pa.Table, names: list[str]) -> dict[str, list[str]]:
    """Per feature, the TRANSACTION_IDs whose values differ by more than the tolerance."""
    ids = pc.cast(golden.column("TRANSACTION_ID"), pa.string())
    index = pc.index_in(ids, ours.column("event_id"))
    if index.null_count:
        missing = pc.filter(ids, pc.is_null(index)).to_pylist()[:10]
        raise SystemExit(f"{index.null_count} golden rows have no backfilled row, e.g. {missing}")
    rows = ours.take(index)
    id_list = np.asarray(ids.to_pylist(), dtype=object)
    mismatches: dict[str, list[str]] = {}
    print(f"{'column':40s} {'mismatches':>10s} {'max abs diff':>14s}")
    for name in names:
        expected = golden.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        actual = rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        diff = np.abs(actual - expected)
        both_nan = np.isnan(actual) & np.isnan(expected)
        bad = ~both_nan & ~(diff <= TOLERANCE * np.maximum(1.0, np.abs(expected)))
        worst = float(np.nanmax(np.where(both_nan, 0.0, diff))) if len(diff) else 0.0
        print(f"{name:40s} {int(bad.sum()):>10d} {worst:>14.3g}")
        if bad.any():
            mismatches[name] = sorted(id_list[bad].tolist(), key=int)
    return mismatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FRAUDOPS_HANDBOOK_DATA"),
                        help="the fraud-handbook-simulated folder (or its transactions_raw.parquet)")
    parser.add_argument("--workspace", help="workspace to ingest into (default: a temporary one)")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set FRAUDOPS_HANDBOOK_DATA")
    data = Path(args.data)
    data = data.parent if data.is_file() else data
    features = handbook_features()
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare_store(data, Path(args.workspace or Path(tmp) / "ws"))
        golden = pq.read_table(data / GOLDEN)
        started = datetime.now(UTC)
        ours = OfflineEngine(store).backfill(features, tenants=["handbook"])
        seconds = (datetime.now(UTC) - started).total_seconds()
    print(f"backfilled {len(features.names)} features for {ours.num_rows:,} transactions"
          f" in {seconds:.1f} s; comparing {golden.num_rows:,} golden rows")
    mismatches = compare(ours, golden, features.names)
    ids = sorted({i for found in mismatches.values() for i in found}, key=int)
    print(f"mismatching TRANSACTION_IDs ({len(ids)}): {ids[:50]}")
    unexplained = {name: found for name, found in mismatches.items()
                   if not name.startswith("CUSTOMER_ID_") or set(found) - DOCUMENTED_TIES}
    if unexplained:
        print(f"FAIL: differences beyond the documented ties in {sorted(unexplained)}")
        return 1
    print("OK: every value matches, except the documented same-second tie rows"
          if mismatches else "OK: every value matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
