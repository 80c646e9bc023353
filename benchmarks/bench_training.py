"""Benchmark of training and single-row scoring on a handbook-sized week.

    python benchmarks/bench_training.py --data ../shared/datasets/fraud-handbook-simulated/\
handbook_features_2018-07-25_to_2018-08-14.parquet
    python benchmarks/bench_training.py          # synthetic data of the same shape

What it measures, in one run:

* **fraudops LightGBM**: ``FraudTrainer().fit(train_week, valid=next_week)`` with the default
  parameters (early stopping on the validation week's average precision, isotonic
  calibration), wall time, best round, and AUC / AP on the third week (the whole week: this is
  a sanity check, not the handbook protocol, which also removes known-compromised cards).
* **fraudops logistic**: the baseline, same split.
* **reference**: scikit-learn's ``HistGradientBoostingClassifier`` with the same number of
  rounds LightGBM kept, learning rate, leaves and minimum leaf size, no early stopping. The
  ratio fraudops / reference is the figure to track.
* **predict_one**: p50 / p99 of ``TrainedModel.predict_one`` (calibrated) over the test rows,
  against ``Booster.predict`` on a one-row array with one thread.

With ``--data``: the 15 handbook features of the golden file; train = 2018-07-25 … 07-31,
valid = 08-01 … 08-07, test = 08-08 … 08-14. Without it: synthetic rows of the same shape.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fraudops.models._dataset import Dataset
from fraudops.models._metrics import average_precision, roc_auc
from fraudops.models._trainer import FraudTrainer

FEATURES = (
    "TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW", "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW", "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW", "TERMINAL_ID_RISK_30DAY_WINDOW",
)
START = np.datetime64("2018-07-25T00:00", "us")
WEEK = np.timedelta64(7, "D")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the handbook golden features Parquet file")
    parser.add_argument("--rows-per-week", type=int, default=67_000, help="synthetic data only")
    parser.add_argument("--repeat", type=int, default=3, help="training runs; the median is reported")
    parser.add_argument("--num-threads", type=int, default=None)
    return parser.parse_args()


def load_handbook(path: Path) -> Dataset:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TX_AMOUNT",
                                         "TX_FRAUD", *FEATURES[1:]])
    table = table.sort_by([("TX_DATETIME", "ascending"), ("TRANSACTION_ID", "ascending")])
    n = table.num_rows
    x = np.column_stack([table.column(f).to_numpy().astype(np.float64) for f in FEATURES])
    return Dataset(
        X=x, feature_names=FEATURES, y=table.column("TX_FRAUD").to_numpy().astype(np.int8),
        event_id=table.column("TRANSACTION_ID").to_numpy().astype(str).astype(object),
        tenant=np.full(n, "handbook", dtype=object),
        event_time=table.column("TX_DATETIME").to_numpy().astype("datetime64[us]"),
        card_id=table.column("CUSTOMER_ID").to_numpy().astype(str).astype(object),
        amount=table.column("TX_AMOUNT").to_numpy().astype(np.float64),
    )


def synthetic(rows_per_week: int, seed: int = 0) -> Dataset:
    """Three weeks, 15 features, ~0.9 % fraud from a non-linear signal on four of them."""
    rng = np.random.default_rng(seed)
    n = 3 * rows_per_week
    x = rng.normal(size=(n, len(FEATURES)))
    logit = -6.2 + 1.8 * x[:, 0] * x[:, 1] + 1.5 * (x[:, 10] > 1.2) + 0.8 * x[:, 12]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    offsets = np.sort(rng.integers(0, 21 * 86_400_000_000, size=n)).astype("timedelta64[us]")
    return Dataset(X=x, feature_names=FEATURES, y=y, event_id=np.arange(n).astype(str).astype(object),
                   tenant=np.full(n, "synthetic", dtype=object), event_time=START + offsets,
                   card_id=(np.arange(n) % 5000).astype(str).astype(object), amount=np.abs(x[:, 0]) * 50)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def percentiles(fn: Callable[[list[float]], object], rows: list[list[float]]) -> tuple[float, float]:
    for row in rows[:500]:
        fn(row)
    samples = []
    for row in rows:
        t0 = time.perf_counter_ns()
        fn(row)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return samples[len(samples) // 2] / 1e3, samples[int(len(samples) * 0.99)] / 1e3


def main() -> None:
    args = parse_args()
    data = load_handbook(args.data) if args.data else synthetic(args.rows_per_week)
    t = data.event_time
    train = data.subset(t < START + WEEK)
    valid = data.subset((t >= START + WEEK) & (t < START + 2 * WEEK))
    test = data.subset((t >= START + 2 * WEEK) & (t < START + 3 * WEEK))
    source = f"handbook {args.data.name}" if args.data else "synthetic"
    print(f"data: {source}; train {len(train):,} rows ({int(train.y.sum())} frauds), "
          f"valid {len(valid):,}, test {len(test):,}; {len(FEATURES)} features")

    lgbm_s, trainer = timed(lambda: FraudTrainer(num_threads=args.num_threads).fit(train, valid), args.repeat)
    assert isinstance(trainer, FraudTrainer)
    model = trainer.to_model(feature_set_name="handbook", definition_hash="bench")
    rounds = trainer.best_iteration_
    logit_s, logit = timed(lambda: FraudTrainer(model="logistic").fit(train, valid), args.repeat)
    assert isinstance(logit, FraudTrainer)
    logit_model = logit.to_model(feature_set_name="handbook", definition_hash="bench")

    from sklearn.ensemble import HistGradientBoostingClassifier

    def reference() -> object:
        return HistGradientBoostingClassifier(
            max_iter=rounds + trainer.early_stopping_rounds, learning_rate=0.05, max_leaf_nodes=31,
            min_samples_leaf=100, l2_regularization=1.0, early_stopping=False, random_state=0,
        ).fit(train.X, train.y)

    ref_s, ref = timed(reference, args.repeat)

    def report(name: str, seconds: float, p: np.ndarray) -> None:
        auc, ap = roc_auc(test.y, p), average_precision(test.y, p)
        print(f"{name:<34} {seconds:7.2f} s   test AUC {auc:.3f}  AP {ap:.3f}")

    print(f"\ntraining on one week (median of {args.repeat})")
    report(f"fraudops lightgbm ({rounds}+{trainer.early_stopping_rounds} rounds)", lgbm_s,
           model.predict_proba(test.X))
    report("fraudops logistic baseline", logit_s, logit_model.predict_proba(test.X))
    report(f"reference sklearn HGB ({rounds + trainer.early_stopping_rounds} rounds)", ref_s,
           ref.predict_proba(test.X)[:, 1])  # type: ignore[attr-defined]
    print(f"ratio fraudops lightgbm / reference: {lgbm_s / ref_s:.2f}")
    print(f"validation: {trainer.validation_metrics_}")

    rows = [list(map(float, r)) for r in test.X[:20_000]]
    booster = trainer.booster_
    assert booster is not None
    print("\nsingle-row scoring (µs)            p50      p99")
    for name, fn in (
        ("TrainedModel.predict_one lightgbm", model.predict_one),
        ("Booster.predict 1-row num_threads=1",
         lambda r: booster.predict(np.asarray([r]), num_threads=1)),
        ("TrainedModel.predict_one logistic", logit_model.predict_one),
    ):
        p50, p99 = percentiles(fn, rows)
        print(f"{name:<34} {p50:7.1f}  {p99:7.1f}")


if __name__ == "__main__":
    main()
