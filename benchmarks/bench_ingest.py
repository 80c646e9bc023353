"""Benchmark of ingestion against the bare cost of reading the same file, in one run.

    python benchmarks/bench_ingest.py --data PATH/transactions_raw.parquet
    python benchmarks/bench_ingest.py                 # a simulated handbook-sized export instead

What it measures, best of ``--repeat`` runs, each into a fresh workspace:

* **fraudops**: ``ingest_file`` with the handbook mapping (or the simulator's mapping):
  reading, parsing and validating every field, deriving label events, de-duplicating against
  the store, writing day partitions and the report.
* **reference**: ``pyarrow.parquet.read_table`` of the same file plus one ``write_table`` of
  it, i.e. the I/O any ingestion must do. The ratio is what validation and bookkeeping cost.
* **re-ingest**: the same file again into the filled workspace (every row a duplicate).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from fraudops.core import Workspace
from fraudops.events import (
    SimulationConfig,
    export_simulation,
    ingest_file,
    load_mapping,
    simulate,
)

ROOT = Path(__file__).resolve().parents[1]


def _source(data: str | None, folder: Path) -> tuple[Path, Path]:
    if data:
        return Path(data), ROOT / "examples" / "handbook" / "mapping.toml"
    export = folder / "simulated.parquet"
    mapping = export_simulation(simulate(SimulationConfig()), export)
    return export, mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FRAUDOPS_HANDBOOK_RAW"),
                        help="transactions_raw.parquet of the handbook (default: simulate)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source, mapping_path = _source(args.data, folder)
        mapping = load_mapping(mapping_path)
        reference, ours, again = [], [], []
        rows = 0
        for i in range(args.repeat):
            started = time.perf_counter()
            table = pq.read_table(source)
            pq.write_table(table, folder / f"copy-{i}.parquet", compression="zstd")
            reference.append(time.perf_counter() - started)
            ws = Workspace.init(folder / f"ws-{i}")
            started = time.perf_counter()
            report = ingest_file(ws, source, mapping)
            ours.append(time.perf_counter() - started)
            if not report.reconciles or report.quarantined:
                raise SystemExit(f"ingestion did not accept every row: {report}")
            rows = report.rows_read
            started = time.perf_counter()
            repeat = ingest_file(ws, source, mapping)
            again.append(time.perf_counter() - started)
            if repeat.duplicates != rows:
                raise SystemExit(f"re-ingestion was not all duplicates: {repeat}")
    best_ref, best, best_again = min(reference), min(ours), min(again)
    print(f"source: {source.name} ({rows:,} rows)")
    print(f"reference (read + write Parquet): {best_ref:6.2f} s")
    print(f"fraudops ingest:                  {best:6.2f} s  {rows / best:>12,.0f} rows/s"
          f"  ratio {best / best_ref:5.1f}x the reference")
    print(f"re-ingest (all duplicates):       {best_again:6.2f} s  {rows / best_again:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
