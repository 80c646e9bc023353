"""The model artifact: what training produces, the registry stores and serving loads.

An artifact is a directory of safe, inspectable files and nothing else:

``manifest.json``
    format version, model kind, feature names, calibrator, policy, metrics, feature-set name,
    definition hash, training-data fingerprint, training parameters, creation time (UTC),
    fraudops version, and the SHA-256 of every other file.
``model.txt``
    a LightGBM booster as LightGBM's own text format (``Booster.model_to_string``), or
``model.json``
    a logistic regression as numbers: the median imputation, the scaler and the coefficients.

No pickle, ever: a pickle from an untrusted registry runs code when it is loaded. Loading checks
the format version, that every listed file is present and unchanged, and that the feature list
of the model file is the manifest's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import random
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

import fraudops
from fraudops.core import FraudopsError

from ._attribution import PathAttribution
from ._calibration import Calibrator

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ModelKind = Literal["lightgbm", "logistic"]
MODEL_FILES: dict[str, str] = {"lightgbm": "model.txt", "logistic": "model.json"}


class ArtifactError(FraudopsError):
    """A model artifact cannot be saved or loaded (missing, unreadable or invalid)."""


class ArtifactVersionError(ArtifactError):
    """The artifact was written in a format version this fraudops does not read."""


class ArtifactIntegrityError(ArtifactError):
    """A file of the artifact is missing, extra in the manifest, or changed since it was saved."""


class FeatureMismatchError(ArtifactError):
    """The model's feature list is not the one the manifest or the caller expects."""


@dataclass(frozen=True)
class TrainedModel:
    """A trained, calibrated fraud model with everything needed to score and to audit it.

    Build one with :meth:`FraudTrainer.to_model`, store it with :meth:`save`, load it with
    :meth:`load`. ``predict_proba`` and ``predict_one`` return the calibrated probability of
    fraud: the raw model score passed through ``calibrator`` (identity when it is ``None``).

    Parameters
    ----------
    kind : {"lightgbm", "logistic"}
    model : str or dict
        LightGBM model text (kind ``"lightgbm"``) or the logistic numbers (kind ``"logistic"``:
        ``impute``, ``mean``, ``scale``, ``coef``, ``intercept``, each per feature but the last).
    feature_names : tuple of str
        The model's inputs, in column order.
    calibrator : Calibrator or None
    policy : dict or None
        ``ActionPolicy.to_dict()`` of the policy chosen on validation data.
    metrics : dict
        Validation (and test) metrics, JSON values only.
    feature_set_name, definition_hash, data_fingerprint : str
        What the features were and what data the model learned from.
    params : dict
        The training parameters, resolved (defaults included).
    created_at : str
        UTC ISO-8601 time of training.
    fraudops_version : str
    importances : dict
        Gain importance per feature (LightGBM) or absolute standardised coefficient (logistic).
    """

    kind: ModelKind
    model: str | dict[str, Any]
    feature_names: tuple[str, ...]
    calibrator: Calibrator | None = None
    policy: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    feature_set_name: str = ""
    definition_hash: str = ""
    data_fingerprint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    fraudops_version: str = fraudops.__version__
    importances: dict[str, float] = field(default_factory=dict)
    _scorer: _LightGBMScorer | _LogisticScorer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "lightgbm":
            if not isinstance(self.model, str):
                raise ValueError("a 'lightgbm' TrainedModel needs the model text (str) in 'model'")
            lgb_scorer = _LightGBMScorer(self.model, len(self.feature_names))
            booster_features = tuple(lgb_scorer.booster.feature_name())
            if booster_features != tuple(self.feature_names):
                raise FeatureMismatchError(_feature_diff("model.txt", booster_features, self.feature_names))
            scorer: _LightGBMScorer | _LogisticScorer = lgb_scorer
        elif self.kind == "logistic":
            if not isinstance(self.model, dict):
                raise ValueError("a 'logistic' TrainedModel needs the numbers (dict) in 'model'")
            scorer = _LogisticScorer(self.model, len(self.feature_names))
        else:
            raise ValueError(f"The 'kind' parameter of TrainedModel must be one of {tuple(MODEL_FILES)}; "
                             f"got {self.kind!r}")
        object.__setattr__(self, "_scorer", scorer)

    # -- scoring -----------------------------------------------------------------------------

    def predict_raw(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The uncalibrated model score of each row of ``x`` (shape ``(n, d)``, NaN = missing)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n, {len(self.feature_names)}) "
                             f"(features {list(self.feature_names)[:3]}...); got {arr.shape}")
        return self._scorer.predict(arr)

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated probability of fraud of each row of ``x`` (shape ``(n, d)``, NaN = missing)."""
        raw = self.predict_raw(x)
        return raw if self.calibrator is None else self.calibrator.apply(raw)

    def predict_one(self, x: Sequence[float]) -> float:
        """Calibrated probability of fraud of one feature vector (the real-time path).

        ``x`` holds the values in the order of ``feature_names`` (NaN or None = missing). No
        pandas and no per-call NumPy array: LightGBM is called through its single-row fast
        C entry point, the logistic model is plain Python arithmetic.
        """
        if len(x) != len(self.feature_names):
            raise ValueError(f"x must have {len(self.feature_names)} values (one per feature); got {len(x)}")
        raw = self._scorer.predict_one(x)
        return raw if self.calibrator is None else self.calibrator.apply_one(raw)

    def contributions_one(self, x: Sequence[float]) -> list[float]:
        """Each feature's additive contribution to the raw log-odds of one vector, in
        ``feature_names`` order (LightGBM: path attributions, see :mod:`._attribution`;
        logistic: coefficient × centred value).

        They explain the score before calibration: a monotone calibrator keeps their ranking.
        """
        if len(x) != len(self.feature_names):
            raise ValueError(f"x must have {len(self.feature_names)} values (one per feature); got {len(x)}")
        return self._scorer.contributions_one(x)

    def explain_one(self, x: Sequence[float]) -> tuple[float, list[float]]:
        """``(predict_one(x), contributions_one(x))``, the same numbers in one pass where the
        model allows it (LightGBM: one call into it instead of two)."""
        if len(x) != len(self.feature_names):
            raise ValueError(f"x must have {len(self.feature_names)} values (one per feature); got {len(x)}")
        raw, contributions = self._scorer.explain_one(x)
        return (raw if self.calibrator is None else self.calibrator.apply_one(raw)), contributions

    def vector(self, features: Mapping[str, float | None]) -> list[float]:
        """The feature vector of ``features`` (a dict from the online engine) in model order."""
        missing = [n for n in self.feature_names if n not in features]
        if missing:
            raise FeatureMismatchError(f"features missing for the model: {missing}")
        return [math.nan if (v := features[n]) is None else float(v) for n in self.feature_names]

    # -- storage -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the artifact into ``directory`` (created; must be empty) and return it.

        The model file goes first and the manifest last, so a half-written directory has no
        manifest and :meth:`load` refuses it.
        """
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ArtifactError(f"cannot save the model to {path}: it exists and is not an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        name = MODEL_FILES[self.kind]
        payload = (self.model if isinstance(self.model, str)
                   else json.dumps(self.model, indent=1, sort_keys=True, allow_nan=False))
        data = payload.encode("utf-8")
        (path / name).write_bytes(data)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}],
            "feature_names": list(self.feature_names),
            "calibrator": None if self.calibrator is None else self.calibrator.to_dict(),
            "policy": self.policy,
            "metrics": self.metrics,
            "feature_set_name": self.feature_set_name,
            "definition_hash": self.definition_hash,
            "data_fingerprint": self.data_fingerprint,
            "params": self.params,
            "importances": self.importances,
            "created_at": self.created_at,
            "fraudops_version": self.fraudops_version,
        }
        try:
            text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"cannot save the model manifest: a metric, policy or param value is "
                                f"not finite JSON ({e})") from e
        (path / MANIFEST).write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path, *, feature_names: Sequence[str] | None = None) -> TrainedModel:
        """Read and verify an artifact written by :meth:`save`.

        Refuses, with an :class:`ArtifactError` subclass saying what is wrong: a missing
        directory or manifest, an unknown ``format_version``, a listed file that is missing or
        whose SHA-256 changed, a model file whose features differ from the manifest's, and,
        when ``feature_names`` is given, a model trained on other features than those.
        """
        path = Path(directory)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{path} is not a model artifact: no {MANIFEST}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{manifest_path}: not valid JSON ({e})") from e
        if not isinstance(manifest, dict):
            raise ArtifactError(f"{manifest_path}: expected a JSON object")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactVersionError(f"{manifest_path}: format_version {version!r} is not supported "
                                       f"(this fraudops {fraudops.__version__} reads {FORMAT_VERSION}); "
                                       "upgrade fraudops or retrain the model")
        kind = manifest.get("kind")
        if kind not in MODEL_FILES:
            raise ArtifactError(f"{manifest_path}: kind {kind!r} is not one of {tuple(MODEL_FILES)}")
        contents = _verified_files(path, manifest)
        model_file = MODEL_FILES[kind]
        if model_file not in contents:
            raise ArtifactIntegrityError(f"{path}: the manifest does not list the model file {model_file}")
        text = contents[model_file].decode("utf-8")
        model: str | dict[str, Any] = text if kind == "lightgbm" else json.loads(text)
        names = tuple(str(n) for n in manifest.get("feature_names", ()))
        if feature_names is not None and tuple(feature_names) != names:
            raise FeatureMismatchError(_feature_diff(f"the model in {path}", names, tuple(feature_names)))
        cal = manifest.get("calibrator")
        try:
            return cls(
                kind=kind, model=model, feature_names=names,
                calibrator=None if cal is None else Calibrator.from_dict(cal),
                policy=manifest.get("policy"), metrics=manifest.get("metrics") or {},
                feature_set_name=manifest.get("feature_set_name", ""),
                definition_hash=manifest.get("definition_hash", ""),
                data_fingerprint=manifest.get("data_fingerprint", ""),
                params=manifest.get("params") or {}, created_at=manifest.get("created_at", ""),
                fraudops_version=manifest.get("fraudops_version", ""),
                importances=manifest.get("importances") or {},
            )
        except FeatureMismatchError as e:
            raise FeatureMismatchError(f"{path}: {e}") from e
        except (ValueError, KeyError, TypeError, _lightgbm_error()) as e:
            raise ArtifactError(f"{path}: invalid model ({type(e).__name__}: {e})") from e


def _lightgbm_error() -> type[Exception]:
    """LightGBM's error class, for an ``except`` reached only when something failed."""
    from lightgbm.basic import LightGBMError

    return LightGBMError


def _verified_files(path: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise ArtifactIntegrityError(f"{path / MANIFEST}: no 'files' list")
    contents: dict[str, bytes] = {}
    for entry in files:
        name = str(entry.get("name", ""))
        if not name or Path(name).name != name:
            raise ArtifactIntegrityError(f"{path / MANIFEST}: file name {name!r} is not a plain file name")
        file = path / name
        if not file.is_file():
            raise ArtifactIntegrityError(f"{path}: file {name} listed in the manifest is missing")
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            raise ArtifactIntegrityError(f"{file}: sha256 {digest} does not match the manifest's "
                                         f"{entry.get('sha256')}; the file changed since it was saved")
        contents[name] = data
    return contents


def _feature_diff(where: str, got: Sequence[str], expected: Sequence[str]) -> str:
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    detail = (f"missing {missing}, extra {extra}" if missing or extra
              else "same names in a different order")
    return f"feature list of {where} differs from the expected one: {detail}"


class _LightGBMScorer:
    """A LightGBM booster plus a single-row fast path through LightGBM's C API.

    ``Booster.predict`` on one row costs about 20 µs with one thread and can spike into
    milliseconds with an OpenMP pool; ``LGBM_BoosterPredictForMatSingleRowFast`` with a config
    prepared once costs a few µs. The C entry point is reached through ``lightgbm.basic._LIB``;
    if a LightGBM release drops it, scoring falls back to ``Booster.predict`` (same numbers).
    """

    def __init__(self, model_text: str, n_features: int) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_str=model_text)
        self.n_features = n_features
        if self.booster.num_feature() != n_features:
            raise FeatureMismatchError(f"model.txt has {self.booster.num_feature()} features; "
                                       f"the manifest lists {n_features}")
        self._lock = threading.Lock()
        self._row = (ctypes.c_double * n_features)()
        self._out = ctypes.c_double()
        self._out_len = ctypes.c_int64()
        self._fast: Any = None
        self._fast_config = ctypes.c_void_p()
        self._leaf_config = ctypes.c_void_p()
        self._leaves = (ctypes.c_double * self.booster.num_trees())()
        self._attribution: PathAttribution | None = None
        self._link: Callable[[float], float] | None = None
        try:
            from lightgbm import basic

            private = vars(basic)  # not exported names: looked up at run time, fallback below
            lib, c_str, safe_call = private["_LIB"], private["_c_str"], private["_safe_call"]

            safe_call(lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle, ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(1), ctypes.c_int32(n_features), c_str("num_threads=1"),
                ctypes.byref(self._fast_config)))
            weakref.finalize(self, lib.LGBM_FastConfigFree, self._fast_config)
            # the same entry point with predict_type 2 (C_API_PREDICT_LEAF_INDEX), for reasons
            safe_call(lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self.booster._handle, ctypes.c_int(2), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(1), ctypes.c_int32(n_features), c_str("num_threads=1"),
                ctypes.byref(self._leaf_config)))
            weakref.finalize(self, lib.LGBM_FastConfigFree, self._leaf_config)
            self._fast = lib.LGBM_BoosterPredictForMatSingleRowFast
        except (ImportError, AttributeError, KeyError, _lightgbm_error()):
            self._fast = None

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = np.asarray(self.booster.predict(x), dtype=np.float64)
        return out

    def contributions_one(self, x: Sequence[float]) -> list[float]:
        """Path attributions (see :mod:`._attribution`), built on first use."""
        return self._attribute().contributions(self._leaf_indices(x))

    def explain_one(self, x: Sequence[float]) -> tuple[float, list[float]]:
        """``(predict_one(x), contributions_one(x))`` from one leaf-index call: the leaves'
        outputs give the prediction too, when they reproduce LightGBM's to the last bit
        (checked on probe rows when first used); otherwise from both calls."""
        attribution = self._attribute()
        raw, contributions = attribution.explain(self._leaf_indices(x))
        link = self._link
        return (self.predict_one(x) if link is None else link(raw)), contributions

    def _attribute(self) -> PathAttribution:
        if self._attribution is None:
            dump = self.booster.dump_model()
            attribution = PathAttribution(dump, self.n_features)
            self._link = _exact_link(self, attribution, dump)
            self._attribution = attribution
        return self._attribution

    def _leaf_indices(self, x: Sequence[float]) -> Sequence[float] | np.ndarray:
        if self._fast is not None:
            with self._lock:
                self._row[:] = [math.nan if v is None else v for v in x]
                ret = self._fast(self._leaf_config, self._row, ctypes.byref(self._out_len),
                                 self._leaves)
                if ret == 0:   # a copy: the buffer is reused by the next call
                    return np.ctypeslib.as_array(self._leaves).copy()
        row = np.asarray([[math.nan if v is None else v for v in x]], dtype=np.float64)
        with self._lock:   # Booster.predict is not documented as thread-safe
            leaves: np.ndarray = np.asarray(self.booster.predict(row, pred_leaf=True,
                                                                 num_threads=1))[0]
        return leaves

    def predict_one(self, x: Sequence[float]) -> float:
        if self._fast is None:
            return float(self.booster.predict(np.asarray([x], dtype=np.float64), num_threads=1)[0])
        with self._lock:
            self._row[:] = [math.nan if v is None else v for v in x]
            ret = self._fast(self._fast_config, self._row, ctypes.byref(self._out_len),
                             ctypes.byref(self._out))
            value = self._out.value
        if ret != 0:
            return float(self.booster.predict(np.asarray([x], dtype=np.float64), num_threads=1)[0])
        return value


def _exact_link(scorer: _LightGBMScorer, attribution: PathAttribution,
                dump: dict[str, Any]) -> Callable[[float], float] | None:
    """LightGBM's probability from a raw score, if it reproduces ``scorer.predict_one``
    exactly on probe rows (binary objective only: ``1 / (1 + exp(-sigmoid * raw))``, as its C++
    code computes it); None otherwise, and the prediction keeps its own call."""
    objective = str(dump.get("objective", "")).split()
    if not objective or objective[0] != "binary":
        return None
    sigmoid = next((float(part.split(":", 1)[1]) for part in objective[1:]
                    if part.startswith("sigmoid:")), 1.0)

    def link(raw: float) -> float:
        try:
            return 1.0 / (1.0 + math.exp(-sigmoid * raw))
        except OverflowError:   # exp overflows to inf in C++: the probability is 0
            return 0.0

    cuts: list[set[float]] = [set() for _ in range(scorer.n_features)]
    nodes = [tree["tree_structure"] for tree in dump["tree_info"]]
    while nodes:
        node = nodes.pop()
        if "split_feature" in node:
            if not isinstance(node.get("threshold"), int | float):
                return None   # a categorical split: not probed, not trusted
            cuts[int(node["split_feature"])].add(float(node["threshold"]))
            nodes += [node["left_child"], node["right_child"]]
    candidates = [sorted(feature_cuts) or [0.0] for feature_cuts in cuts]
    rng = random.Random(0)
    for _ in range(PROBE_ROWS):
        row = []
        for thresholds in candidates:
            t = rng.choice(thresholds)
            row.append(rng.choice([math.nan, t, math.nextafter(t, math.inf),
                                   math.nextafter(t, -math.inf), t * 1.5 + 1, t * 0.5 - 1]))
        raw, _ = attribution.explain(scorer._leaf_indices(row))
        if link(raw) != scorer.predict_one(row):
            return None
    return link


#: rows on which the one-call prediction must equal LightGBM's before it is used
PROBE_ROWS = 256


class _LogisticScorer:
    """Median imputation, standard scaling and logistic regression as plain numbers."""

    def __init__(self, numbers: dict[str, Any], n_features: int) -> None:
        try:
            self.impute = [float(v) for v in numbers["impute"]]
            self.mean = [float(v) for v in numbers["mean"]]
            self.scale = [float(v) for v in numbers["scale"]]
            self.coef = [float(v) for v in numbers["coef"]]
            self.intercept = float(numbers["intercept"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"logistic model numbers need impute, mean, scale, coef, intercept ({e})") from e
        for key in ("impute", "mean", "scale", "coef"):
            if len(getattr(self, key)) != n_features:
                raise FeatureMismatchError(f"logistic model '{key}' has {len(getattr(self, key))} values; "
                                           f"the manifest lists {n_features} features")
        # Folded once: w_j = coef_j / scale_j, so the score is intercept' + sum(w_j * x_j).
        self.weights = [c / s for c, s in zip(self.coef, self.scale, strict=True)]
        self.bias = self.intercept - sum(w * m for w, m in zip(self.weights, self.mean, strict=True))
        self._w = np.asarray(self.weights)
        self._impute = np.asarray(self.impute)

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        filled = np.where(np.isnan(x), self._impute, x)
        z = np.clip(filled @ self._w + self.bias, -500.0, 500.0)
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-z))
        return out

    def contributions_one(self, x: Sequence[float]) -> list[float]:
        return [w * ((m if v is None or v != v else v) - mu)
                for v, w, m, mu in zip(x, self.weights, self.impute, self.mean, strict=True)]

    def explain_one(self, x: Sequence[float]) -> tuple[float, list[float]]:
        return self.predict_one(x), self.contributions_one(x)

    def predict_one(self, x: Sequence[float]) -> float:
        z = self.bias
        for v, w, m in zip(x, self.weights, self.impute, strict=True):
            z += w * (m if v is None or v != v else v)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
