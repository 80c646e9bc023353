"""The action policy: from a calibrated probability to ALLOW, REVIEW or PREVENT.

Thresholds are chosen on validation data under the constraints a fraud team states: a target
precision for automatic blocking (PREVENT) and a review team's daily capacity (REVIEW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Action = Literal["ALLOW", "REVIEW", "PREVENT"]
_ACTIONS = np.array(["ALLOW", "REVIEW", "PREVENT"], dtype=object)


def _check_threshold(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"The {name!r} parameter of ActionPolicy must be a probability in [0, 1] "
                         f"or None; got {value!r}")


@dataclass(frozen=True)
class ActionPolicy:
    """Thresholds on the calibrated probability of fraud.

    ``probability >= prevent_threshold`` → PREVENT; else ``probability >= review_threshold``
    → REVIEW; else ALLOW. ``None`` disables an action (no PREVENT when the target precision
    was unreachable on validation data; no REVIEW when not even the highest scores fit the
    capacity).

    Parameters
    ----------
    review_threshold, prevent_threshold : float or None
        Probabilities in ``[0, 1]``; ``review_threshold <= prevent_threshold`` when both are set.
    constraints : dict
        What the thresholds were chosen for and what they achieved on validation data
        (:func:`choose_policy` fills it; ``note`` explains a disabled action).

    Notes
    -----
    Actions are decided on the probability, not on the displayed 0–100 :meth:`score`, so two
    events shown with the same score can straddle a threshold.

    Examples
    --------
    >>> policy = ActionPolicy(review_threshold=0.3, prevent_threshold=0.9)
    >>> policy.action(0.95), policy.action(0.5), policy.action(0.1)
    ('PREVENT', 'REVIEW', 'ALLOW')
    >>> policy.score(0.954)
    95
    >>> ActionPolicy.from_dict(policy.to_dict()) == policy
    True
    """

    review_threshold: float | None
    prevent_threshold: float | None
    constraints: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_threshold("review_threshold", self.review_threshold)
        _check_threshold("prevent_threshold", self.prevent_threshold)
        if self.review_threshold is not None and self.prevent_threshold is not None \
                and self.review_threshold > self.prevent_threshold:
            raise ValueError(f"ActionPolicy: 'review_threshold' ({self.review_threshold}) must not "
                             f"exceed 'prevent_threshold' ({self.prevent_threshold})")

    def action(self, probability: float) -> Action:
        """The action for one calibrated probability."""
        if self.prevent_threshold is not None and probability >= self.prevent_threshold:
            return "PREVENT"
        if self.review_threshold is not None and probability >= self.review_threshold:
            return "REVIEW"
        return "ALLOW"

    def actions(self, probability: np.ndarray) -> np.ndarray:
        """The actions (object array of str) for an array of probabilities."""
        p = np.asarray(probability, dtype=np.float64)
        level = np.zeros(p.shape, dtype=np.int8)
        if self.review_threshold is not None:
            level[p >= self.review_threshold] = 1
        if self.prevent_threshold is not None:
            level[p >= self.prevent_threshold] = 2
        return _ACTIONS[level]

    @staticmethod
    def score(probability: float) -> int:
        """The 0–100 score shown to users: ``round(100 · p)`` (half to even), clipped."""
        return int(min(100.0, max(0.0, float(np.rint(100.0 * probability)))))

    @staticmethod
    def scores(probability: np.ndarray) -> np.ndarray:
        """:meth:`score` of every element, as int16."""
        return np.clip(np.rint(100.0 * np.asarray(probability, dtype=np.float64)), 0, 100) \
            .astype(np.int16)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, for the model artifact."""
        return {"review_threshold": self.review_threshold,
                "prevent_threshold": self.prevent_threshold,
                "constraints": dict(self.constraints)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionPolicy:
        """The policy :meth:`to_dict` wrote; raises ``ValueError`` naming a missing key."""
        missing = [k for k in ("review_threshold", "prevent_threshold") if k not in data]
        if missing:
            raise ValueError(f"ActionPolicy.from_dict: missing key(s) {missing}; got {sorted(data)}")
        return cls(review_threshold=data["review_threshold"],
                   prevent_threshold=data["prevent_threshold"],
                   constraints=dict(data.get("constraints") or {}))


def _validate(y: Any, probability: Any, event_time: Any, review_capacity_per_day: float,
              prevent_precision: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    caller = "choose_policy"
    y_arr = np.asarray(y)
    p = np.asarray(probability, dtype=np.float64)
    times = np.asarray(event_time)
    if y_arr.ndim != 1 or p.shape != y_arr.shape or times.shape != y_arr.shape:
        raise ValueError(f"{caller}: 'y', 'probability' and 'event_time' must be 1-d arrays of "
                         f"one length; got shapes {y_arr.shape}, {p.shape}, {times.shape}")
    if not y_arr.size:
        raise ValueError(f"{caller}: the validation data is empty")
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError(f"{caller}: 'y' must hold only 0 and 1; got {np.unique(y_arr)[:5].tolist()}")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError(f"{caller}: 'probability' must be finite probabilities in [0, 1]")
    if not np.issubdtype(times.dtype, np.datetime64):
        raise ValueError(f"{caller}: 'event_time' must be datetime64; got dtype {times.dtype}")
    if isinstance(review_capacity_per_day, bool) \
            or not isinstance(review_capacity_per_day, int | float | np.integer | np.floating) \
            or not review_capacity_per_day >= 0 or math.isinf(review_capacity_per_day):
        raise ValueError(f"The 'review_capacity_per_day' parameter of {caller} must be a finite "
                         f"number >= 0 (events a day); got {review_capacity_per_day!r}")
    if prevent_precision is not None and (
            isinstance(prevent_precision, bool)
            or not isinstance(prevent_precision, int | float | np.floating)
            or not 0.0 < prevent_precision <= 1.0):
        raise ValueError(f"The 'prevent_precision' parameter of {caller} must be a float in (0, 1] "
                         f"or None (no PREVENT); got {prevent_precision!r}")
    return y_arr.astype(np.int64), p, times.astype("datetime64[D]")


def choose_policy(y: Any, probability: Any, event_time: Any, *, review_capacity_per_day: float,
                  prevent_precision: float | None) -> ActionPolicy:
    """Choose PREVENT and REVIEW thresholds on validation data.

    Parameters
    ----------
    y, probability, event_time : arrays of shape (n,)
        Validation labels (0/1), calibrated probabilities and event times.
    review_capacity_per_day : float
        How many events a day the review team can handle.
    prevent_precision : float in (0, 1] or None
        The precision automatic blocking must reach; ``None`` for no PREVENT.

    Returns
    -------
    ActionPolicy
        ``prevent_threshold`` is the lowest threshold ``t`` (among the validation
        probabilities) with precision of ``p >= t`` at least ``prevent_precision``: it blocks
        as much fraud as the precision target allows. ``None`` when no threshold reaches it
        (then nothing is blocked automatically; ``constraints['note']`` says so).
        ``review_threshold`` is the lowest threshold that sends on average at most
        ``review_capacity_per_day`` events a day to REVIEW (``t <= p < prevent_threshold``),
        the days counted from the first to the last validation day inclusive. It equals
        ``prevent_threshold`` (an empty REVIEW band) or is ``None`` when even the highest
        scores below PREVENT exceed the capacity.
    """
    y_arr, p, days = _validate(y, probability, event_time, review_capacity_per_day,
                               prevent_precision)
    n_days = int((days.max() - days.min()).astype(np.int64)) + 1
    values = np.unique(p)[::-1]  # candidate thresholds, highest first
    order = np.argsort(-p, kind="stable")
    # alerts and frauds at threshold values[i]: every event with p >= values[i]
    ends = np.searchsorted(-p[order], -values, side="right")
    alerts = ends
    frauds = np.concatenate([[0], np.cumsum(y_arr[order])])[ends]
    notes = []
    prevent: float | None = None
    achieved_precision = math.nan
    if prevent_precision is not None:
        ok = frauds >= prevent_precision * alerts - 1e-12 * alerts
        if ok.any():
            i = int(np.flatnonzero(ok)[-1])  # lowest threshold reaching the target
            prevent = float(values[i])
            achieved_precision = float(frauds[i] / alerts[i])
        else:
            notes.append(f"prevent_precision {prevent_precision} is not reached by any threshold on "
                         "the validation data: no PREVENT")
    above_prevent = 0 if prevent is None else int((p >= prevent).sum())
    band = alerts - above_prevent  # events in [values[i], prevent)
    fits = (band / n_days <= review_capacity_per_day) & \
        (np.ones_like(values, dtype=bool) if prevent is None else values < prevent)
    review: float | None
    if fits.any():
        i = int(np.flatnonzero(fits)[-1])
        review = float(values[i])
        reviews_per_day = float(band[i] / n_days)
    elif prevent is not None:
        review, reviews_per_day = prevent, 0.0
        notes.append("the highest scores below PREVENT exceed the review capacity: no REVIEW band")
    else:
        review, reviews_per_day = None, 0.0
        notes.append("the highest scores exceed the review capacity: no REVIEW")
    constraints: dict[str, Any] = {
        "review_capacity_per_day": float(review_capacity_per_day),
        "prevent_precision": None if prevent_precision is None else float(prevent_precision),
        "validation_days": n_days,
        "validation_events": int(y_arr.size),
        "reviews_per_day": reviews_per_day,
        "prevent_precision_achieved": None if math.isnan(achieved_precision) else achieved_precision,
        "prevents_per_day": above_prevent / n_days,
    }
    if notes:
        constraints["note"] = "; ".join(notes)
    return ActionPolicy(review_threshold=review, prevent_threshold=prevent, constraints=constraints)
