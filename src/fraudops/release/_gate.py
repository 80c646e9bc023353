"""The release gate: is the candidate safe to put in front of payments?

Time, relative to ``as_of`` (default: the newest stored event)::

    |-- backtest weeks ... --|-- window_days --|---- label_delay_days ----|
                           gate_start      mature_end                   as_of
                                                         |-- latest week --|

Both models score the same events. The quality checks use the label-matured window (labels
as known at ``as_of``); the backtest uses the ``backtest_weeks`` weeks ending at
``mature_end``; score drift compares the candidate's scores on those matured weeks (its
training / validation period for a model trained at ``as_of``) with the latest week, which
needs no labels. Without a live model the candidate meets a base-rate baseline: a constant
probability equal to the fraud rate of the matured weeks before the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from fraudops.core import InputError, Progress, null_progress
from fraudops.events import EventStore
from fraudops.features import FeatureSet, OfflineEngine, backfill_window
from fraudops.models import ActionPolicy, Dataset, TrainedModel, build_dataset

from ._backtest import weekly_backtest
from ._checks import (
    ScoredWindow,
    check_action_changes,
    check_action_drift,
    check_average_precision,
    check_backtest,
    check_calibration,
    check_card_precision,
    check_importance_rank,
    check_latency,
    check_prevented_recall,
    check_review_volume,
    check_score_psi,
    check_training_age,
    integrity_checks,
)
from ._report_types import CheckResult, GateReport

_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class GateConfig:
    """Every threshold of the gate; the defaults are what a card-fraud team would start with.

    ``ap_tolerance`` / ``cp_tolerance``: how far below 0 the upper bound of the bootstrap CI of
    (candidate − live) may lie (0: the CI must reach 0). ``require_improvement``: the lower bound
    must be above 0 instead (always so for AP against the base-rate baseline). ``card_k``:
    Card Precision's k; ``None`` scales it to 2 % of the cards seen per day (1 … 100).
    ``review_capacity_per_day``: ``None`` takes the capacity the candidate's policy was chosen
    for. ``min_backtest_wins``: ``None`` means ``backtest_weeks − 1``.
    ``max_training_age_days``: the candidate's newest training data (the end of its validation
    window, recorded in its artifact) may end at most this long before the gate window.
    ``max_flagged_share_ratio``: the share of events the candidate flags (REVIEW or PREVENT) in
    the latest week may differ from its validation period's by at most this factor, either way.
    ``min_ap_lift_over_baseline``: against the base-rate baseline, the candidate's AP must also
    be at least this many times the baseline's (the fraud rate). Beating a constant "beyond
    noise" is not enough: on the handbook data a LightGBM trained on permuted labels reached
    1.7–4× the base rate (its label-aware features still carry signal in random directions);
    a working fraud model is typically 10–100×.
    """

    window_days: int = 7
    label_delay_days: int = 7
    n_bootstrap: int = 200
    seed: int = 0
    confidence: float = 0.95
    ap_tolerance: float = 0.0
    cp_tolerance: float = 0.0
    min_ap_lift_over_baseline: float = 5.0
    max_training_age_days: float = 30.0
    require_improvement: bool = False
    card_k: int | None = None
    min_prevented_recall: float = 0.95
    max_ece_gap: float = 0.02
    min_rank_correlation: float = 0.3
    max_action_change_share: float = 0.2
    review_capacity_per_day: float | None = None
    max_review_over_capacity: float = 1.1
    max_score_psi: float = 0.25
    max_flagged_share_ratio: float = 1.5
    psi_bins: int = 10
    backtest_weeks: int = 4
    min_backtest_wins: int | None = None
    backtest_tolerance: float = 0.02
    max_backtest_drop: float = 0.1
    latency_budget_us: float = 1000.0
    latency_rows: int = 2000
    check_clean_load: bool = True
    clean_load_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        positive_int = ("window_days", "n_bootstrap", "psi_bins", "backtest_weeks", "latency_rows")
        non_negative = ("label_delay_days", "ap_tolerance", "cp_tolerance", "max_ece_gap",
                        "backtest_tolerance", "max_backtest_drop")
        shares = ("min_prevented_recall", "max_action_change_share")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("require_improvement", "check_clean_load"):
                if not isinstance(value, bool):
                    self._fail(f.name, "a bool", value)
            elif f.name in (*positive_int, "seed", "label_delay_days", "card_k",
                            "min_backtest_wins") and value is not None \
                    and (isinstance(value, bool) or not isinstance(value, int)):
                self._fail(f.name, "an integer", value)
            elif value is not None and (isinstance(value, bool)
                                        or not isinstance(value, int | float)
                                        or math.isnan(value)):
                self._fail(f.name, "a number", value)
        for name in (*positive_int, "card_k", "latency_budget_us", "review_capacity_per_day",
                     "min_ap_lift_over_baseline", "max_training_age_days",
                     "max_review_over_capacity", "clean_load_timeout_s", "max_score_psi",
                     "max_flagged_share_ratio"):
            if (value := getattr(self, name)) is not None and not value > 0:
                self._fail(name, "> 0", value)
        for name in non_negative:
            if getattr(self, name) < 0:
                self._fail(name, ">= 0", getattr(self, name))
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                self._fail(name, "a share in [0, 1]", getattr(self, name))
        if not 0.0 < self.confidence < 1.0:
            self._fail("confidence", "in (0, 1)", self.confidence)
        if not -1.0 <= self.min_rank_correlation <= 1.0:
            self._fail("min_rank_correlation", "in [-1, 1]", self.min_rank_correlation)
        if self.min_backtest_wins is not None \
                and not 0 <= self.min_backtest_wins <= self.backtest_weeks:
            self._fail("min_backtest_wins", f"in [0, backtest_weeks={self.backtest_weeks}]",
                       self.min_backtest_wins)

    @staticmethod
    def _fail(name: str, what: str, value: object) -> None:
        raise ValueError(f"The {name!r} parameter of GateConfig must be {what}; got {value!r}")

    @property
    def required_backtest_wins(self) -> int:
        """``min_backtest_wins``, or ``backtest_weeks − 1`` when it is ``None``."""
        if self.min_backtest_wins is not None:
            return self.min_backtest_wins
        return max(1, self.backtest_weeks - 1)


def run_gate(store: EventStore, feature_set: FeatureSet, candidate: TrainedModel,
             live: TrainedModel | None, *, config: GateConfig = GateConfig(),
             tenant: str | None = None, as_of: datetime | None = None,
             candidate_name: str = "candidate", live_name: str = "live",
             features: pa.Table | None = None, candidate_dir: Path | None = None,
             progress: Progress = null_progress) -> GateReport:
    """Compare ``candidate`` with ``live`` (or a base-rate baseline) and return the verdict.

    Parameters
    ----------
    store, feature_set
        The events and the workspace's feature set (both models read their features by name).
    candidate, live
        The models; ``live=None`` compares against a constant fraud-rate baseline.
    config
        The thresholds (:class:`GateConfig`).
    tenant
        Gate one tenant's events only.
    as_of
        The moment of the gate (timezone-aware; default: the newest stored event). Labels are
        read as known then.
    features
        An existing backfill of ``feature_set`` over the store, to avoid computing it again.
    candidate_dir
        The candidate's artifact directory, loaded in a clean Python process by the integrity
        check; ``None`` saves ``candidate`` to a temporary directory for that.

    Raises
    ------
    InputError
        When the store lacks events or known frauds in the gate window, or a model reads a
        feature the feature set does not define.
    """
    progress("data", 0, 4)
    if as_of is None:
        span = store.event_span(tenant)
        if span is None:
            scope = "the store" if tenant is None else f"tenant {tenant!r}"
            raise InputError(f"{scope} holds no transactions to gate on")
        as_of = span[1]
    if as_of.tzinfo is None:
        raise ValueError(f"The 'as_of' parameter of run_gate must be timezone-aware; got {as_of}")
    mature_end = as_of - timedelta(days=config.label_delay_days)
    gate_start = mature_end - timedelta(days=config.window_days)
    history_start = min(gate_start, mature_end - timedelta(weeks=config.backtest_weeks))
    reference = _validation_window(candidate)
    load_start = history_start if reference is None else min(history_start, reference[0])
    names = _feature_union(feature_set, candidate, live)
    tenants = None if tenant is None else [tenant]
    table = _features(store, feature_set, features, tenants, load_start, as_of + _ONE_US)
    data = build_dataset(store, table, feature_names=names, labels_as_of=as_of, tenants=tenants)
    p_cand = candidate.predict_proba(data.select(candidate.feature_names).X)
    t = data.event_time
    in_gate = (t >= _np(gate_start)) & (t < _np(mature_end))
    if not in_gate.any() or not data.y[in_gate].any():
        raise InputError(f"the gate window {gate_start:%Y-%m-%d} – {mature_end:%Y-%m-%d} holds "
                         f"{int(in_gate.sum())} events and {int(data.y[in_gate].sum())} known "
                         "frauds: nothing to compare on; lower label_delay_days or gate later")
    if live is None:
        before = (t >= _np(history_start)) & (t < _np(gate_start))
        rate = float(data.y[before].mean()) if before.any() else float(data.y[in_gate].mean())
        p_live = np.full(len(data), rate)
        live_label = f"base-rate baseline (p = {rate:.4f})"
    else:
        p_live = live.predict_proba(data.select(live.feature_names).X)
        live_label = live_name
    progress("checks", 1, 4)
    gate = data.subset(in_gate)
    window = _scored(gate, p_cand[in_gate], p_live[in_gate], candidate, live)
    checks = _quality_checks(window, data, p_cand, p_live, candidate, live, config,
                             mature_end=mature_end, as_of=as_of, history_start=history_start,
                             reference=reference)
    progress("integrity", 2, 4)
    checks += integrity_checks(candidate, feature_set, config, candidate_dir,
                                gate.select(candidate.feature_names).X)
    progress("report", 3, 4)
    report = GateReport(
        candidate=candidate_name, baseline=live_label, tenant=tenant,
        window=(gate_start.isoformat(), mature_end.isoformat()), labels_as_of=as_of.isoformat(),
        checks=tuple(checks), score_diffs=score_diffs(gate, window),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    progress("done", 4, 4)
    return report


def _quality_checks(window: ScoredWindow, data: Dataset, p_cand: np.ndarray, p_live: np.ndarray,
                    candidate: TrainedModel, live: TrainedModel | None, config: GateConfig, *,
                    mature_end: datetime, as_of: datetime, history_start: datetime,
                    reference: tuple[datetime, datetime] | None) -> list[CheckResult]:
    t = data.event_time
    days = window.event_time.astype("datetime64[D]")
    cards_per_day = np.mean([len(np.unique(window.card_id[days == d])) for d in np.unique(days)])
    k = config.card_k or int(min(100, max(1, round(0.02 * cards_per_day))))
    policy = candidate.policy or {}
    capacity = config.review_capacity_per_day or float(
        (policy.get("constraints") or {}).get("review_capacity_per_day") or 100.0)
    # score drift against the period the candidate was validated on (its artifact says which);
    # an older artifact without it: the backtest weeks
    start, end = reference or (history_start, mature_end)
    in_history = (t >= _np(start)) & (t < _np(end))
    latest = (t >= _np(as_of - timedelta(days=7))) & (t <= _np(as_of))
    in_backtest = t >= _np(mature_end - timedelta(weeks=config.backtest_weeks))
    weeks = weekly_backtest(t[in_backtest], data.y[in_backtest], p_cand[in_backtest],
                            p_live[in_backtest], mature_end=_np(mature_end),
                            weeks=config.backtest_weeks)
    rows = data.select(candidate.feature_names).X[:config.latency_rows].tolist()
    cand_policy = _policy(candidate)
    return [
        check_average_precision(window, config),
        check_card_precision(window, config, k),
        check_prevented_recall(window, config),
        check_calibration(window, config),
        check_importance_rank(candidate.importances, None if live is None else live.importances,
                              config),
        check_action_changes(window, config),
        check_review_volume(window, config, capacity),
        check_score_psi(p_cand[in_history], p_cand[latest], config),
        check_action_drift(cand_policy.actions(p_cand[in_history]),
                           cand_policy.actions(p_cand[latest]), config),
        check_backtest(weeks, config),
        check_training_age(candidate, mature_end - timedelta(days=config.window_days), config),
        check_latency(candidate, rows, config),
    ]


def _validation_window(model: TrainedModel) -> tuple[datetime, datetime] | None:
    """The validation window a model's artifact records (``fraudops train`` writes it)."""
    window = model.params.get("validation_window")
    if not (isinstance(window, list | tuple) and len(window) == 2):
        return None
    start, end = (datetime.fromisoformat(str(v)) for v in window)
    return start, end


def _scored(gate: Dataset, p_cand: np.ndarray, p_live: np.ndarray, candidate: TrainedModel,
            live: TrainedModel | None) -> ScoredWindow:
    cand_policy = _policy(candidate)
    live_policy = ActionPolicy(None, None) if live is None else _policy(live)
    tenants = np.unique(gate.tenant)
    cards = gate.card_id if len(tenants) <= 1 else np.array(
        [f"{a}\x1f{b}" for a, b in zip(gate.tenant, gate.card_id, strict=True)], dtype=object)
    return ScoredWindow(y=gate.y, event_time=gate.event_time, card_id=cards, candidate=p_cand,
                        live=p_live, candidate_actions=cand_policy.actions(p_cand),
                        live_actions=live_policy.actions(p_live), live_is_baseline=live is None)


def _policy(model: TrainedModel) -> ActionPolicy:
    return ActionPolicy(None, None) if model.policy is None else ActionPolicy.from_dict(model.policy)


def score_diffs(gate: Dataset, window: ScoredWindow) -> pa.Table:
    """Per event of the window: both 0–100 scores, their absolute difference and both actions,
    the largest disagreement first (ties: oldest event first)."""
    cand, live = ActionPolicy.scores(window.candidate), ActionPolicy.scores(window.live)
    diff = np.abs(cand.astype(np.int16) - live.astype(np.int16))
    order = np.lexsort((gate.event_id, gate.event_time, -diff))
    return pa.table({
        "tenant": pa.array(gate.tenant[order], pa.string()),
        "event_id": pa.array(gate.event_id[order], pa.string()),
        "event_time": pa.array(gate.event_time[order], pa.timestamp("us", tz="UTC")),
        "card_id": pa.array(gate.card_id[order], pa.string()),
        "amount": pa.array(gate.amount[order], pa.float64()),
        "is_fraud": pa.array(gate.y[order].astype(bool), pa.bool_()),
        "candidate_score": pa.array(cand[order], pa.int16()),
        "live_score": pa.array(live[order], pa.int16()),
        "abs_diff": pa.array(diff[order], pa.int16()),
        "candidate_action": pa.array(window.candidate_actions[order], pa.string()),
        "live_action": pa.array(window.live_actions[order], pa.string()),
    })


# -- data ------------------------------------------------------------------------------------

def _np(value: datetime) -> np.datetime64:
    return np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "us")


def _feature_union(feature_set: FeatureSet, candidate: TrainedModel,
                   live: TrainedModel | None) -> list[str]:
    available = set(feature_set.names)
    names = list(dict.fromkeys([*candidate.feature_names, *(live.feature_names if live else ())]))
    for label, model in (("candidate", candidate), ("live", live)):
        missing = [] if model is None else [n for n in model.feature_names if n not in available]
        if missing:
            raise InputError(f"the {label} model reads feature(s) {missing} that feature set "
                             f"{feature_set.name!r} does not define; gate it with the feature "
                             "set it was trained on")
    return names


def _features(store: EventStore, feature_set: FeatureSet, features: pa.Table | None,
              tenants: list[str] | None, start: datetime, end: datetime) -> pa.Table:
    if features is None:
        return OfflineEngine(store).backfill(feature_set, tenants=tenants, start=start, end=end)
    return backfill_window(features, feature_set, tenants=tenants, start=start, end=end)
