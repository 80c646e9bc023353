"""The gate's model-quality checks: each compares candidate and live on the same events and
returns a :class:`CheckResult` with the figures that decided it.

The integrity checks look at the artifact and the feature set instead: the definition hash,
label leakage, and loading in a clean process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fraudops.core import DefinitionError
from fraudops.features import FeatureSet
from fraudops.models import TrainedModel, daily_card_precision, expected_calibration_error

from ._backtest import BacktestWeek
from ._bootstrap import (
    BootstrapResult,
    bootstrap_ap_difference,
    bootstrap_mean_difference,
    fast_average_precision,
)
from ._drift import population_stability_index
from ._report_types import CheckResult

if TYPE_CHECKING:
    from ._gate import GateConfig


@dataclass(frozen=True)
class ScoredWindow:
    """Both models' calibrated probabilities and actions on the same label-matured events."""

    y: np.ndarray
    event_time: np.ndarray
    card_id: np.ndarray
    candidate: np.ndarray
    live: np.ndarray
    candidate_actions: np.ndarray
    live_actions: np.ndarray
    live_is_baseline: bool

    @property
    def n_days(self) -> int:
        return max(1, len(np.unique(self.event_time.astype("datetime64[D]"))))


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure for a sentence: rounded, with a real minus sign; ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}".replace("-", "−")


def _ci_verdict(result: BootstrapResult, tolerance: float, improve: bool) -> tuple[bool, str]:
    ci = f"{result.confidence:.0%} CI [{fmt(result.low)}, {fmt(result.high)}]".replace("%", " %")
    if math.isnan(result.low):
        return False, f"{ci}: no bootstrap sample had frauds → cannot judge"
    if improve:
        ok = result.low > 0
        return ok, (f"{ci} {'entirely above' if ok else 'reaches'} 0 → "
                    + ("better beyond noise" if ok else "not proven better (improvement required)"))
    ok = result.high >= -tolerance
    if result.low > 0:
        return ok, f"{ci} entirely above 0 → better beyond noise"
    if ok:
        return ok, f"{ci} includes 0 → not worse beyond noise"
    return ok, f"{ci} entirely below {fmt(-tolerance) if tolerance else '0'} → worse beyond noise"


def _other(w: ScoredWindow) -> str:
    return "baseline" if w.live_is_baseline else "live"


def check_average_precision(w: ScoredWindow, config: GateConfig) -> CheckResult:
    """PR-AUC (average precision) of both on the window, day-block bootstrap CI of the gap.

    Against the base-rate baseline, improvement is always required: a model must beat a
    constant beyond noise, so that noise is never promoted.
    """
    result = bootstrap_ap_difference(w.y, w.candidate, w.live, w.event_time,
                                     n_bootstrap=config.n_bootstrap, seed=config.seed,
                                     confidence=config.confidence)
    improve = config.require_improvement or w.live_is_baseline
    passed, verdict = _ci_verdict(result, config.ap_tolerance, improve)
    cand, live = fast_average_precision(w.y, w.candidate), fast_average_precision(w.y, w.live)
    if w.live_is_baseline and passed and cand < config.min_ap_lift_over_baseline * live:
        passed = False
        verdict += (f", but AP is only {cand / max(live, 1e-12):.1f}× the baseline's; at least"
                    f" {config.min_ap_lift_over_baseline:g}× is required to tell a model from"
                    " noise (min_ap_lift_over_baseline)")
    return CheckResult(
        name="pr_auc", title=f"PR-AUC not worse than {_other(w)} beyond noise"
        + (" (improvement required)" if improve else ""),
        passed=passed, value=result.estimate, threshold=0.0 if improve else -config.ap_tolerance,
        detail=f"candidate AP {fmt(cand)} vs {_other(w)} {fmt(live)}: {fmt(result.estimate)}, "
               f"{verdict}.",
        figures={"candidate_ap": cand, "live_ap": live, "bootstrap": asdict(result),
                 "require_improvement": improve,
                 "lift_over_baseline": cand / max(live, 1e-12) if w.live_is_baseline else None})


def check_card_precision(w: ScoredWindow, config: GateConfig, k: int) -> CheckResult:
    """Card Precision@k per day for both; bootstrap over days of the paired daily difference."""
    _, cand_daily = daily_card_precision(w.event_time, w.card_id, w.y, w.candidate, k)
    _, live_daily = daily_card_precision(w.event_time, w.card_id, w.y, w.live, k)
    result = bootstrap_mean_difference(cand_daily, live_daily, n_bootstrap=config.n_bootstrap,
                                       seed=config.seed, confidence=config.confidence)
    improve = config.require_improvement
    passed, verdict = _ci_verdict(result, config.cp_tolerance, improve)
    cand, live = float(cand_daily.mean()), float(live_daily.mean())
    return CheckResult(
        name="card_precision", title=f"Card Precision@{k} not worse than {_other(w)} beyond noise",
        passed=passed, value=result.estimate, threshold=0.0 if improve else -config.cp_tolerance,
        detail=f"candidate CP@{k} {fmt(cand)} vs {_other(w)} {fmt(live)}: {fmt(result.estimate)}, "
               f"{verdict}.",
        figures={"k": k, "candidate_cp": cand, "live_cp": live, "bootstrap": asdict(result),
                 "candidate_daily": cand_daily.tolist(), "live_daily": live_daily.tolist()})


def check_prevented_recall(w: ScoredWindow, config: GateConfig) -> CheckResult:
    """Of the frauds the live policy PREVENTs, the share the candidate still REVIEWs or PREVENTs."""
    prevented = (w.y == 1) & (w.live_actions == "PREVENT")
    n = int(prevented.sum())
    title = f"Frauds {_other(w)} prevents are still caught"
    if n == 0:
        return CheckResult("prevented_recall", title, True, None, config.min_prevented_recall,
                           f"the {_other(w)} policy prevents no fraud in the window: nothing to keep.",
                           {"live_prevented_frauds": 0})
    caught = int((prevented & (w.candidate_actions != "ALLOW")).sum())
    share = caught / n
    passed = share >= config.min_prevented_recall
    return CheckResult(
        "prevented_recall", title, passed, share, config.min_prevented_recall,
        f"the candidate reviews or prevents {caught} of the {n} frauds {_other(w)} prevents "
        f"({share:.1%}), {'at least' if passed else 'below'} the required "
        f"{config.min_prevented_recall:.0%}.",
        {"live_prevented_frauds": n, "candidate_caught": caught})


def check_calibration(w: ScoredWindow, config: GateConfig) -> CheckResult:
    """Expected calibration error (10 equal-width bins) of each; the candidate's may exceed the
    live one's by at most ``max_ece_gap``."""
    cand = expected_calibration_error(w.y, w.candidate)
    live = expected_calibration_error(w.y, w.live)
    gap = cand - live
    passed = gap <= config.max_ece_gap
    return CheckResult(
        "calibration", "Calibration not worse than live", passed, gap, config.max_ece_gap,
        f"ECE candidate {fmt(cand, 4)} vs {_other(w)} {fmt(live, 4)}: gap {fmt(gap, 4)}, "
        f"{'within' if passed else 'above'} the allowed {fmt(config.max_ece_gap, 4)}.",
        {"candidate_ece": cand, "live_ece": live})


def check_importance_rank(candidate: Mapping[str, float], live: Mapping[str, float] | None,
                          config: GateConfig) -> CheckResult:
    """Spearman correlation of the two models' feature importances over their shared features.

    Non-blocking (a warning) when there is no live model or fewer than 3 shared features.
    """
    title = "Feature importances agree with live"
    shared = sorted(set(candidate) & set(live or {}))
    if live is None or len(shared) < 3:
        why = "no live model" if live is None else f"only {len(shared)} shared feature(s)"
        return CheckResult("importance_rank", title, True, None, config.min_rank_correlation,
                           f"not compared: {why} (a rank correlation needs at least 3).",
                           {"shared_features": shared}, blocking=False)
    a = np.array([candidate[n] for n in shared], dtype=np.float64)
    b = np.array([live[n] for n in shared], dtype=np.float64)
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan
    passed = not math.isnan(rho) and rho >= config.min_rank_correlation
    return CheckResult(
        "importance_rank", title, passed, rho, config.min_rank_correlation,
        f"Spearman correlation of importance ranks on {len(shared)} shared features is "
        f"{fmt(rho, 2)}, {'at least' if passed else 'below'} {fmt(config.min_rank_correlation, 2)}.",
        {"shared_features": shared})


def check_action_changes(w: ScoredWindow, config: GateConfig) -> CheckResult:
    """Share of events whose action (ALLOW/REVIEW/PREVENT) differs between the two policies.

    Non-blocking against the baseline, which has no actions of its own.
    """
    changed = w.candidate_actions != w.live_actions
    share = float(changed.mean()) if changed.size else 0.0
    passed = share <= config.max_action_change_share
    moves: dict[str, int] = {}
    for old, new in zip(w.live_actions[changed], w.candidate_actions[changed], strict=True):
        moves[f"{old}->{new}"] = moves.get(f"{old}->{new}", 0) + 1
    return CheckResult(
        "action_changes", "Few events change action", passed, share,
        config.max_action_change_share,
        f"{int(changed.sum())} of {changed.size} events ({share:.1%}) change action, "
        f"{'within' if passed else 'above'} the allowed {config.max_action_change_share:.0%}"
        + (" (the baseline has no actions: informational)." if w.live_is_baseline else "."),
        {"changes": moves}, blocking=not w.live_is_baseline)


def check_review_volume(w: ScoredWindow, config: GateConfig, capacity: float) -> CheckResult:
    """The candidate's REVIEW events per day against the review team's capacity."""
    days = w.n_days
    cand = float((w.candidate_actions == "REVIEW").sum()) / days
    live = float((w.live_actions == "REVIEW").sum()) / days
    limit = capacity * config.max_review_over_capacity
    passed = cand <= limit
    return CheckResult(
        "review_volume", "Daily REVIEW volume within capacity", passed, cand, limit,
        f"the candidate sends {cand:.1f} events a day to review ({_other(w)}: {live:.1f}, change "
        f"{cand - live:+.1f}); the limit is {limit:.1f} ({capacity:g} capacity × "
        f"{config.max_review_over_capacity:g}).",
        {"candidate_reviews_per_day": cand, "live_reviews_per_day": live, "capacity": capacity,
         "days": days})


def check_score_psi(reference: np.ndarray, recent: np.ndarray, config: GateConfig) -> CheckResult:
    """PSI of the candidate's probabilities: reference period against the latest week."""
    title = "Candidate score stable (PSI)"
    if not reference.size or not recent.size:
        return CheckResult("score_psi", title, False, None, config.max_score_psi,
                           f"cannot compute: {reference.size} reference and {recent.size} recent "
                           "events.", {})
    psi = population_stability_index(reference, recent, bins=config.psi_bins)
    passed = psi <= config.max_score_psi
    return CheckResult(
        "score_psi", title, passed, psi, config.max_score_psi,
        f"PSI of candidate scores between the reference period ({reference.size} events) and the "
        f"latest week ({recent.size} events) is {fmt(psi)}, "
        f"{'within' if passed else 'above'} {fmt(config.max_score_psi, 2)}.",
        {"reference_events": int(reference.size), "recent_events": int(recent.size),
         "reference_mean": float(reference.mean()), "recent_mean": float(recent.mean())})


def check_action_drift(reference: np.ndarray, recent: np.ndarray, config: GateConfig) -> CheckResult:
    """Share of events the candidate flags (REVIEW or PREVENT): its validation period vs the latest week.

    Whole-distribution PSI barely moves when only the tail shifts, yet the tail is where the
    policy acts: a model whose flagged share doubles since it was validated sends twice the work
    to the review team and blocks twice the customers, whatever its AP says.
    """
    title = "Flagged share stable since validation"
    limit = config.max_flagged_share_ratio
    if not reference.size or not recent.size:
        return CheckResult("action_drift", title, False, None, limit,
                           f"cannot compute: {reference.size} reference and {recent.size} recent "
                           "events.", {})
    ref = float(np.isin(reference, ("REVIEW", "PREVENT")).mean())
    now = float(np.isin(recent, ("REVIEW", "PREVENT")).mean())
    ratio = max(now, 1e-12) / max(ref, 1e-12)
    ratio = max(ratio, 1.0 / ratio)      # a collapse of flagged events is drift too
    passed = ratio <= limit
    return CheckResult(
        "action_drift", title, passed, ratio, limit,
        f"the candidate flags {now:.2%} of the latest week's {recent.size} events against "
        f"{ref:.2%} of its validation period's {reference.size}: {ratio:.2f}× "
        f"({'within' if passed else 'beyond'} {limit:g}×, max_flagged_share_ratio).",
        {"reference_flagged_share": ref, "recent_flagged_share": now,
         "reference_events": int(reference.size), "recent_events": int(recent.size)})


def check_training_age(candidate: TrainedModel, gate_start: datetime,
                       config: GateConfig) -> CheckResult:
    """How old the candidate's newest training data is at the start of the gate window.

    Fraud patterns move within weeks; a model whose data ended long before the window it is
    judged on can look fine on a stationary stretch and still miss what changed since.
    """
    title = "Trained on recent data"
    window = candidate.params.get("validation_window")
    if not (isinstance(window, list | tuple) and len(window) == 2):
        return CheckResult("training_age", title, True, None, config.max_training_age_days,
                           "the artifact does not record the period it was trained on: age"
                           " not checked.", {}, blocking=False)
    data_end = datetime.fromisoformat(str(window[1]))
    age = (gate_start - data_end).total_seconds() / 86_400
    passed = age <= config.max_training_age_days
    return CheckResult(
        "training_age", title, passed, age, config.max_training_age_days,
        f"the candidate's newest training data ends {data_end:%Y-%m-%d}, {age:.0f} days before"
        f" the gate window starts; {'within' if passed else 'more than'} the"
        f" {config.max_training_age_days:g} allowed (max_training_age_days)"
        + ("." if passed else ": retrain it on recent data."),
        {"data_end": data_end.isoformat(), "age_days": age})


def check_backtest(weeks: Sequence[BacktestWeek], config: GateConfig) -> CheckResult:
    """Week by week: the candidate must be within tolerance in enough weeks and never collapse."""
    valid = [wk for wk in weeks if not (math.isnan(wk.candidate_ap) or math.isnan(wk.live_ap))]
    wins = sum(wk.difference >= -config.backtest_tolerance for wk in valid)
    worst = min((wk.difference for wk in valid), default=math.nan)
    need = min(config.required_backtest_wins, len(valid))
    collapsed = not math.isnan(worst) and worst < -config.max_backtest_drop
    passed = bool(valid) and wins >= need and not collapsed
    why = ("no week with both events and known frauds" if not valid else
           f"worst week {fmt(worst)} is below −{fmt(config.max_backtest_drop, 2)} (catastrophic)"
           if collapsed else f"worst week {fmt(worst)}")
    return CheckResult(
        "backtest", f"Not worse than live in most of the last {len(weeks)} weeks", passed,
        float(wins), float(need),
        f"candidate AP within {fmt(config.backtest_tolerance, 2)} of live in {wins} of "
        f"{len(valid)} weeks (need {need}); {why}.",
        {"weeks": [wk.to_dict() for wk in weeks]})


def check_latency(model: TrainedModel, rows: Sequence[Sequence[float]], config: GateConfig,
                  clock: Callable[[], int] = time.perf_counter_ns) -> CheckResult:
    """p99 of the candidate's single-event ``predict_one`` in process, in microseconds.

    Each call is timed alone with ``clock`` (nanoseconds); a few warm-up calls come first.
    """
    for row in rows[:20]:
        model.predict_one(row)
    timings = np.empty(len(rows))
    for i, row in enumerate(rows):
        start = clock()
        model.predict_one(row)
        timings[i] = (clock() - start) / 1000.0
    p50, p99 = (float(v) for v in np.percentile(timings, [50, 99])) if len(rows) else (math.nan,) * 2
    passed = not math.isnan(p99) and p99 <= config.latency_budget_us
    return CheckResult(
        "latency", "Single-event scoring p99 within budget", passed, p99,
        config.latency_budget_us,
        f"p99 of predict_one over {len(rows)} events is {p99:.1f} µs (p50 {p50:.1f} µs), "
        f"{'within' if passed else 'above'} the {config.latency_budget_us:g} µs budget.",
        {"p50_us": p50, "p99_us": p99, "calls": len(rows)})


# -- integrity -------------------------------------------------------------------------------

_LOAD_SCRIPT = """
import json, math, sys
from fraudops.models import TrainedModel
model = TrainedModel.load(sys.argv[1])
row = [math.nan if v is None else v for v in json.loads(sys.argv[2])]
print(json.dumps({"probability": model.predict_one(row)}))
"""


def integrity_checks(candidate: TrainedModel, feature_set: FeatureSet, config: GateConfig,
                      candidate_dir: Path | None, x: np.ndarray) -> list[CheckResult]:
    checks = [check_definition_hash(candidate, feature_set), check_label_leakage(feature_set)]
    if config.check_clean_load:
        row = [None if math.isnan(v) else float(v) for v in (x[0] if len(x) else
                                                             [math.nan] * x.shape[1])]
        checks.append(check_clean_load(candidate, candidate_dir, row, config.clean_load_timeout_s))
    return checks


def check_definition_hash(candidate: TrainedModel, feature_set: FeatureSet) -> CheckResult:
    """The artifact's feature-definition hash must be the workspace feature set's."""
    expected = feature_set.definition_hash()
    passed = candidate.definition_hash == expected
    return CheckResult(
        "definition_hash", "Feature definitions match the workspace", passed, None, None,
        f"the artifact was trained on definition hash {candidate.definition_hash or '(none)'} "
        f"({candidate.feature_set_name or '?'}); the workspace's {feature_set.name} is "
        f"{expected}" + (": they match." if passed else ": retrain on the current definitions."),
        {"artifact": candidate.definition_hash, "workspace": expected})


def check_label_leakage(feature_set: FeatureSet) -> CheckResult:
    """Re-validate the feature set; every label-aware feature must use a label mode with a
    positive delay (``after_delay``) or label-time visibility (``as_known``)."""
    problems: list[str] = []
    try:
        feature_set.validate()
    except DefinitionError as e:
        problems.append(str(e))
    label_aware = [s for s in feature_set.aggregations if s.op.reads_labels]
    for spec in label_aware:
        mode = spec.aggregation.labels
        if mode is None or mode.mode not in ("delay", "label_time") \
                or (mode.mode == "delay" and mode.delay <= timedelta(0)):
            problems.append(f"{spec.name}: label mode {mode!r} may read future labels")
    passed = not problems
    return CheckResult(
        "label_leakage", "No feature reads labels from the future", passed, float(len(problems)),
        0.0, (f"the feature set validates and its {len(label_aware)} label-aware feature(s) use "
              "after_delay or as_known labels." if passed else "; ".join(problems)),
        {"label_aware_features": [s.name for s in label_aware], "problems": problems})


def check_clean_load(candidate: TrainedModel, directory: Path | None, row: list[float | None],
                     timeout_s: float) -> CheckResult:
    """Load the artifact in a fresh Python process and score one event; it must equal the
    in-process score."""
    title = "Artifact loads and scores in a clean process"
    with tempfile.TemporaryDirectory(prefix="fraudops-gate-") as tmp:
        path = directory if directory is not None else candidate.save(Path(tmp) / "model")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
        try:
            done = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(path), json.dumps(row)],
                                  capture_output=True, text=True, timeout=timeout_s, env=env,
                                  check=False)
        except subprocess.TimeoutExpired:
            return CheckResult("clean_load", title, False, None, None,
                               f"loading {path} did not finish within {timeout_s:g} s.", {})
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return CheckResult("clean_load", title, False, None, None,
                           f"loading {path} in a clean process failed: {error}",
                           {"stderr": done.stderr[-2000:]})
    loaded = float(json.loads(done.stdout.strip().splitlines()[-1])["probability"])
    here = candidate.predict_one([math.nan if v is None else v for v in row])
    passed = abs(loaded - here) <= 1e-9 * max(1.0, abs(here))
    where = "the given artifact directory" if directory is not None else "a saved copy"
    return CheckResult(
        "clean_load", title, passed, abs(loaded - here), 1e-9,
        f"{where} loads in a fresh process and scores {loaded:.6f} vs {here:.6f} in process"
        + ("." if passed else ": the artifact is not the model under test."),
        {"clean_process_probability": loaded, "in_process_probability": here})
