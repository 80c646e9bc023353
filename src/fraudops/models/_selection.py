"""Feature selection: keep the candidate features that earn their place on a later time window.

Every feature a model uses must be computed online within the latency budget, monitored for
drift and kept in parity; a feature that adds nothing is pure cost, and pure-noise features
also make the model less stable from one retrain to the next. Selection here is cheap and
deterministic:

1. drop features that are constant (or all missing) in the training window;
2. fit one quick LightGBM on train (negatives down-sampled, weighted) early-stopped on the
   validation window, and rank the features by total gain; drop those with zero gain;
3. fit the same quick model on the top-k features for a short ladder of k
   (1, 2, 3, 5, 8, ... all) and keep the smallest k whose validation average precision is
   within ``tolerance`` of the best one.

About ``log(d)`` quick fits in all, each on at most ``max_rows`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudops.core import Progress, null_progress

from ._dataset import Dataset

_QUICK_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "average_precision",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 1.0,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}


@dataclass(frozen=True)
class FeatureSelection:
    """What :func:`select_features` kept, and why it dropped the rest.

    Attributes
    ----------
    kept : tuple of str
        The selected features, most important first.
    importances : dict of str to float
        Gain importance of every ranked feature in the full quick model.
    dropped : dict of str to str
        Each dropped feature and the reason.
    scores : dict of int to float
        Validation average precision of the quick model on the top-k features, per k tried.
    """

    kept: tuple[str, ...]
    importances: dict[str, float]
    dropped: dict[str, str]
    scores: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON form, stored with the trained model's params."""
        return {"kept": list(self.kept), "importances": self.importances, "dropped": self.dropped,
                "scores": {str(k): v for k, v in self.scores.items()}}


def select_features(
    train: Dataset,
    valid: Dataset,
    *,
    tolerance: float = 0.005,
    max_rows: int = 300_000,
    num_boost_round: int = 300,
    random_state: int = 0,
    num_threads: int = 2,
    progress: Progress = null_progress,
) -> FeatureSelection:
    """Choose the features worth keeping, using a later ``valid`` window as the judge.

    Parameters
    ----------
    train, valid : Dataset
        The training data and a later validation window (both with frauds).
    tolerance : float, default=0.005
        Keep the smallest top-k whose validation average precision is at least
        ``best - tolerance`` (absolute AP).
    max_rows : int, default=300_000
        Non-fraud training rows are down-sampled (and weighted) to about this many rows in
        total, so selection stays in seconds on millions of rows; every fraud is kept.
    num_boost_round : int, default=300
        Upper bound on the rounds of each quick model (early stopping after 30 without gain).
    random_state : int, default=0
    num_threads : int, default=2
    progress : callable
        ``progress("select", done, total)`` after each quick fit.

    Returns
    -------
    FeatureSelection
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"The 'tolerance' parameter of select_features must be in [0, 1); got {tolerance!r}")
    if max_rows < 1:
        raise ValueError(f"The 'max_rows' parameter of select_features must be >= 1; got {max_rows!r}")
    names = list(train.feature_names)
    x, y, weight = _sample(np.asarray(train.X, dtype=np.float64), np.asarray(train.y), max_rows, random_state)
    xv, yv = np.asarray(valid.X, dtype=np.float64), np.asarray(valid.y).astype(np.int8)
    dropped: dict[str, str] = {}

    informative: list[int] = []
    for j, name in enumerate(names):
        col = x[:, j]
        finite = col[~np.isnan(col)]
        if finite.size == 0:
            dropped[name] = "all missing in the training window"
        elif finite.min() == finite.max():
            dropped[name] = "constant in the training window"
        else:
            informative.append(j)
    if not informative:
        raise ValueError("select_features: every candidate feature is constant or missing in training")

    params = {**_QUICK_PARAMS, "seed": random_state, "num_threads": num_threads}
    gains, full_ap = _quick_fit(x, y, weight, xv, yv, informative, names, params, num_boost_round)
    importances = {names[j]: float(g) for j, g in zip(informative, gains, strict=True)}
    ranked = [j for _, j in sorted(((-g, j) for j, g in zip(informative, gains, strict=True)))]
    nonzero = [j for j in ranked if importances[names[j]] > 0]
    for j in ranked:
        if importances[names[j]] <= 0:
            dropped[names[j]] = "zero gain importance in the ranking model"
    if not nonzero:
        nonzero = ranked[:1]
        dropped.pop(names[nonzero[0]], None)

    # Zero-gain features take no split, so the full model is also the model of the nonzero ones.
    ladder = _ladder(len(nonzero))
    total = len(ladder)
    progress("select", 1, total)
    scores: dict[int, float] = {}
    for done, k in enumerate(ladder, start=1):
        if k == len(nonzero):
            scores[k] = full_ap
        else:
            _, scores[k] = _quick_fit(x, y, weight, xv, yv, nonzero[:k], names, params, num_boost_round)
        progress("select", done, total)
    best = max(scores.values())
    k_chosen = min(k for k, ap in scores.items() if ap >= best - tolerance)
    for rank, j in enumerate(nonzero[k_chosen:], start=k_chosen + 1):
        dropped[names[j]] = (f"rank {rank} by gain; the top {k_chosen} reach validation AP "
                             f"{scores[k_chosen]:.4f}, within {tolerance} of the best {best:.4f}")
    kept = tuple(names[j] for j in nonzero[:k_chosen])
    return FeatureSelection(kept=kept, importances=importances, dropped=dropped, scores=scores)


def _ladder(n: int) -> list[int]:
    """Sizes to try: Fibonacci-like 1, 2, 3, 5, 8, 13, 21, ... and always ``n`` itself."""
    sizes, a, b = [], 1, 2
    while a < n:
        sizes.append(a)
        a, b = b, a + b
    sizes.append(n)
    return sizes


def _sample(x: npt.NDArray[np.float64], y: npt.NDArray[Any], max_rows: int, seed: int
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8], npt.NDArray[np.float64] | None]:
    labels = (y == 1).astype(np.int8)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if len(labels) <= max_rows or n_neg == 0:
        return x, labels, None
    rate = max(1, max_rows - n_pos) / n_neg
    if rate >= 1:
        return x, labels, None
    keep = (labels == 1) | (np.random.default_rng(seed).random(len(labels)) < rate)
    return x[keep], labels[keep], np.where(labels[keep] == 1, 1.0, 1.0 / rate)


def _quick_fit(x: npt.NDArray[np.float64], y: npt.NDArray[np.int8], weight: npt.NDArray[np.float64] | None,
               xv: npt.NDArray[np.float64], yv: npt.NDArray[np.int8], columns: list[int], names: list[str],
               params: dict[str, Any], rounds: int) -> tuple[npt.NDArray[np.float64], float]:
    """Gain per column and validation AP of a quick early-stopped LightGBM on ``columns``."""
    import lightgbm as lgb

    cols = [names[j] for j in columns]
    dtrain = lgb.Dataset(x[:, columns], label=y, weight=weight, feature_name=cols,
                         params={"verbosity": -1, "max_bin": params["max_bin"]})
    dvalid = lgb.Dataset(xv[:, columns], label=yv, reference=dtrain, feature_name=cols)
    booster = lgb.train(params, dtrain, num_boost_round=rounds, valid_sets=[dvalid], valid_names=["valid"],
                        callbacks=[lgb.early_stopping(30, first_metric_only=True, verbose=False)])
    gains = np.asarray(booster.feature_importance(importance_type="gain",
                                                  iteration=booster.best_iteration), dtype=np.float64)
    ap = float(booster.best_score["valid"]["average_precision"])
    return gains, ap
