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
from ._sqlite import WalCheckpointer, connect_shared, is_busy, retry_busy
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
    "WalCheckpointer",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "connect_shared",
    "format_duration",
    "is_busy",
    "null_progress",
    "parse_duration",
    "retry_busy",
    "validate_name",
]
