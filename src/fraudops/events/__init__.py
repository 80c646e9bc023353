"""The events layer: the event contracts, the Parquet event store, ingestion of messy exports
with a quarantine, the data profile and the transaction simulator."""

from ._ingest import IngestReport, derive_event_ids, ingest_file, new_batch_id
from ._mapping import FieldSpec, LabelSpec, Mapping, SourceOptions, load_mapping, parse_mapping
from ._quarantine import DUPLICATES_SCHEMA, Problem
from ._readers import RawTable, read_source
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
    "DUPLICATES_SCHEMA",
    "ATTRIBUTE_TYPES",
    "ENTITY_KEYS",
    "LABEL_SCHEMA",
    "TRANSACTION_CORE",
    "UTC_TIME",
    "EventStore",
    "FieldSpec",
    "IngestReport",
    "LabelSpec",
    "Mapping",
    "Problem",
    "RawTable",
    "SourceOptions",
    "TenantSummary",
    "canonical_columns",
    "conform_labels",
    "conform_transactions",
    "derive_event_ids",
    "ingest_file",
    "load_mapping",
    "new_batch_id",
    "parse_mapping",
    "read_source",
]
