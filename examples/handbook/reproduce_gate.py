"""The release gate's acceptance (issue 5) on the handbook data, as a script that checks itself.

    python examples/handbook/reproduce_gate.py --data PATH/fraud-handbook-simulated --out DIR
    python examples/handbook/reproduce_gate.py --data PATH --out DIR --workspace /tmp/hb  # reuse

The gate runs at ``as_of`` = the end of 2018-09-04 (the last day): its window is 2018-08-22 …
08-29 (the 7 label-matured days ending 7 days before as_of), its backtest the 4 weeks ending
08-29. Every model is trained with ``fraudops.models`` on features from the offline engine,
with the labels as known when it is trained (see ``_gate_cases.py``), LightGBM on 1 thread.

Cases on the handbook data (each gated with ``run_gate``, default ``GateConfig``):

1. ``live``: logistic regression on the 15 ``HANDBOOK`` features, trained on the 4 weeks that
   end 7 days before the gate window (2018-07-18 … 08-15, labels as of 08-22).
2. ``candidate-lightgbm``: LightGBM on the ``DEFAULT`` features, same period → must PASS.
3. ``candidate-shuffled``: as 2 on shuffled labels → must FAIL, the ``pr_auc`` check among
   the failures.
4. ``candidate-stale``: as 2 on the 4 weeks ending two months earlier (… 2018-06-15) → must
   FAIL the backtest or a drift check (``score_psi``, ``action_drift``, ``training_age``).
5. ``noise``: as 3 with another permutation, gated against the base-rate baseline
   (``live=None``) → must FAIL: the gate never promotes noise.

The handbook's simulator is stationary (no new fraud pattern), so a 2-month-old model may be as
good as a fresh one there: only its data's age tells (``training_age``). The same stale case is
therefore also run on a simulated store where S4 (account takeover) starts between the stale
model's training and the gate window (``drift-*`` cases), where the drift is real: the stale
model must fail there too, and the report says by which check.

Writes ``DIR/<case>/gate.json``, ``gate.html`` and ``score_diffs.csv``, and ``DIR/summary.md``;
prints the summary table; exits 1 when any verdict differs from its expectation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling modules of this example

from _gate_cases import Timeline, TrainingSpec, merged_feature_set, train  # noqa: E402
from reproduce import load_feature_sets  # noqa: E402
from reproduce_features import prepare_store  # noqa: E402

from fraudops.core import Workspace  # noqa: E402
from fraudops.events import (  # noqa: E402
    DriftSpec,
    EventStore,
    SimulationConfig,
    simulate,
    write_simulation,
)
from fraudops.features import FeatureSet, OfflineEngine  # noqa: E402
from fraudops.models import TrainedModel  # noqa: E402
from fraudops.release import GateConfig, GateReport, run_gate, write_gate_report  # noqa: E402

#: The end of 2018-09-04, the handbook's last day.
HANDBOOK_AS_OF = datetime(2018, 9, 5, tzinfo=UTC)
STALE_BY = timedelta(days=61)  # "two months earlier"
#: The drift store: 150 simulated days from 2018-04-01; S4 starts between the stale model's
#: training (… 06-08, labels as of 06-15) and the gate window (08-15 … 08-22).
DRIFT_DAYS = 150
DRIFT_START = date(2018, 7, 1)
#: A large account-takeover campaign: ~140 S4 frauds a day, about twice the S1–S3 frauds.
DRIFT = DriftSpec(start=DRIFT_START, takeovers_per_day=10.0, fraud_tx_per_day=2.0)
DRIFT_AS_OF = datetime(2018, 8, 29, tzinfo=UTC)
#: the backtest and the drift checks: the score distribution (PSI), the flagged share since
#: validation, and the age of the training data (the exposure to drift the data may not show yet)
STALE_CHECKS = ("backtest", "score_psi", "action_drift", "training_age")


@dataclass(frozen=True)
class Case:
    """A model to gate and what the gate must say about it."""

    name: str
    spec: TrainingSpec
    expect_pass: bool | None             # None: shown, not judged (see ``note``)
    must_fail_any: tuple[str, ...] = ()  # when failing: at least one of these checks fails
    against_live: bool = True            # False: against the base-rate baseline
    note: str = ""

    @property
    def expected(self) -> str:
        if self.expect_pass is None:
            return "(shown only)"
        if self.expect_pass:
            return "PASS"
        return "FAIL" + (f" ({' or '.join(self.must_fail_any)})" if self.must_fail_any else "")


@dataclass(frozen=True)
class Outcome:
    """A case's gate report and whether it met the expectation."""

    case: Case
    store: str
    report: GateReport
    seconds: float

    @property
    def as_expected(self) -> bool:
        if self.case.expect_pass is None:
            return True
        if self.report.passed != self.case.expect_pass:
            return False
        failed = {c.name for c in self.report.failures}
        return self.case.expect_pass or not self.case.must_fail_any \
            or bool(failed & set(self.case.must_fail_any))


def cases(timeline: Timeline, default: FeatureSet, *, drifted: bool = False) -> list[Case]:
    """The candidates of the module docstring, for a gate at ``timeline.as_of``.

    The stale case must fail on both stores; on the drifted store the fresh LightGBM is shown
    as the control (trained on the same store after the drift).
    """
    names = tuple(default.names)
    fresh = TrainingSpec("lightgbm", names, timeline.train_end)
    stale = TrainingSpec("lightgbm", names, timeline.train_end - STALE_BY)
    shuffled = TrainingSpec("lightgbm", names, timeline.train_end, shuffle_labels=True, seed=1)
    noise = TrainingSpec("lightgbm", names, timeline.train_end, shuffle_labels=True, seed=2)
    if drifted:
        return [Case("candidate-lightgbm", fresh, None, note="control"),
                Case("candidate-stale", stale, False, STALE_CHECKS)]
    return [Case("candidate-lightgbm", fresh, True),
            Case("candidate-shuffled", shuffled, False, ("pr_auc",)),
            Case("candidate-stale", stale, False, STALE_CHECKS),
            Case("noise", noise, False, ("pr_auc",), against_live=False)]


def backfill(store: EventStore, features: FeatureSet) -> pa.Table:
    started = time.perf_counter()
    table = OfflineEngine(store).backfill(features)
    print(f"backfilled {len(features.names)} features × {table.num_rows:,} events "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return table


def gate_store(label: str, store: EventStore, features: FeatureSet, handbook: FeatureSet,
               timeline: Timeline, chosen: list[Case], out: Path,
               threads: int) -> list[Outcome]:
    """Backfill once, train the live model and each case's model, gate each, write reports."""
    table = backfill(store, features)
    fit: Callable[[TrainingSpec], TrainedModel] = \
        lambda spec: _fit(label, spec, store, table, features, threads)  # noqa: E731
    live = fit(TrainingSpec("logistic", tuple(handbook.names), timeline.train_end))
    outcomes = []
    for case in chosen:
        model = fit(case.spec)
        started = time.perf_counter()
        report = run_gate(store, features, model, live if case.against_live else None,
                          config=GateConfig(), as_of=timeline.as_of, features=table,
                          candidate_name=f"{case.name} ({label})",
                          live_name=f"live logistic regression ({label})")
        name = case.name if label == "handbook" else f"drift-{case.name}"
        write_gate_report(report, out / name)
        outcome = Outcome(case, label, report, time.perf_counter() - started)
        print(f"  gate {name}: {'PASS' if report.passed else 'FAIL'} "
              f"{[c.name for c in report.failures]} in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
    return outcomes


def _fit(label: str, spec: TrainingSpec, store: EventStore, table: pa.Table,
         features: FeatureSet, threads: int) -> TrainedModel:
    started = time.perf_counter()
    model, figures = train(store, table, features, spec, threads)
    print(f"  [{label}] trained {spec.kind} on {len(spec.feature_names)} features, "
          f"{spec.train_start:%Y-%m-%d} … {spec.train_end:%Y-%m-%d}"
          f"{' (shuffled labels)' if spec.shuffle_labels else ''}: {figures['rows']:,.0f} rows, "
          f"{figures['frauds']:,.0f} frauds, validation AP {figures['valid_ap']:.3f} "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return model


def drift_store(folder: Path) -> EventStore:
    """A simulated store in which S4 (account takeover) starts on ``DRIFT_START``."""
    workspace = Workspace.init(folder, name="gate-drift")
    store = EventStore(workspace.events_dir)
    started = time.perf_counter()
    simulation = simulate(SimulationConfig(n_days=DRIFT_DAYS, drift=DRIFT, seed=0))
    n_tx, n_labels = write_simulation(simulation, store, batch_id="gate-drift")
    print(f"simulated {n_tx:,} transactions and {n_labels:,} labels (S4 from {DRIFT_START}) "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return store


# -- the summary ----------------------------------------------------------------------------

def _check(report: GateReport, name: str) -> dict[str, object]:
    for check in report.checks:
        if check.name == name:
            return {"value": check.value, "figures": check.figures, "passed": check.passed}
    return {}


def key_figures(report: GateReport) -> str:
    """Both APs on the window, backtest wins and worst week, the candidate's score PSI."""
    ap = _check(report, "pr_auc").get("figures") or {}
    backtest = _check(report, "backtest")
    weeks = (backtest.get("figures") or {}).get("weeks", [])  # type: ignore[union-attr]
    diffs = [w["candidate_ap"] - w["live_ap"] for w in weeks
             if w["candidate_ap"] is not None and w["live_ap"] is not None]
    psi = _check(report, "score_psi").get("value")
    worst = f"{min(diffs):+.3f}" if diffs else "n/a"
    return (f"AP {ap.get('candidate_ap', float('nan')):.3f} vs {ap.get('live_ap', float('nan')):.3f}"  # type: ignore[union-attr]
            f"; backtest {sum(d >= -GateConfig().backtest_tolerance for d in diffs)}/{len(diffs)} "
            f"weeks, worst {worst}; PSI {psi:.3f}" if isinstance(psi, float) else "")


def summary(outcomes: list[Outcome]) -> str:
    lines = ["| store | case | expected | verdict | failed checks | key figures | ok |",
             "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        failed = ", ".join(c.name for c in o.report.failures) or "—"
        lines.append(f"| {o.store} | {o.case.name} | {o.case.expected} | "
                     f"{'PASS' if o.report.passed else 'FAIL'} | {failed} | "
                     f"{key_figures(o.report)} | {'✓' if o.as_expected else '✗'} |")
    return "\n".join(lines) + "\n"


def reasons(outcomes: list[Outcome]) -> str:
    """Why each failing gate failed: the report's own sentence per failed check."""
    lines = []
    for o in outcomes:
        for check in o.report.failures:
            lines.append(f"- {o.store} / {o.case.name} / {check.name}: {check.detail}")
    return "\n".join(lines) + "\n"


def notes(outcomes: list[Outcome]) -> str:
    """For the cases shown only: whether the checks the issue names failed, and their figures."""
    lines = []
    for o in outcomes:
        if o.case.expect_pass is not None or not o.case.must_fail_any:
            continue
        named = [c for c in o.report.checks if c.name in o.case.must_fail_any]
        failed = [c.name for c in named if not c.passed]
        verdict = (f"fails {', '.join(failed)}" if failed else
                   f"does NOT fail {' or '.join(o.case.must_fail_any)}")
        lines.append(f"- NOTE {o.store} / {o.case.name} ({o.case.note}): {verdict}; "
                     + " ".join(f"{c.name}: {c.detail}" for c in named))
    return "\n".join(lines) + "\n" if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FRAUDOPS_HANDBOOK_DATA"),
                        help="the fraud-handbook-simulated folder (or its transactions_raw.parquet)")
    parser.add_argument("--out", required=True, help="folder for the gate reports")
    parser.add_argument("--workspace", help="workspace to ingest into (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads (default 1)")
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set FRAUDOPS_HANDBOOK_DATA")
    data = Path(args.data)
    data = data.parent if data.is_file() else data
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sets = load_feature_sets()
    features = merged_feature_set([sets.HANDBOOK, sets.DEFAULT])
    handbook_timeline, drift_timeline = Timeline(HANDBOOK_AS_OF), Timeline(DRIFT_AS_OF)
    with tempfile.TemporaryDirectory() as tmp:
        store = prepare_store(data, Path(args.workspace or Path(tmp) / "ws"))
        outcomes = gate_store("handbook", store, features, sets.HANDBOOK, handbook_timeline,
                              cases(handbook_timeline, sets.DEFAULT), out, args.threads)
        drifted = drift_store(Path(tmp) / "drift")
        outcomes += gate_store("drift (S4 from 2018-07-01)", drifted, features, sets.HANDBOOK,
                               drift_timeline,
                               cases(drift_timeline, sets.DEFAULT, drifted=True), out,
                               args.threads)
    table, why, shown = summary(outcomes), reasons(outcomes), notes(outcomes)
    (out / "summary.md").write_text(f"# Release gate on the handbook data\n\n{table}\n"
                                    f"## Why the failing gates failed\n\n{why}\n{shown}")
    print("\n" + table + "\n" + why + "\n" + shown)
    wrong = [f"{o.store}/{o.case.name}" for o in outcomes if not o.as_expected]
    print(f"{len(outcomes)} gates in {time.perf_counter() - started:.0f} s; reports in {out}/")
    if wrong:
        print(f"FAIL: verdict differs from the expectation for {wrong}")
        return 1
    print("OK: every verdict is the expected one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
