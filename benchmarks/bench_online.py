"""Benchmark of the online feature engine per store, against a plain-Python reference.

    python benchmarks/bench_online.py --customers 1000 --terminals 2000 --days 45
    python benchmarks/bench_online.py --customers 5000 --terminals 10000 --days 60  # handbook size

What it measures:

* **fraudops**: the wall time of each ``OnlineEngine.process_one`` call (read the state of the
  event's entities from the store in one transaction, compute the handbook's 15 features as
  of the event, update, expire and write the state back) for ``MemoryStore``, ``SQLiteStore``
  (a file in a temporary directory, WAL; with the default ``synchronous=NORMAL`` and, as
  ``sqlite-off``, with ``OFF``) and ``RedisStore`` (``--redis-url``, a unique key prefix,
  deleted afterwards). The stream is simulated; label events are merged in by
  ``label_time`` (labels first at equal times) and applied with ``label_one``, not timed.
  Percentiles are over the events after ``--warmup-days`` (when every window is full).
* **reference**: the same 15 features written by hand in plain Python for exactly this
  feature set: a dict of deques per customer and per terminal and a dict of known labels,
  in process, no serialisation, no store. It is what a hand-written in-memory engine costs,
  and it checks the engine: both must agree on every event.

The per-entity rates are the handbook's for any population with two terminals per customer,
so a smaller population gives the handbook's state sizes in less time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.events import SimulationConfig, TenantProfile, simulate
from fraudops.features import (
    FeatureSet,
    MemoryStore,
    OnlineEngine,
    RedisStore,
    SQLiteStore,
    StoreSettings,
    load_feature_sets,
)

HANDBOOK_FEATURES = Path(__file__).resolve().parents[1] / "examples" / "handbook" / "features.py"
DAY = 86_400_000_000
HOUR = 3_600_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--terminals", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--warmup-days", type=int, default=37,
                        help="events before this day are processed but not measured")
    parser.add_argument("--stores", default="memory,sqlite,sqlite-off,redis",
                        help="sqlite-off: SQLiteStore with sqlite_synchronous='OFF' (no fsync)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def handbook_features() -> FeatureSet:
    return load_feature_sets(HANDBOOK_FEATURES)["handbook"]


def stream(args: argparse.Namespace) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Transactions and labels merged by time (labels first), times as int µs."""
    config = SimulationConfig(n_days=args.days, seed=args.seed, tenants=(TenantProfile(
        n_customers=args.customers, n_terminals=args.terminals),))
    simulation = simulate(config)
    tx = simulation.transactions.select(
        ["event_id", "event_time", "tenant", "amount_cents", "customer_id", "terminal_id"])
    tx = tx.set_column(1, "event_time", pc.cast(tx.column("event_time"), pa.int64()))
    labels = simulation.labels.select(["tenant", "event_id", "is_fraud", "label_time"])
    labels = labels.set_column(3, "label_time", pc.cast(labels.column("label_time"), pa.int64()))
    events = tx.to_pylist()
    last = events[-1]["event_time"]
    merged = [((e["event_time"], 1), "event", e) for e in events]
    merged += [((lab["label_time"], 0), "label", lab) for lab in labels.to_pylist()
               if lab["label_time"] <= last]
    merged.sort(key=lambda item: item[0])
    start = datetime.combine(config.start, datetime.min.time(), tzinfo=UTC)
    warm = (start + timedelta(days=args.warmup_days) - datetime(1970, 1, 1, tzinfo=UTC)) \
        // timedelta(microseconds=1)
    return [(kind, item) for _, kind, item in merged], warm


class HandbookReference:
    """The handbook's 15 features by hand: deques per customer and terminal, known labels."""

    def __init__(self) -> None:
        self.customers: dict[str, deque[tuple[int, int]]] = {}
        self.terminals: dict[str, deque[tuple[int, str]]] = {}
        self.fraud: dict[str, bool] = {}

    def label_one(self, label: dict[str, Any]) -> None:
        self.fraud[label["event_id"]] = bool(label["is_fraud"])

    def process_one(self, event: dict[str, Any]) -> dict[str, float | None]:
        t, cents = event["event_time"], event["amount_cents"]
        out: dict[str, float | None] = {}
        mine = self.customers.setdefault(event["customer_id"], deque())
        mine.append((t, cents))
        while mine[0][0] <= t - 30 * DAY:
            mine.popleft()
        for n in (1, 7, 30):
            amounts = [c for s, c in mine if s > t - n * DAY]
            out[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = float(len(amounts))
            out[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = sum(amounts) / (len(amounts) * 100)
        seen = self.terminals.setdefault(event["terminal_id"], deque())
        while seen and seen[0][0] <= t - 37 * DAY:
            seen.popleft()
        fraud = self.fraud
        for n in (1, 7, 30):
            ids = [i for s, i in seen if t - 7 * DAY - n * DAY < s <= t - 7 * DAY]
            out[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = float(len(ids))
            out[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = (
                sum(fraud.get(i, False) for i in ids) / len(ids) if ids else 0.0)
        seen.append((t, event["event_id"]))
        out["TX_AMOUNT"] = cents / 100
        out["TX_DURING_WEEKEND"] = 1.0 if (t // DAY + 3) % 7 >= 5 else 0.0
        out["TX_DURING_NIGHT"] = 1.0 if (t // HOUR) % 24 <= 6 else 0.0
        return out


def replay(process: Callable[[dict[str, Any]], dict[str, float | None]],
           label: Callable[[dict[str, Any]], Any], items: list[tuple[str, dict[str, Any]]],
           warm_us: int) -> tuple[list[float], list[dict[str, float | None]]]:
    clock = time.perf_counter_ns
    costs, outputs = [], []
    for kind, item in items:
        if kind == "label":
            label(item)
            continue
        began = clock()
        features = process(item)
        spent = clock() - began
        outputs.append(features)
        if item["event_time"] >= warm_us:
            costs.append(spent / 1000)
    return costs, outputs


def percentiles(costs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(costs, n=1000, method="inclusive")
    return q[499], q[989], q[998]


def same(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if (x is None) != (y is None):
            return False
        if x is not None and y is not None and abs(x - y) > 1e-9 * max(abs(x), abs(y), 1e-3):
            return False
    return True


def open_store(kind: str, args: argparse.Namespace, folder: str) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(Path(folder) / "state.db")
    if kind == "sqlite-off":
        return SQLiteStore(Path(folder) / "state.db",
                           settings=StoreSettings(sqlite_synchronous="OFF"))
    return RedisStore(args.redis_url, prefix=f"fraudops-bench:{uuid.uuid4().hex}:")


def drop_redis_keys(store: RedisStore) -> None:
    import redis

    client = redis.Redis.from_url(store.url)
    keys = list(client.scan_iter(match=store.prefix + "*", count=10_000))
    for i in range(0, len(keys), 10_000):
        client.delete(*keys[i:i + 10_000])
    client.close()


def main() -> None:
    args = parse_args()
    features = handbook_features()
    began = time.perf_counter()
    items, warm = stream(args)
    n_events = sum(kind == "event" for kind, _ in items)
    n_labels = len(items) - n_events
    print(f"stream: {n_events:,} transactions, {n_labels:,} labels over {args.days} days"
          f" ({args.customers:,} customers, {args.terminals:,} terminals);"
          f" simulated in {time.perf_counter() - began:.1f} s")
    print(f"features: {features.name!r}, {len(features.names)} features; measured after day"
          f" {args.warmup_days}")

    reference = HandbookReference()
    ref_costs, ref_out = replay(reference.process_one, reference.label_one, items, warm)
    ref = percentiles(ref_costs)
    rows: list[tuple[str, tuple[float, float, float], int | None]] = [
        ("reference (dict of deques, in process)", ref, None)]
    for kind in [k.strip() for k in args.stores.split(",") if k.strip()]:
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(kind, args, folder)
            try:
                engine = OnlineEngine(features, store)
                costs, outputs = replay(engine.process_one, engine.label_one, items, warm)
            finally:
                if isinstance(store, RedisStore):
                    drop_redis_keys(store)
                store.close()
        agreeing = sum(same(a, b) for a, b in zip(outputs, ref_out, strict=True))
        label = type(store).__name__ + (" (synchronous=OFF)" if kind == "sqlite-off" else "")
        rows.append((f"fraudops OnlineEngine + {label}", percentiles(costs), agreeing))
    print(f"\n{'per-event cost of process_one (µs)':<60}{'p50':>9}{'p99':>9}{'p99.9':>9}"
          f"{'p50 ×ref':>10}{'p99 ×ref':>10}  agrees with reference")
    for name, (p50, p99, p999), agreed in rows:
        ratio = f"{p50 / ref[0]:>10.1f}{p99 / ref[1]:>10.1f}"
        agreement = "" if agreed is None else f"  {agreed:,}/{n_events:,} events"
        print(f"{name:<60}{p50:>9.1f}{p99:>9.1f}{p999:>9.1f}{ratio}{agreement}")


if __name__ == "__main__":
    main()
