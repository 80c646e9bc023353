"""Prove online/offline parity of the handbook's features on the handbook's own data.

    python examples/handbook/reproduce_parity.py --data PATH/fraud-handbook-simulated
    python examples/handbook/reproduce_parity.py --data DIR --store sqlite --store redis

Ingests ``transactions_raw.parquet`` (as ``reproduce_features.py`` does), backfills the
``HANDBOOK`` feature set offline, replays all 1.5 M transactions and their label events through
the online engine on each state store asked for, and compares every value. Exits 1 on any
mismatch, missing or extra value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_features import handbook_features, prepare_store

from fraudops.features import (
    MemoryStore,
    OnlineEngine,
    RedisStore,
    SQLiteStore,
    StateStore,
    check_parity,
)


def state_store(kind: str, folder: Path) -> StateStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(folder / f"state-{uuid.uuid4().hex}.sqlite")
    return RedisStore(prefix=f"fraudops:handbook-parity:{uuid.uuid4().hex}:")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FRAUDOPS_HANDBOOK_DATA"),
                        help="folder of the handbook data set (or its transactions_raw.parquet)")
    parser.add_argument("--workspace", help="workspace to ingest into (default: a temporary one)")
    parser.add_argument("--store", action="append", choices=["memory", "sqlite", "redis"],
                        help="online state store(s) to check (default: memory)")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data is required (or set FRAUDOPS_HANDBOOK_DATA)")
    data = Path(args.data)
    data = data if data.is_dir() else data.parent
    features = handbook_features()
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare_store(data, Path(args.workspace or Path(tmp) / "ws"))
        ok = True
        for kind in args.store or ["memory"]:
            state = state_store(kind, Path(tmp))
            try:
                report = check_parity(store, features, lambda s=state: OnlineEngine(features, s),
                                      state_store=kind)
            finally:
                if isinstance(state, RedisStore):
                    state.clear()
                state.close()
            wrong = [f for f in report.features if not f.ok]
            print(f"{kind}: {report.transactions:,} transactions, {report.labels:,} label events,"
                  f" {len(report.features)} features: "
                  f"{'PARITY' if report.ok else 'MISMATCH'} in {report.seconds:.0f} s")
            for feature in wrong:
                print(f"  {feature.name}: {feature.mismatches} mismatches,"
                      f" {feature.missing_online} missing, {feature.extra_online} extra,"
                      f" max diff {feature.max_abs_diff:.3g}; e.g. {feature.examples[:2]}")
            ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
