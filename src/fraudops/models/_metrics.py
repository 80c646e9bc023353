"""Metrics fraud teams read: ranking quality, card precision, calibration and money.

Pure functions over NumPy arrays, plus :func:`evaluate` (overall, per tenant, per segment) and
:func:`error_analysis`. Card Precision@k follows the Fraud Detection Handbook's per-day
procedure exactly, so numbers are comparable with its published baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ._dataset import Dataset


def _arrays(y: Any, p: Any, caller: str) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.ndim != 1 or p_arr.shape != y_arr.shape:
        raise ValueError(f"{caller}: 'y' and 'probability' must be 1-d arrays of one length; got "
                         f"shapes {y_arr.shape} and {p_arr.shape}")
    if y_arr.size and not np.isin(y_arr, (0, 1)).all():
        raise ValueError(f"{caller}: 'y' must hold only 0 and 1; got values "
                         f"{np.unique(y_arr)[:5].tolist()}")
    if not np.isfinite(p_arr).all():
        raise ValueError(f"{caller}: 'probability' must be finite; got "
                         f"{int((~np.isfinite(p_arr)).sum())} NaN or infinite value(s)")
    return y_arr.astype(np.int8), p_arr


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def roc_auc(y: Any, probability: Any) -> float:
    """Area under the ROC curve (sklearn); NaN when ``y`` has a single class."""
    from sklearn.metrics import roc_auc_score

    y_arr, p_arr = _arrays(y, probability, "roc_auc")
    return float(roc_auc_score(y_arr, p_arr)) if _both_classes(y_arr) else math.nan


def average_precision(y: Any, probability: Any) -> float:
    """Average precision (sklearn), the area under the precision-recall curve; NaN without frauds."""
    from sklearn.metrics import average_precision_score

    y_arr, p_arr = _arrays(y, probability, "average_precision")
    return float(average_precision_score(y_arr, p_arr)) if y_arr.sum() > 0 else math.nan


def recall_at_fpr(y: Any, probability: Any, fpr: float = 0.01) -> float:
    """The highest recall of a threshold ``p >= t`` whose false-positive rate is at most ``fpr``.

    This is the recall a team gets for a fixed budget of false alarms among genuine events.
    NaN when ``y`` has a single class.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"The 'fpr' parameter of recall_at_fpr must be in [0, 1]; got {fpr!r}")
    y_arr, p_arr = _arrays(y, probability, "recall_at_fpr")
    if not _both_classes(y_arr):
        return math.nan
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(y_arr, p_arr, drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def expected_calibration_error(y: Any, probability: Any, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-width bins of ``[0, 1]``.

    ``ECE = Σ_b (n_b / n) · |mean(y in b) − mean(p in b)|``, bin ``b`` holding
    ``edges[b] <= p < edges[b + 1]`` with ``edges = linspace(0, 1, bins + 1)`` (the last bin
    also holds ``p = 1``); empty bins count 0. Equal-width bins make it simple and
    comparable across models, but at fraud rates most events sit in the first bin, so a model
    can have a small ECE and still be miscalibrated in the high-score bins that drive
    decisions: read it with the reliability of the top bins. NaN for no events.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"The 'bins' parameter of expected_calibration_error must be an integer "
                         f">= 1; got {bins!r}")
    y_arr, p_arr = _arrays(y, probability, "expected_calibration_error")
    if not y_arr.size:
        return math.nan
    if (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("expected_calibration_error: 'probability' must be in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p_arr, side="right") - 1, 0, bins - 1)
    # per bin, n_b · |mean(y) − mean(p)| = |Σy − Σp|; empty bins give 0
    gap = np.abs(np.bincount(index, weights=y_arr, minlength=bins)
                 - np.bincount(index, weights=p_arr, minlength=bins))
    return float(gap.sum() / y_arr.size)


def daily_card_precision(event_time: Any, card_id: Any, y: Any, probability: Any,
                         k: int) -> tuple[np.ndarray, np.ndarray]:
    """The UTC days and each day's Card Precision@k, in the handbook's procedure.

    Their mean is :func:`card_precision_at_k`: per day in order, cards detected
    on earlier days are dropped, each card gets its day's maximum score and label, the top
    ``k`` cards (ties: smaller ``card_id``) are checked, and their frauds join the detected set.
    """
    days = np.asarray(event_time).astype("datetime64[D]")
    cards = np.asarray(card_id, dtype=object)
    y_arr = np.asarray(y, dtype=np.int8)
    p = np.asarray(probability, dtype=np.float64)
    detected: set[Any] = set()
    unique_days = np.unique(days)
    precisions = np.empty(len(unique_days))
    for i, day in enumerate(unique_days):
        today = days == day
        names, code = np.unique(cards[today], return_inverse=True)
        code = code.reshape(-1)
        top_score = np.full(len(names), -np.inf)
        np.maximum.at(top_score, code, p[today])
        top_label = np.zeros(len(names), dtype=np.int8)
        np.maximum.at(top_label, code, y_arr[today])
        alive = np.fromiter((n not in detected for n in names), dtype=bool, count=len(names))
        candidates = np.flatnonzero(alive)
        chosen = candidates[np.argsort(-top_score[candidates], kind="stable")][:k]
        hits = chosen[top_label[chosen] == 1]
        precisions[i] = len(hits) / k
        detected.update(names[hits].tolist())
    return unique_days, precisions


def card_precision_at_k(event_time: Any, card_id: Any, y: Any, probability: Any,
                        k: int = 100) -> float:
    """Card Precision@k, the handbook's daily metric for a team that can check k cards a day.

    For each UTC day with events, in order: drop the cards detected on earlier days; per card,
    take the maximum score and the maximum label over the day's events; take the ``k`` cards
    with the highest scores (ties: smaller ``card_id`` first); the day's precision is
    frauds among them / ``k`` (also when fewer than ``k`` cards remain); those frauds join the
    detected set. The result is the mean over the days. NaN for no events.

    ``card_id`` should be unique across tenants (combine it with the tenant otherwise).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"The 'k' parameter of card_precision_at_k must be an integer >= 1; got {k!r}")
    y_arr, p_arr = _arrays(y, probability, "card_precision_at_k")
    times = np.asarray(event_time).astype("datetime64[us]")
    cards = np.asarray(card_id, dtype=object)
    if times.shape != y_arr.shape or cards.shape != y_arr.shape:
        raise ValueError("card_precision_at_k: 'event_time', 'card_id', 'y' and 'probability' must "
                         "have one length")
    if not y_arr.size:
        return math.nan
    _, precisions = daily_card_precision(times, cards, y_arr, p_arr, k)
    return float(np.mean(precisions))


@dataclass(frozen=True)
class CostView:
    """Money at one alert threshold: fraud amount stopped minus the cost of reviewing alerts.

    Attributes
    ----------
    threshold : float
        Events with ``probability >= threshold`` alert.
    alerts, frauds_caught, frauds_missed : int
    fraud_amount_caught, fraud_amount_missed : float
        Amounts (major units) of the frauds that alert / do not.
    review_cost : float
        ``alerts × review_cost_per_alert``.
    net_savings : float
        ``fraud_amount_caught − review_cost``.
    """

    threshold: float
    alerts: int
    frauds_caught: int
    frauds_missed: int
    fraud_amount_caught: float
    fraud_amount_missed: float
    review_cost: float
    net_savings: float


def cost_view(y: Any, probability: Any, amount: Any, threshold: float,
              review_cost: float) -> CostView:
    """What a threshold is worth: fraud money caught minus ``review_cost`` per alert.

    A simple first-order view (every alerted fraud is stopped in full; genuine alerts cost
    only the review), enough to compare thresholds and models in money rather than rates.
    """
    y_arr, p_arr = _arrays(y, probability, "cost_view")
    amounts = np.asarray(amount, dtype=np.float64)
    if amounts.shape != y_arr.shape:
        raise ValueError(f"cost_view: 'amount' must have the shape of 'y' {y_arr.shape}; "
                         f"got {amounts.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"The 'threshold' parameter of cost_view must be in [0, 1]; got {threshold!r}")
    if not review_cost >= 0:
        raise ValueError(f"The 'review_cost' parameter of cost_view must be >= 0; got {review_cost!r}")
    alert = p_arr >= threshold
    fraud = y_arr == 1
    caught = float(amounts[alert & fraud].sum())
    cost = float(alert.sum()) * float(review_cost)
    return CostView(threshold=float(threshold), alerts=int(alert.sum()),
                    frauds_caught=int((alert & fraud).sum()),
                    frauds_missed=int((~alert & fraud).sum()),
                    fraud_amount_caught=caught,
                    fraud_amount_missed=float(amounts[~alert & fraud].sum()),
                    review_cost=cost, net_savings=caught - cost)


@dataclass(frozen=True)
class SliceMetrics:
    """The metrics of one slice of events (all, one tenant, one segment)."""

    n_events: int
    n_frauds: int
    fraud_rate: float
    roc_auc: float
    average_precision: float
    card_precision_at_k: float
    recall_at_fpr: float
    expected_calibration_error: float
    cost: CostView | None = None


@dataclass(frozen=True)
class Metrics:
    """:func:`evaluate`'s result: overall, per tenant and per segment.

    ``to_dict()`` gives plain JSON-ready values (NaN as ``None``); ``flat()`` gives
    ``{"overall.roc_auc": …, "tenant.<t>.roc_auc": …}`` floats, as an experiment tracker logs.
    """

    k: int
    fpr: float
    bins: int
    overall: SliceMetrics
    by_tenant: dict[str, SliceMetrics] = field(default_factory=dict)
    by_segment: dict[str, SliceMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values; NaN becomes ``None`` so that the result is valid JSON."""
        out: dict[str, Any] = _json_ready(asdict(self))
        return out

    def flat(self) -> dict[str, float]:
        """Every numeric metric under a dotted name (NaN kept), for ``log_metrics``."""
        out: dict[str, float] = {}
        slices = [("overall", self.overall)]
        slices += [(f"tenant.{t}", m) for t, m in self.by_tenant.items()]
        slices += [(f"segment.{s}", m) for s, m in self.by_segment.items()]
        for prefix, metrics in slices:
            for name, value in asdict(metrics).items():
                if isinstance(value, dict):
                    out.update({f"{prefix}.cost.{n}": float(v) for n, v in value.items()})
                elif value is not None:
                    out[f"{prefix}.{name}"] = float(value)
        return out


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _slice(dataset: Dataset, p: np.ndarray, cards: np.ndarray, *, k: int, fpr: float, bins: int,
           threshold: float | None, review_cost: float) -> SliceMetrics:
    y = dataset.y
    n = len(y)
    return SliceMetrics(
        n_events=n, n_frauds=int(y.sum()), fraud_rate=float(y.mean()) if n else math.nan,
        roc_auc=roc_auc(y, p), average_precision=average_precision(y, p),
        card_precision_at_k=card_precision_at_k(dataset.event_time, cards, y, p, k=k),
        recall_at_fpr=recall_at_fpr(y, p, fpr) if n else math.nan,
        expected_calibration_error=expected_calibration_error(y, p, bins),
        cost=None if threshold is None else cost_view(y, p, dataset.amount, threshold, review_cost))


def evaluate(dataset: Dataset, probability: Any, *, k: int = 100, fpr: float = 0.01,
             bins: int = 10, segments: Sequence[Any] | np.ndarray | None = None,
             threshold: float | None = None, review_cost: float = 0.0) -> Metrics:
    """Every metric overall, per tenant and per segment label.

    Parameters
    ----------
    dataset : Dataset
        The evaluated events (for the handbook protocol: the test window without
        known-compromised cards).
    probability : array of float, shape (n,)
        Calibrated probability of fraud per row.
    k, fpr, bins : int, float, int
        Card Precision@k's k, recall_at_fpr's FPR budget, the calibration-error bins.
    segments : array, shape (n,), optional
        A label per row (a country, a channel, an amount band …); metrics per distinct label.
    threshold, review_cost : float, optional
        When ``threshold`` is given, each slice also gets its :class:`CostView`.

    Notes
    -----
    Cards are counted per tenant: overall Card Precision@k treats ``(tenant, card_id)`` as
    the card, so that two tenants' equal card ids do not merge.
    """
    p = np.asarray(probability, dtype=np.float64)
    if p.shape != (len(dataset),):
        raise ValueError(f"evaluate: 'probability' must have shape ({len(dataset)},); got {p.shape}")
    options = {"k": k, "fpr": fpr, "bins": bins, "threshold": threshold, "review_cost": review_cost}
    tenants = np.unique(dataset.tenant) if len(dataset) else np.array([], dtype=object)
    cards = dataset.card_id if len(tenants) <= 1 else \
        np.array([f"{t}\x1f{c}" for t, c in zip(dataset.tenant, dataset.card_id, strict=True)],
                 dtype=object)
    overall = _slice(dataset, p, cards, **options)  # type: ignore[arg-type]
    by_tenant = {}
    for tenant in tenants:
        rows = dataset.tenant == tenant
        by_tenant[str(tenant)] = _slice(dataset.subset(rows), p[rows], dataset.card_id[rows],
                                        **options)  # type: ignore[arg-type]
    by_segment = {}
    if segments is not None:
        labels = np.asarray(segments).astype(str)
        if labels.shape != (len(dataset),):
            raise ValueError(f"evaluate: 'segments' must have shape ({len(dataset)},); got {labels.shape}")
        for label in np.unique(labels):
            rows = labels == label
            by_segment[str(label)] = _slice(dataset.subset(rows), p[rows], cards[rows],
                                            **options)  # type: ignore[arg-type]
    return Metrics(k=k, fpr=fpr, bins=bins, overall=overall, by_tenant=by_tenant,
                   by_segment=by_segment)


def error_analysis(dataset: Dataset, probability: Any, top: int = 20,
                   threshold: float = 0.5) -> pa.Table:
    """The most confident mistakes at ``threshold``, with their feature values.

    Returns the ``top`` false positives (genuine, highest probability first) then the ``top``
    false negatives (fraud, lowest probability first): columns ``kind`` ("false_positive" /
    "false_negative"), ``rank``, ``tenant``, ``event_id``, ``event_time``, ``card_id``,
    ``amount``, ``y``, ``probability`` and every feature. These are the rows an analyst reads
    first to find a missing feature or a wrong label.
    """
    p = np.asarray(probability, dtype=np.float64)
    if p.shape != (len(dataset),):
        raise ValueError(f"error_analysis: 'probability' must have shape ({len(dataset)},); "
                         f"got {p.shape}")
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"The 'top' parameter of error_analysis must be an integer >= 1; got {top!r}")
    false_positive = np.flatnonzero((dataset.y == 0) & (p >= threshold))
    false_negative = np.flatnonzero((dataset.y == 1) & (p < threshold))
    fp = false_positive[np.argsort(-p[false_positive], kind="stable")][:top]
    fn = false_negative[np.argsort(p[false_negative], kind="stable")][:top]
    rows = np.concatenate([fp, fn]).astype(np.intp)
    kinds = ["false_positive"] * len(fp) + ["false_negative"] * len(fn)
    ranks = list(range(1, len(fp) + 1)) + list(range(1, len(fn) + 1))
    columns: dict[str, Any] = {
        "kind": pa.array(kinds, pa.string()),
        "rank": pa.array(ranks, pa.int32()),
        "tenant": pa.array(dataset.tenant[rows].tolist(), pa.string()),
        "event_id": pa.array(dataset.event_id[rows].tolist(), pa.string()),
        "event_time": pa.array(dataset.event_time[rows], pa.timestamp("us", tz="UTC")),
        "card_id": pa.array(dataset.card_id[rows].tolist(), pa.string()),
        "amount": pa.array(dataset.amount[rows], pa.float64()),
        "y": pa.array(dataset.y[rows], pa.int8()),
        "probability": pa.array(p[rows], pa.float64()),
    }
    for j, name in enumerate(dataset.feature_names):
        if name in columns:
            name = f"feature.{name}"
        columns[name] = pa.array(dataset.X[rows, j], pa.float64(), from_pandas=True)
    return pa.table(columns)
