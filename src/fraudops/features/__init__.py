"""The features layer: definitions read by both engines, the offline engine (DuckDB), the
online engine (memory, SQLite or Redis state) and the parity checker."""

from ._definitions import (
    LABEL_COLUMNS,
    VIRTUAL_COLUMNS,
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    FeatureSpec,
    HourOfDay,
    IsNight,
    IsWeekend,
    LabelMode,
    Op,
    Ratio,
    Transform,
    ZScore,
    after_delay,
    as_known,
)
from ._loader import load_feature_sets, workspace_feature_set
from ._windows import Window, days, hours, minutes, window

__all__ = [
    "LABEL_COLUMNS",
    "VIRTUAL_COLUMNS",
    "Aggregation",
    "Column",
    "Entity",
    "FeatureGroup",
    "FeatureSet",
    "FeatureSpec",
    "HourOfDay",
    "IsNight",
    "IsWeekend",
    "LabelMode",
    "Op",
    "Ratio",
    "Transform",
    "Window",
    "ZScore",
    "after_delay",
    "as_known",
    "days",
    "hours",
    "load_feature_sets",
    "minutes",
    "window",
    "workspace_feature_set",
]
