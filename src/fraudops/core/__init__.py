"""The bottom layer: errors, durations and the workspace, shared by every other layer."""

from ._durations import format_duration, parse_duration
from ._errors import (
    DefinitionError,
    FraudopsError,
    InputError,
    MappingError,
    ParityError,
    ReleaseBlocked,
    SchemaError,
    StoreError,
    StoreTimeout,
    WorkspaceError,
)
from ._progress import Progress, null_progress
from ._workspace import CONFIG_FILE, Workspace, WorkspaceConfig, validate_name

__all__ = [
    "CONFIG_FILE",
    "DefinitionError",
    "FraudopsError",
    "InputError",
    "MappingError",
    "ParityError",
    "Progress",
    "ReleaseBlocked",
    "SchemaError",
    "StoreError",
    "StoreTimeout",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "format_duration",
    "null_progress",
    "parse_duration",
    "validate_name",
]
