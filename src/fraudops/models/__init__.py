"""The models layer: datasets and time splits from the offline engine, training (LightGBM and a
logistic-regression baseline), calibration, feature selection, metrics, the action policy and
the registry (MLflow)."""

from ._artifact import (
    FORMAT_VERSION,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactVersionError,
    FeatureMismatchError,
    TrainedModel,
)
from ._calibration import Calibrator, fit_calibrator
from ._dataset import Dataset, build_dataset
from ._metrics import (
    CostView,
    Metrics,
    SliceMetrics,
    average_precision,
    card_precision_at_k,
    cost_view,
    daily_card_precision,
    error_analysis,
    evaluate,
    expected_calibration_error,
    recall_at_fpr,
    roc_auc,
)
from ._policy import Action, ActionPolicy, choose_policy
from ._registry import (
    DEFAULT_MODEL_NAME,
    ROLES,
    ArtifactFile,
    ModelRegistry,
    RegistryError,
    RegistryUnavailable,
    RunInfo,
    VersionDetail,
    VersionInfo,
)
from ._selection import FeatureSelection, select_features
from ._splits import (
    ModelSelectionFolds,
    TimeSplit,
    event_days,
    inner_validation,
    model_selection_folds,
    prequential_folds,
    remove_known_compromised,
    time_split,
)
from ._trainer import LIGHTGBM_DEFAULTS, FraudTrainer
from ._training_job import TrainingPlan, TrainingResult, register_training, train_model

__all__ = [
    "DEFAULT_MODEL_NAME",
    "FORMAT_VERSION",
    "LIGHTGBM_DEFAULTS",
    "ROLES",
    "Action",
    "ActionPolicy",
    "ArtifactError",
    "ArtifactFile",
    "ArtifactIntegrityError",
    "ArtifactVersionError",
    "Calibrator",
    "CostView",
    "Dataset",
    "FeatureMismatchError",
    "FeatureSelection",
    "FraudTrainer",
    "Metrics",
    "ModelRegistry",
    "ModelSelectionFolds",
    "RegistryError",
    "RegistryUnavailable",
    "RunInfo",
    "SliceMetrics",
    "TimeSplit",
    "TrainedModel",
    "TrainingPlan",
    "TrainingResult",
    "VersionDetail",
    "VersionInfo",
    "average_precision",
    "build_dataset",
    "card_precision_at_k",
    "choose_policy",
    "cost_view",
    "daily_card_precision",
    "error_analysis",
    "evaluate",
    "event_days",
    "expected_calibration_error",
    "fit_calibrator",
    "inner_validation",
    "model_selection_folds",
    "prequential_folds",
    "recall_at_fpr",
    "register_training",
    "remove_known_compromised",
    "roc_auc",
    "select_features",
    "time_split",
    "train_model",
]
