"""Training: a LightGBM fraud model (or a logistic-regression baseline), early-stopped and
calibrated on a later time window, optionally on a selected subset of the features.

Fraud data moves in time: fraudsters adapt, and labels of the last days are incomplete. So the
validation data that stops boosting and fits the calibration is always the *latest* part of the
training period, never a random sample (a random split leaks the future into training and
over-states every metric).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from fraudops.core import Progress, null_progress

from ._artifact import TrainedModel
from ._calibration import CALIBRATION_KINDS, Calibrator, fit_calibrator
from ._dataset import Dataset
from ._metrics import average_precision, expected_calibration_error, roc_auc

if TYPE_CHECKING:
    import lightgbm as lgb

MODEL_KINDS: tuple[str, ...] = ("lightgbm", "logistic")

#: LightGBM defaults for rare positives, measured on the handbook data (see ``docs``/the
#: benchmark): a moderate learning rate with early stopping, leaves large enough for feature
#: interactions, ``min_child_samples`` high enough that a leaf holds a few frauds, row and
#: column subsampling plus an L2 penalty against memorising the few positives. No class
#: weighting: ``scale_pos_weight`` / ``is_unbalance`` did not raise average precision and they
#: destroy calibration (the calibrator would have to undo them).
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "objective": "binary",
    "metric": "average_precision",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}

# Parameters that fit() owns: setting them in ``params`` would silently fight the trainer.
_OWNED_PARAMS = {
    "num_iterations": "num_boost_round", "num_iteration": "num_boost_round",
    "n_iter": "num_boost_round", "num_tree": "num_boost_round", "num_trees": "num_boost_round",
    "num_round": "num_boost_round", "num_rounds": "num_boost_round", "nrounds": "num_boost_round",
    "num_boost_round": "num_boost_round", "n_estimators": "num_boost_round",
    "max_iter": "num_boost_round",
    "early_stopping_round": "early_stopping_rounds", "early_stopping_rounds": "early_stopping_rounds",
    "early_stopping": "early_stopping_rounds", "n_iter_no_change": "early_stopping_rounds",
    "seed": "random_state", "random_seed": "random_state", "random_state": "random_state",
}

_DAY = np.timedelta64(1, "D")


class FraudTrainer:
    """Train a calibrated fraud model from a :class:`Dataset`.

    Parameters
    ----------
    model : {"lightgbm", "logistic"}, default="lightgbm"
        ``"logistic"`` is the baseline a release gate compares against: median imputation,
        standard scaling and ``LogisticRegression(C=1)``, stored as plain numbers.
    params : dict or None, default=None
        LightGBM parameters that override :data:`LIGHTGBM_DEFAULTS`. The number of rounds,
        early stopping and the seed are set through the trainer's own parameters.
    num_boost_round : int, default=2000
        Upper bound on boosting rounds; early stopping usually ends far earlier.
    early_stopping_rounds : int, default=100
        Stop when the validation average precision has not improved for this many rounds.
    validation_days : float, default=7
        When ``fit`` gets no ``valid``, the last ``validation_days`` days of ``train`` become
        the validation window (early stopping, calibration) and the model learns on the rest.
    calibration : {"sigmoid", "isotonic"} or None, default="sigmoid"
        Map fitted on the validation window from the raw score to a probability; sigmoid keeps
        the ranking (isotonic's flat steps create ties that lower AP).
    feature_selection : bool, default=False
        Select features first (:func:`select_features`) on the same train/validation split.
    negative_sample_rate : float, default=1.0
        Keep this fraction of non-fraud training rows (weighted by its inverse). 1.0 keeps all;
        below 1 trades a little accuracy for training speed on very large data.
    num_threads : int or None, default=None
        LightGBM threads; ``None`` means ``min(4, cpu count)``. Recorded in the resolved params,
        because LightGBM's results are reproducible for a fixed thread count.
    random_state : int, default=0
        Seed of LightGBM's bagging and feature subsampling and of negative sampling.

    Attributes
    ----------
    booster_ : lightgbm.Booster or None
        The booster cut at its best iteration (LightGBM only).
    coef_ : numpy.ndarray or None
        Logistic coefficients on standardised features (logistic only).
    feature_names_ : tuple of str
    best_iteration_ : int
        Boosting rounds kept (LightGBM); solver iterations (logistic).
    importances_ : dict of str to float
        Total gain per feature (LightGBM) or absolute standardised coefficient (logistic).
    calibrator_ : Calibrator or None
    validation_metrics_ : dict
        On the validation window: rows, frauds, time range, raw and calibrated AP/AUC, ECE.
    selection_ : FeatureSelection or None
        What feature selection kept and dropped, and why.
    params_ : dict
        Every parameter used, resolved (stored in the artifact).
    data_fingerprint_ : str

    Examples
    --------
    >>> trainer = FraudTrainer(model="logistic", calibration="sigmoid")
    >>> trainer.validation_days
    7
    """

    def __init__(
        self,
        *,
        model: str = "lightgbm",
        params: dict[str, Any] | None = None,
        num_boost_round: int = 2000,
        early_stopping_rounds: int = 100,
        validation_days: float = 7,
        calibration: str | None = "sigmoid",
        feature_selection: bool = False,
        negative_sample_rate: float = 1.0,
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_days = validation_days
        self.calibration = calibration
        self.feature_selection = feature_selection
        self.negative_sample_rate = negative_sample_rate
        self.num_threads = num_threads
        self.random_state = random_state

    # -- sklearn-style parameter handling ------------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, by name."""
        names = ("model", "params", "num_boost_round", "early_stopping_rounds", "validation_days",
                 "calibration", "feature_selection", "negative_sample_rate", "num_threads",
                 "random_state")
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters; they are validated by the next ``fit``."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"FraudTrainer has no parameter {key!r}; parameters: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def _validate_params(self) -> None:
        def fail(name: str, allowed: str, got: Any) -> ValueError:
            return ValueError(f"The {name!r} parameter of FraudTrainer must be {allowed}; got {got!r}")

        if self.model not in MODEL_KINDS:
            raise fail("model", f"one of {MODEL_KINDS}", self.model)
        if self.params is not None:
            if not isinstance(self.params, dict):
                raise fail("params", "a dict of LightGBM parameters or None", self.params)
            for key in self.params:
                if key in _OWNED_PARAMS:
                    raise ValueError(f"The 'params' parameter of FraudTrainer must not set {key!r}: "
                                     f"use FraudTrainer({_OWNED_PARAMS[key]}=...) instead")
        for name in ("num_boost_round", "early_stopping_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(name, "an int >= 1", value)
        vd = self.validation_days
        if isinstance(vd, bool) or not isinstance(vd, int | float) or not vd > 0:
            raise fail("validation_days", "a number of days > 0", vd)
        if self.calibration is not None and self.calibration not in CALIBRATION_KINDS:
            raise fail("calibration", f"one of {(*CALIBRATION_KINDS, None)}", self.calibration)
        if not isinstance(self.feature_selection, bool):
            raise fail("feature_selection", "True or False", self.feature_selection)
        rate = self.negative_sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise fail("negative_sample_rate", "a float in (0, 1]", rate)
        nt = self.num_threads
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, int) or nt < 1):
            raise fail("num_threads", "an int >= 1 or None", nt)
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, int):
            raise fail("random_state", "an int", self.random_state)

    # -- training --------------------------------------------------------------------------

    def fit(self, train: Dataset, valid: Dataset | None = None, progress: Progress = null_progress) -> Self:
        """Learn the model on ``train``; stop early and calibrate on ``valid``.

        Parameters
        ----------
        train : Dataset
        valid : Dataset or None
            A later time window. ``None`` carves the last ``validation_days`` days of ``train``.
        progress : callable
            Called as ``progress(stage, done, total)`` with stages ``"select"``, ``"train"``,
            ``"calibrate"``.

        Returns
        -------
        self
        """
        self._validate_params()
        fingerprints = [train.fingerprint()] + ([] if valid is None else [valid.fingerprint()])
        train, valid = self._time_split(train, valid)
        self.data_fingerprint_ = fingerprints[0] if len(fingerprints) == 1 else "+".join(fingerprints)
        self.train_rows_ = len(train)
        self.selection_ = None
        if self.feature_selection:
            from ._selection import select_features

            self.selection_ = select_features(train, valid, random_state=self.random_state,
                                              num_threads=self._threads(), progress=progress)
            train = train.select(list(self.selection_.kept))
            valid = valid.select(list(self.selection_.kept))
        self.feature_names_ = tuple(train.feature_names)
        self.booster_: lgb.Booster | None = None
        self.coef_: npt.NDArray[np.float64] | None = None
        if self.model == "lightgbm":
            raw_valid = self._fit_lightgbm(train, valid, progress)
        else:
            raw_valid = self._fit_logistic(train, valid)
        progress("calibrate", 0, 1)
        self.calibrator_: Calibrator | None = (
            None if self.calibration is None else fit_calibrator(self.calibration, raw_valid, valid.y))
        probability = raw_valid if self.calibrator_ is None else self.calibrator_.apply(raw_valid)
        self.validation_metrics_ = _validation_summary(valid, raw_valid, probability, self.best_iteration_)
        progress("calibrate", 1, 1)
        return self

    def _threads(self) -> int:
        return self.num_threads if self.num_threads is not None else max(1, min(4, os.cpu_count() or 1))

    def _time_split(self, train: Dataset, valid: Dataset | None) -> tuple[Dataset, Dataset]:
        if len(train) == 0:
            raise ValueError("FraudTrainer.fit: the training dataset is empty")
        if valid is None:
            times = np.asarray(train.event_time).astype("datetime64[us]")
            span = np.timedelta64(round(float(self.validation_days) * 86_400_000_000), "us")
            cutoff = times.max() - span
            in_valid = times > cutoff
            if in_valid.all():
                days = (times.max() - times.min()) / _DAY
                raise ValueError(f"The 'validation_days' parameter of FraudTrainer ({self.validation_days}) "
                                 f"covers the whole training data ({days:.1f} days); pass fewer days or "
                                 "a separate valid dataset")
            train, valid = train.subset(~in_valid), train.subset(in_valid)
        else:
            if len(valid) == 0:
                raise ValueError("FraudTrainer.fit: the validation dataset is empty")
            if tuple(valid.feature_names) != tuple(train.feature_names):
                raise ValueError("FraudTrainer.fit: train and valid have different features: "
                                 f"{list(train.feature_names)} vs {list(valid.feature_names)}")
            t_end, v_start = np.max(train.event_time), np.min(valid.event_time)
            if v_start < t_end:
                raise ValueError(f"FraudTrainer.fit: the validation window must come after the training "
                                 f"data (time split, no leak); valid starts {v_start}, train ends {t_end}")
        for name, data in (("training", train), ("validation", valid)):
            if not np.any(np.asarray(data.y) == 1):
                raise ValueError(f"FraudTrainer.fit: the {name} window has no fraud ({len(data)} rows); "
                                 "early stopping and calibration need positives: use a longer period "
                                 "or more validation_days")
        self.validation_window_ = (np.min(valid.event_time), np.max(valid.event_time))
        return train, valid

    def resolved_lightgbm_params(self) -> dict[str, Any]:
        """The LightGBM parameters ``fit`` uses: defaults, then ``params``, then the seed."""
        params = dict(LIGHTGBM_DEFAULTS)
        params.update(self.params or {})
        params["seed"] = self.random_state
        params.setdefault("num_threads", self._threads())
        return params

    def _fit_lightgbm(self, train: Dataset, valid: Dataset, progress: Progress) -> npt.NDArray[np.float64]:
        import lightgbm as lgb

        params = self.resolved_lightgbm_params()
        x, y, weight = _negative_sample(train.X, train.y, self.negative_sample_rate, self.random_state)
        names = list(train.feature_names)
        dtrain = lgb.Dataset(x, label=y, weight=weight, feature_name=names, free_raw_data=True,
                             params={"verbosity": -1, "max_bin": params["max_bin"]})
        dvalid = lgb.Dataset(valid.X, label=valid.y, reference=dtrain, feature_name=names)
        self.evals_: dict[str, dict[str, list[float]]] = {}
        total = self.num_boost_round
        booster = lgb.train(
            params, dtrain, num_boost_round=total, valid_sets=[dvalid], valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False),
                       lgb.record_evaluation(self.evals_), _progress_callback(progress, total)],
        )
        best = booster.best_iteration or booster.current_iteration()
        progress("train", total, total)
        # Keep only the trees that early stopping chose: the artifact and every prediction agree.
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.best_iteration_ = int(best)
        gains = self.booster_.feature_importance(importance_type="gain")
        self.importances_ = {n: float(g) for n, g in zip(names, gains, strict=True)}
        self.params_ = {**params, "num_boost_round": self.num_boost_round,
                        "early_stopping_rounds": self.early_stopping_rounds, **self._common_params()}
        return np.asarray(self.booster_.predict(valid.X), dtype=np.float64)

    def _fit_logistic(self, train: Dataset, valid: Dataset) -> npt.NDArray[np.float64]:
        from sklearn.linear_model import LogisticRegression

        x, y, weight = _negative_sample(train.X, train.y, self.negative_sample_rate, self.random_state)
        with np.errstate(all="ignore"):
            impute = np.nanmedian(x, axis=0) if len(x) else np.zeros(x.shape[1])
        impute = np.where(np.isnan(impute), 0.0, impute)
        filled = np.where(np.isnan(x), impute, x)
        mean = filled.mean(axis=0)
        scale = filled.std(axis=0)
        scale = np.where(scale == 0, 1.0, scale)  # StandardScaler's rule for constant columns
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=self.random_state)
        clf.fit((filled - mean) / scale, y, sample_weight=weight)
        self.coef_ = np.asarray(clf.coef_[0], dtype=np.float64)
        self.logistic_ = {"impute": impute.tolist(), "mean": mean.tolist(), "scale": scale.tolist(),
                          "coef": self.coef_.tolist(), "intercept": float(clf.intercept_[0])}
        self.best_iteration_ = int(np.max(clf.n_iter_))
        self.importances_ = {n: float(abs(c)) for n, c in zip(train.feature_names, self.coef_, strict=True)}
        self.params_ = {"C": 1.0, "max_iter": 1000, "impute": "median", "scale": "standard",
                        **self._common_params()}
        scorer = TrainedModel(kind="logistic", model=self.logistic_, feature_names=tuple(train.feature_names))
        return scorer.predict_raw(valid.X)

    def _common_params(self) -> dict[str, Any]:
        return {"model": self.model, "validation_days": self.validation_days,
                "calibration": self.calibration, "feature_selection": self.feature_selection,
                "negative_sample_rate": self.negative_sample_rate, "random_state": self.random_state}

    # -- output ----------------------------------------------------------------------------

    def to_model(self, *, feature_set_name: str, definition_hash: str, policy: Any = None,
                 metrics: dict[str, Any] | None = None) -> TrainedModel:
        """The artifact of the fitted model (see :class:`TrainedModel`).

        ``policy`` is an ``ActionPolicy`` (stored through its ``to_dict()``) or its dict;
        ``metrics`` defaults to the validation metrics.
        """
        if not hasattr(self, "calibrator_"):
            raise ValueError("This FraudTrainer is not fitted yet; call fit(train, valid) first")
        policy_dict = policy.to_dict() if hasattr(policy, "to_dict") else policy
        if policy_dict is not None and not isinstance(policy_dict, dict):
            raise ValueError(f"The 'policy' parameter of to_model must be an ActionPolicy, a dict or None; "
                             f"got {type(policy).__name__}")
        model: str | dict[str, Any] = (self.booster_.model_to_string() if self.booster_ is not None
                                       else self.logistic_)
        params = dict(self.params_)
        if self.selection_ is not None:
            params["selection"] = self.selection_.to_dict()
        # the period the model was validated on: the release gate's drift reference and age
        start, end = self.validation_window_
        params["validation_window"] = [_utc_iso(start), _utc_iso(end)]
        return TrainedModel(
            kind="lightgbm" if self.booster_ is not None else "logistic",
            model=model, feature_names=self.feature_names_, calibrator=self.calibrator_,
            policy=policy_dict,
            metrics=dict(metrics) if metrics is not None else {"validation": self.validation_metrics_},
            feature_set_name=feature_set_name, definition_hash=definition_hash,
            data_fingerprint=self.data_fingerprint_, params=_jsonable(params),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), importances=self.importances_,
        )


Sample = tuple[npt.NDArray[np.float64], npt.NDArray[np.int8], npt.NDArray[np.float64] | None]


def _utc_iso(moment: Any) -> str:
    """A numpy datetime64 (naive UTC) as an ISO timestamp with its UTC offset."""
    text = np.datetime_as_string(np.datetime64(moment, "us"), unit="us")
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def _negative_sample(x: npt.NDArray[np.float64], y: npt.ArrayLike, rate: float, seed: int) -> Sample:
    labels = np.asarray(y).astype(np.int8)
    if rate >= 1.0:
        return x, labels, None
    rng = np.random.default_rng(seed)
    keep = (labels == 1) | (rng.random(len(labels)) < rate)
    weight = np.where(labels[keep] == 1, 1.0, 1.0 / rate)
    return x[keep], labels[keep], weight


def _progress_callback(progress: Progress, total: int) -> Callable[[Any], None]:
    step = max(1, total // 100)

    def report(env: Any) -> None:
        done = env.iteration + 1
        if done % step == 0:
            progress("train", done, total)

    report.order = 30  # type: ignore[attr-defined]  # after LightGBM's own callbacks
    return report


def _validation_summary(valid: Dataset, raw: npt.NDArray[np.float64], probability: npt.NDArray[np.float64],
                        best_iteration: int) -> dict[str, Any]:
    y = np.asarray(valid.y).astype(np.int8)
    return {
        "rows": len(y), "frauds": int(y.sum()),
        "start": str(np.min(valid.event_time)), "end": str(np.max(valid.event_time)),
        "best_iteration": best_iteration,
        "average_precision": average_precision(y, probability),
        "roc_auc": roc_auc(y, probability),
        "average_precision_raw": average_precision(y, raw),
        "ece_raw": expected_calibration_error(y, raw), "ece": expected_calibration_error(y, probability),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
