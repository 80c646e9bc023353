"""Benchmark of the data profile against DuckDB's own SUMMARIZE of the same store, in one run.

    python benchmarks/bench_profile.py                    # a synthetic 1.75 M-row store
    python benchmarks/bench_profile.py --rows 500000
    python benchmarks/bench_profile.py --store WS/events  # an existing event store

What it measures:

* **fraudops**: the wall time of ``profile_events()`` plus ``write_profile()``, best of
  ``--repeat`` runs, and the peak memory of the process.
* **reference**: ``SUMMARIZE transactions`` on the same store: DuckDB's one-pass column
  summary (approximate distinct counts and quantiles, no labels, no AUC, IV, histograms, days
  or correlations). The ratio says what the label join and the exact figures cost.

Without ``--store`` a synthetic store is built in a temporary folder with
``EventStore.append_transactions`` / ``append_labels``: 3 tenants, 180 days, log-normal
amounts, Zipf-like card popularity, entity keys and attributes with nulls, fraud depending on
channel, amount, distance and compromised terminals, late and sometimes reversed labels.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from fraudops.events import EventStore, profile_events, write_profile


def synthetic_store(root: Path, rows: int, seed: int = 7) -> EventStore:
    """Write ``rows`` synthetic transactions (one batch per month) and their labels."""
    rng = np.random.default_rng(seed)
    day = rng.integers(0, 180, rows)
    hour_weights = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 9, 8, 8, 8, 8, 9, 9, 7, 5, 3, 2])
    hour = rng.choice(24, rows, p=hour_weights / hour_weights.sum())
    micros = day * 86_400_000_000 + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, rows)
    event_time = np.datetime64("2024-01-01T00:00:00", "us") + micros.astype("timedelta64[us]")
    tenant = rng.choice(np.array(["acme", "globex", "initech"]), rows, p=[0.6, 0.3, 0.1])
    popularity = rng.lognormal(0, 1.2, 60_000)
    card = rng.choice(60_000, rows, p=popularity / popularity.sum())
    terminal = rng.integers(0, 8_000, rows)
    channel = rng.choice(np.array(["pos", "ecom", "atm"]), rows, p=[0.55, 0.4, 0.05])
    amount = np.maximum(1, rng.lognormal(np.log(4_000), 1.0, rows)).astype(np.int64)
    distance = rng.exponential(30, rows)
    mcc = rng.choice(300, rows, p=rng.dirichlet(np.ones(300) * 0.3))
    logit = (-5.6 + 1.0 * (channel == "ecom") + 0.7 * np.log(amount / 4_000)
             + 1.5 * (distance > 120) + 0.8 * (mcc < 10) + 2.5 * ((terminal < 40) & (day > 100)))
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    event_id = np.char.add("e", np.arange(rows).astype(str))
    customer = np.char.add("u", (card // 2).astype(str))
    transactions = pa.table({
        "event_id": event_id,
        "event_time": pa.array(event_time, pa.timestamp("us", tz="UTC")),
        "tenant": tenant,
        "amount_cents": amount,
        "currency": rng.choice(np.array(["EUR", "USD", "GBP"]), rows, p=[0.7, 0.2, 0.1]),
        "card_id": np.char.add("c", card.astype(str)),
        "customer_id": customer,
        "terminal_id": np.char.add("t", terminal.astype(str)),
        "email": pa.array(np.char.add(customer, "@example.org"), mask=rng.random(rows) < 0.4),
        "device_id": pa.array(np.char.add("d", rng.integers(0, 200_000, rows).astype(str)),
                              mask=rng.random(rows) < 0.3),
        "channel": channel,
        "mcc": np.char.add("mcc", mcc.astype(str)),
        "card_present": channel != "ecom",
        "customer_age": pa.array(rng.integers(18, 90, rows), mask=rng.random(rows) < 0.05),
        "distance_km": pa.array(distance, mask=rng.random(rows) < 0.2),
    })
    day_us = 86_400_000_000
    frauds = np.flatnonzero(fraud)
    reviewed = np.flatnonzero(~fraud & (rng.random(rows) < 0.2))
    fraud_time = event_time[frauds] + (rng.exponential(10, len(frauds)) * day_us).astype(
        "timedelta64[us]")
    review_time = event_time[reviewed] + (rng.exponential(3, len(reviewed)) * day_us).astype(
        "timedelta64[us]")
    reversed_ = rng.random(len(frauds)) < 0.02  # chargebacks withdrawn five days later
    index = np.concatenate([frauds, reviewed, frauds[reversed_]])
    labels = pa.table({
        "event_id": event_id[index],
        "tenant": tenant[index],
        "is_fraud": np.r_[np.ones(len(frauds), bool), np.zeros(len(index) - len(frauds), bool)],
        "label_time": pa.array(np.concatenate([
            fraud_time, review_time, fraud_time[reversed_] + np.timedelta64(5 * day_us, "us")]),
            pa.timestamp("us", tz="UTC")),
        "source": np.r_[np.full(len(frauds), "chargeback"),
                        np.full(len(index) - len(frauds), "review")],
    })
    store = EventStore(root)
    months = event_time.astype("datetime64[M]")
    for month in np.unique(months):
        store.append_transactions(transactions.filter(pa.array(months == month)),
                                  batch_id=f"tx-{month}")
    store.append_labels(labels, batch_id="labels")
    return store


def best_of(repeat: int, run: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="an existing event store (WS/events)")
    parser.add_argument("--rows", type=int, default=1_750_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(args.store) if args.store else synthetic_store(Path(tmp) / "events",
                                                                          args.rows)
        out = Path(tmp) / "reports"
        ours = best_of(args.repeat, lambda: write_profile(profile_events(store), out))

        def summarize() -> None:
            with store.connect() as con:
                con.sql("SUMMARIZE transactions").fetchall()

        reference = best_of(args.repeat, summarize)
        profile = profile_events(store)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows {profile.totals.transactions:,}, columns {profile.totals.columns}")
    print(f"fraudops profile + write  {ours:6.2f} s   (process peak memory {peak:,.0f} MiB,"
          " building the synthetic store included)")
    print(f"reference SUMMARIZE       {reference:6.2f} s")
    print(f"ratio                     {ours / reference:6.1f}x")


if __name__ == "__main__":
    main()
