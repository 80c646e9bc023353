"""The fraudops exception tree. Callers catch at the level they care about.

::

    FraudopsError
    ├── WorkspaceError        the workspace is missing, locked or its config is invalid
    ├── MappingError          an ingestion mapping is invalid (names the key and the reason)
    ├── InputError            a source file or record cannot be read at all
    ├── SchemaError           a table does not satisfy an event contract
    ├── DefinitionError       a feature definition is invalid
    ├── ParityError           online and offline feature values differ
    ├── ReleaseBlocked        the release gate refused a model (carries the report)
    └── StoreError            a store failed
        └── StoreTimeout      a store did not answer in time

Row-level problems are not exceptions: they go to the quarantine with ``(row, field, reason)``.
"""

from __future__ import annotations


class FraudopsError(Exception):
    """Base of every error fraudops raises on purpose."""


class WorkspaceError(FraudopsError):
    """The workspace is missing, locked, or its configuration is invalid."""


class MappingError(FraudopsError):
    """An ingestion mapping is invalid; the message names the key and the reason."""


class InputError(FraudopsError):
    """A source cannot be read at all (missing file, unknown format, bad encoding)."""


class SchemaError(FraudopsError):
    """A table does not satisfy an event contract (missing column, wrong type, null key)."""


class DefinitionError(FraudopsError):
    """A feature definition is invalid."""


class ParityError(FraudopsError):
    """Online and offline feature values differ."""


class ReleaseBlocked(FraudopsError):
    """The release gate refused a model."""


class StoreError(FraudopsError):
    """A store (SQLite, Redis, PostgreSQL, the event store) failed."""


class StoreTimeout(StoreError):
    """A store did not answer within its timeout."""
