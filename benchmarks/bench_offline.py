"""Benchmark of the offline engine on the handbook's 15 features, against two references.

    python benchmarks/bench_offline.py --data PATH/fraud-handbook-simulated
    python benchmarks/bench_offline.py --data PATH --workspace /tmp/hb   # reuse an ingested store

What it measures, best of ``--repeat`` runs, interleaved so that a busy machine slows every
contender alike (the ingestion into the workspace is not timed):

* **fraudops**: ``OfflineEngine.backfill`` of ``HANDBOOK`` (examples/handbook/features.py),
  exact point-in-time semantics, rows ordered by ``(tenant, event_time, event_id)``.
* **hand-written DuckDB**: one query over the same store as a person would write it, plain
  RANGE windows (ties at the same microsecond are not cut at the current row), labels from
  the store's ``current_labels`` view, ordered the same way, also without the final ORDER BY.
* **pandas, vectorised**: the same features with one ``groupby(...).rolling('nD', on=...)``
  per window over the whole frame — the fastest pandas formulation we know.
* **pandas, per entity**: the handbook's own formulation, a function applied to each
  customer's and each terminal's transactions (``groupby(...).apply``) that computes its
  rolling windows — how fraud teams usually write it. (Written from the handbook's
  description; no code copied.)

pandas is not a fraudops dependency: install it into the environment for this benchmark
(``pip install pandas``); without it the pandas parts are skipped.

Targets (DESIGN.md): within 1.5× of the hand-written query, at least 20× faster than pandas.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fraudops.events import EventStore
from fraudops.features import OfflineEngine

ROOT = Path(__file__).resolve().parents[1]
DAY_US = 86_400_000_000
WINDOWS = (1, 7, 30)
DELAY = 7


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_written_sql(order: bool) -> str:
    """The 15 features as one plain DuckDB query (RANGE windows, as a person writes it)."""
    customer = ",\n  ".join(
        f"count(*) OVER (PARTITION BY customer_id ORDER BY t RANGE BETWEEN {n * DAY_US - 1}"
        f" PRECEDING AND CURRENT ROW) AS CUSTOMER_ID_NB_TX_{n}DAY_WINDOW,\n"
        f"  avg(amount) OVER (PARTITION BY customer_id ORDER BY t RANGE BETWEEN {n * DAY_US - 1}"
        f" PRECEDING AND CURRENT ROW) AS CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW" for n in WINDOWS)
    terminal = ",\n  ".join(
        f"count(*) OVER w{n} AS TERMINAL_ID_NB_TX_{n}DAY_WINDOW,\n"
        f"  coalesce(sum(fraud) OVER w{n} / nullif(count(*) OVER w{n}, 0), 0)"
        f" AS TERMINAL_ID_RISK_{n}DAY_WINDOW" for n in WINDOWS)
    windows = ", ".join(
        f"w{n} AS (PARTITION BY terminal_id ORDER BY t RANGE BETWEEN {(n + DELAY) * DAY_US - 1}"
        f" PRECEDING AND {DELAY * DAY_US} PRECEDING)" for n in WINDOWS)
    return f"""
WITH tx AS (
  SELECT t.tenant, t.event_id, t.event_time, t.customer_id, t.terminal_id,
         t.amount_cents / 100 AS amount, epoch_us(t.event_time) AS t,
         CAST(coalesce(l.is_fraud, false) AS INTEGER) AS fraud
  FROM transactions t LEFT JOIN current_labels l USING (tenant, event_id))
SELECT tenant, event_id, event_time, amount AS TX_AMOUNT,
  CAST(isodow(event_time) >= 6 AS INTEGER) AS TX_DURING_WEEKEND,
  CAST(hour(event_time) <= 6 AS INTEGER) AS TX_DURING_NIGHT,
  {customer},
  {terminal}
FROM tx WINDOW {windows}
{"ORDER BY tenant, event_time, event_id" if order else ""}
"""


def pandas_features(store: EventStore) -> Any:
    """The 15 features with pandas rolling windows (labels: the current ones, as the handbook)."""
    import pandas as pd

    with store.connect() as con:
        tx = con.sql("SELECT t.event_id, t.event_time, t.customer_id, t.terminal_id,"
                     " t.amount_cents / 100 AS amount,"
                     " CAST(coalesce(l.is_fraud, false) AS INTEGER) AS fraud"
                     " FROM transactions t LEFT JOIN current_labels l USING (tenant, event_id)"
                     ).df()
    out = pd.DataFrame({"event_id": tx.event_id, "TX_AMOUNT": tx.amount,
                        "TX_DURING_WEEKEND": (tx.event_time.dt.day_of_week >= 5).astype(int),
                        "TX_DURING_NIGHT": (tx.event_time.dt.hour <= 6).astype(int)})

    def rolling(key: str, days: int, column: str, how: str) -> Any:
        """Per ``key``, ``how`` of ``column`` over (t - days, t], aligned with ``tx``."""
        ordered = tx.sort_values([key, "event_time", "event_id"], kind="stable")
        rolled = ordered.groupby(key, sort=False).rolling(f"{days}D", on="event_time")[column]
        values = getattr(rolled, how)().to_numpy()
        return pd.Series(values, index=ordered.index).reindex(tx.index)

    for n in WINDOWS:
        out[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = rolling("customer_id", n, "amount", "count")
        out[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = rolling("customer_id", n, "amount", "mean")
    recent_count = rolling("terminal_id", DELAY, "fraud", "count")
    recent_fraud = rolling("terminal_id", DELAY, "fraud", "sum")
    for n in WINDOWS:
        count = rolling("terminal_id", n + DELAY, "fraud", "count") - recent_count
        fraud = rolling("terminal_id", n + DELAY, "fraud", "sum") - recent_fraud
        out[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = count
        out[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = (fraud / count.where(count > 0)).fillna(0)
    return out


def pandas_per_entity(store: EventStore) -> Any:
    """The 15 features the handbook's way: a function applied per customer and per terminal."""
    with store.connect() as con:
        tx = con.sql("SELECT t.event_id, t.event_time, t.customer_id, t.terminal_id,"
                     " t.amount_cents / 100 AS amount,"
                     " CAST(coalesce(l.is_fraud, false) AS INTEGER) AS fraud"
                     " FROM transactions t LEFT JOIN current_labels l USING (tenant, event_id)"
                     " ORDER BY t.event_time, t.event_id").df()
    tx["weekend"] = (tx.event_time.dt.day_of_week >= 5).astype(int)
    tx["night"] = (tx.event_time.dt.hour <= 6).astype(int)

    def customer(frame: Any) -> Any:
        frame = frame.set_index("event_time")
        for n in WINDOWS:
            window = frame.amount.rolling(f"{n}D")
            count, total = window.count(), window.sum()
            frame[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = count
            frame[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = total / count
        return frame.reset_index()

    def terminal(frame: Any) -> Any:
        frame = frame.set_index("event_time")
        recent_count = frame.fraud.rolling(f"{DELAY}D").count()
        recent_fraud = frame.fraud.rolling(f"{DELAY}D").sum()
        for n in WINDOWS:
            count = frame.fraud.rolling(f"{n + DELAY}D").count() - recent_count
            fraud = frame.fraud.rolling(f"{n + DELAY}D").sum() - recent_fraud
            frame[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = count
            frame[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = (fraud / count.where(count > 0)).fillna(0)
        return frame.reset_index()

    tx = tx.groupby("customer_id", group_keys=False).apply(customer)
    tx = tx.sort_values(["event_time", "event_id"])
    return tx.groupby("terminal_id", group_keys=False).apply(terminal)


def best_of(repeat: int, contenders: dict[str, Callable[[], Any]]) -> dict[str, float]:
    times: dict[str, float] = {name: float("inf") for name in contenders}
    for _ in range(repeat):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            times[name] = min(times[name], time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FRAUDOPS_HANDBOOK_DATA"),
                        help="the fraud-handbook-simulated folder (or its transactions_raw.parquet)")
    parser.add_argument("--workspace", help="workspace to ingest into (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set FRAUDOPS_HANDBOOK_DATA")
    data = Path(args.data)
    data = data.parent if data.is_file() else data
    reproduce = _load(ROOT / "examples" / "handbook" / "reproduce_features.py", "reproduce")
    features = reproduce.handbook_features()
    with tempfile.TemporaryDirectory() as tmp:
        store = reproduce.prepare_store(data, Path(args.workspace or Path(tmp) / "ws"))
        engine = OfflineEngine(store, threads=args.threads)

        def hand(order: bool) -> Callable[[], Any]:
            def run() -> Any:
                with store.connect() as con:
                    if args.threads:
                        con.execute(f"SET threads = {args.threads}")
                    return con.sql(hand_written_sql(order)).to_arrow_table()
            return run

        rows = engine.backfill(features).num_rows
        times = best_of(args.repeat, {
            "fraudops": lambda: engine.backfill(features),
            "hand-written DuckDB (ordered)": hand(True),
            "hand-written DuckDB (unordered)": hand(False),
        })
        try:
            import pandas  # noqa: F401
        except ImportError:
            print("pandas is not installed: skipping the pandas reference"
                  " (pip install pandas into this environment to measure it)")
        else:
            times.update(best_of(1, {
                "pandas, vectorised rolling": lambda: pandas_features(store),
                "pandas, per entity (handbook)": lambda: pandas_per_entity(store)}))
    print(f"offline backfill of {len(features.names)} handbook features over {rows:,} events,"
          f" best of {args.repeat} (pandas: 1 run)")
    ours = times["fraudops"]
    for name, seconds in times.items():
        ratio = "" if name == "fraudops" else f"   fraudops / this = {ours / seconds:5.2f}" \
            if not name.startswith("pandas") else f"   this / fraudops = {seconds / ours:5.1f}"
        print(f"  {name:34s} {seconds:7.2f} s{ratio}")
    print("targets: fraudops within 1.5x of the hand-written query; >= 20x faster than pandas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
