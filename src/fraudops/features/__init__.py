"""The features layer: definitions read by both engines, the offline engine (DuckDB, or Spark
with the ``spark`` extra), the online engine (memory, SQLite or Redis state) and the parity
checker."""

from ._definitions import (
    LABEL_COLUMNS,
    VIRTUAL_COLUMNS,
    Aggregation,
    Entity,
    FeatureGroup,
    FeatureSet,
    FeatureSpec,
    LabelMode,
    Op,
    after_delay,
    as_known,
)
from ._loader import load_feature_sets, workspace_feature_set
from ._offline import OfflineEngine, backfill_window, write_backfill
from ._offline_spark import SparkEngine, local_session
from ._online import OnlineEngine
from ._parity import FeatureParity, ParityReport, check_parity, replay_stream, values_agree
from ._starter import starter_definitions, write_starter_definitions
from ._state import EntityState
from ._stores import (
    DEFAULT_STORE_SETTINGS,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StateStore,
    StoreSettings,
)
from ._transforms import (
    Column,
    HourOfDay,
    IsNight,
    IsWeekend,
    Ratio,
    Transform,
    ZScore,
)
from ._windows import Window, days, hours, minutes, window

__all__ = [
    "DEFAULT_STORE_SETTINGS",
    "LABEL_COLUMNS",
    "VIRTUAL_COLUMNS",
    "Aggregation",
    "Column",
    "Entity",
    "EntityState",
    "FeatureGroup",
    "FeatureParity",
    "FeatureSet",
    "FeatureSpec",
    "HourOfDay",
    "IsNight",
    "IsWeekend",
    "LabelMode",
    "MemoryStore",
    "OfflineEngine",
    "OnlineEngine",
    "Op",
    "ParityReport",
    "Ratio",
    "RedisStore",
    "SQLiteStore",
    "SparkEngine",
    "StateStore",
    "StoreSettings",
    "Transform",
    "Window",
    "ZScore",
    "after_delay",
    "as_known",
    "backfill_window",
    "check_parity",
    "days",
    "hours",
    "load_feature_sets",
    "local_session",
    "minutes",
    "replay_stream",
    "starter_definitions",
    "values_agree",
    "window",
    "workspace_feature_set",
    "write_backfill",
    "write_starter_definitions",
]
