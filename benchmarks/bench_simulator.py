"""Benchmark of the transaction simulator against a plain-Python reference, in the same run.

    python benchmarks/bench_simulator.py --customers 5000 --terminals 10000 --days 183

What it measures:

* **fraudops**: the wall time of ``simulate()`` end to end (population, genuine transactions,
  scenarios S1-S3 (S4 with ``--drift``), labels, string columns, contract checks), best of
  ``--repeat`` runs; the runs must be byte-identical.
* **reference**: the handbook's per-customer daily loop written in plain Python (stdlib
  ``random``, one customer-day and one transaction at a time, rows kept as tuples with string
  ids), run on the first ``--reference-customers`` customers and extrapolated per row to the
  transactions fraudops produced. It covers *only* genuine transaction generation (no fraud,
  no labels, no Arrow tables), so the ratio understates the full-pipeline speed-up.

``--handbook PATH`` (or ``FRAUDOPS_HANDBOOK_DATA``) points at the handbook's
``transactions_raw.parquet`` to print its figures next to ours.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import resource
import time
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from fraudops.events import (
    DriftSpec,
    Simulation,
    SimulationConfig,
    TenantProfile,
    simulate,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of simulate(); the best time is reported, outputs compared")
    parser.add_argument("--drift", type=date.fromisoformat, default=None,
                        help="start S4 (account takeover) on this date, e.g. 2018-08-01")
    parser.add_argument("--reference-customers", type=int, default=100,
                        help="customers simulated by the plain-Python reference")
    parser.add_argument("--handbook", default=os.environ.get("FRAUDOPS_HANDBOOK_DATA"),
                        help="path of the handbook's transactions_raw.parquet, for comparison")
    return parser.parse_args()


def table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


class StageClock:
    """A progress callback that notes when each stage last reported."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.last[stage.split(": ")[-1]] = time.perf_counter() - self.began

    def breakdown(self, total: float) -> dict[str, float]:
        """Seconds per stage: population + genuine rows, fraud scenarios, labels + tables."""
        genuine, fraud = self.last["transactions"], self.last["fraud"]
        return {"population + genuine rows": genuine, "fraud scenarios": fraud - genuine,
                "labels + string columns + contract": total - fraud}


def run_fraudops(config: SimulationConfig,
                 repeat: int) -> tuple[Simulation, list[float], dict[str, float], bool]:
    times, digests, stages, simulation = [], [], {}, None
    for _ in range(repeat):
        clock = StageClock()
        simulation = simulate(config, progress=clock)
        times.append(time.perf_counter() - clock.began)
        if times[-1] == min(times):
            stages = clock.breakdown(times[-1])
        digests.append(hash(tuple(table_bytes(getattr(simulation, name))
                                  for name in ("transactions", "labels", "truth"))))
    assert simulation is not None
    return simulation, times, stages, len(set(digests)) == 1


def poisson(rate: float, rng: random.Random) -> int:
    """Knuth's method: the stdlib has no Poisson sampler."""
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def reference_rows_per_second(n_customers: int, n_terminals: int, n_days: int,
                              seed: int) -> tuple[int, float]:
    """The per-customer daily loop in plain Python; returns (rows, rows per second)."""
    rng = random.Random(seed)
    customers = [(rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(5, 100),
                  rng.uniform(0, 4)) for _ in range(n_customers)]
    terminals = np.array([(rng.uniform(0, 100), rng.uniform(0, 100))
                          for _ in range(n_terminals)])
    reach = cKDTree(terminals).query_ball_point([c[:2] for c in customers], r=5.0)
    rows: list[tuple[str, int, str, str, int]] = []
    began = time.perf_counter()
    for customer_id, (_, _, mean, rate) in enumerate(customers):
        available = reach[customer_id]
        if not available:
            continue
        for day in range(n_days):
            for _ in range(poisson(rate, rng)):
                second = int(rng.gauss(43_200, 20_000))
                if not 0 < second < 86_400:
                    continue
                amount = rng.gauss(mean, mean / 2)
                if amount < 0:
                    amount = rng.uniform(0, 2 * mean)
                terminal = rng.choice(available)
                rows.append((f"{len(rows):010d}", day * 86_400 + second, f"C{customer_id:04d}",
                             f"T{terminal:04d}", round(amount * 100)))
    elapsed = time.perf_counter() - began
    return len(rows), len(rows) / elapsed


def describe(simulation: Simulation) -> None:
    for summary in simulation.summary():
        by_type = ", ".join(f"{k} {v:,}" for k, v in summary.frauds_by_type.items())
        labels = simulation.labels.filter(pc.equal(simulation.labels.column("tenant"),
                                                   summary.tenant))
        sources = labels.column("source").value_counts().to_pylist()
        by_source = ", ".join(f"{s['values']} {s['counts']:,}" for s in sources)
        print(f"tenant {summary.tenant}: {summary.transactions:,} transactions")
        print(f"  tx/day:        {summary.tx_per_day_min:,} - {summary.tx_per_day_max:,}")
        print(f"  fraud (truth): {summary.frauds:,} = {summary.fraud_rate:.3%} ({by_type})")
        print(f"  labels:        {summary.labels:,} ({by_source}); never labelled "
              f"{summary.unlabelled_frauds:,} = {summary.unlabelled_frauds / summary.frauds:.1%};"
              f" dated after the period {summary.labels_after_period:,}")


def describe_handbook(path: str) -> None:
    table = pq.read_table(path, columns=["TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO"])
    days = np.bincount(table.column("TX_TIME_DAYS").to_numpy())
    scenario = np.bincount(table.column("TX_FRAUD_SCENARIO").to_numpy(), minlength=4)
    frauds = int(pc.sum(table.column("TX_FRAUD")).as_py())
    print(f"handbook data ({path}, {len(days)} days): {table.num_rows:,} transactions;"
          f" tx/day {days.min():,} - {days.max():,}; fraud {frauds / table.num_rows:.3%}"
          f" (S1 {scenario[1]:,}, S2 {scenario[2]:,}, S3 {scenario[3]:,})")


def main() -> None:
    args = parse_args()
    tenant = TenantProfile(n_customers=args.customers, n_terminals=args.terminals)
    config = SimulationConfig(n_days=args.days, tenants=(tenant,), seed=args.seed,
                              drift=DriftSpec(start=args.drift) if args.drift else None)
    print(f"simulate(): {args.customers:,} customers, {args.terminals:,} terminals,"
          f" {args.days} days, seed {args.seed}, drift {args.drift or 'none'}")
    simulation, times, stages, identical = run_fraudops(config, args.repeat)
    rows = simulation.transactions.num_rows
    best = min(times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall time:       {', '.join(f'{t:.2f} s' for t in times)} (best {best:.2f} s);"
          f" {rows / best:,.0f} rows/s; peak RSS of this process {peak_mb:,.0f} MB")
    print("stages (best run): " + "; ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    print(f"same seed, same bytes across {args.repeat} runs: {'yes' if identical else 'NO'}")
    describe(simulation)

    ref_rows, ref_rate = reference_rows_per_second(
        min(args.reference_customers, args.customers), args.terminals, args.days, args.seed)
    extrapolated = rows / ref_rate
    print(f"reference (plain-Python per-customer daily loop, genuine rows only):"
          f" {ref_rows:,} rows from {args.reference_customers} customers at {ref_rate:,.0f}"
          f" rows/s -> {extrapolated:.1f} s extrapolated to {rows:,} rows")
    genuine = stages["population + genuine rows"]
    print(f"ratio:           genuine rows, like for like: {extrapolated / genuine:.1f}x faster;"
          f" fraudops end to end vs the reference's genuine rows alone:"
          f" {extrapolated / best:.1f}x faster")
    if args.handbook:
        describe_handbook(args.handbook)


if __name__ == "__main__":
    main()
