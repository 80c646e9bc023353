"""The events layer: the event contracts, the Parquet event store, ingestion of messy exports
with a quarantine, the data profile and the transaction simulator."""

from ._schema import (
    ATTRIBUTE_TYPES,
    ENTITY_KEYS,
    LABEL_SCHEMA,
    TRANSACTION_CORE,
    UTC_TIME,
    canonical_columns,
    conform_labels,
    conform_transactions,
)
from ._store import EventStore, TenantSummary

__all__ = [
    "ATTRIBUTE_TYPES",
    "ENTITY_KEYS",
    "LABEL_SCHEMA",
    "TRANSACTION_CORE",
    "UTC_TIME",
    "EventStore",
    "TenantSummary",
    "canonical_columns",
    "conform_labels",
    "conform_transactions",
]
