"""The events layer: the event contracts, the Parquet event store, ingestion of messy exports
with a quarantine, the data profile and the transaction simulator."""

from ._ingest import IngestReport, derive_event_ids, ingest_file, new_batch_id
from ._mapping import FieldSpec, LabelSpec, Mapping, SourceOptions, load_mapping, parse_mapping
from ._profile import profile_events
from ._profile_html import render_profile_html, write_profile
from ._profile_model import ColumnProfile, Profile
from ._quarantine import DUPLICATES_SCHEMA, Problem
from ._readers import RawTable, read_source
from ._schema import (
    ATTRIBUTE_TYPES,
    ENTITY_KEYS,
    LABEL_SCHEMA,
    TRANSACTION_CORE,
    UTC_TIME,
    canonical_columns,
    check_attribute_name,
    conform_labels,
    conform_transactions,
)
from ._simulator import (
    COMPROMISE_SCHEMA,
    FRAUD_TYPES,
    SIMULATED_DISPOSABLE_DOMAINS,
    SIMULATED_EMAIL_DOMAINS,
    TRUTH_SCHEMA,
    DriftSpec,
    LabelDelay,
    Simulation,
    SimulationConfig,
    SimulationSummary,
    TenantProfile,
    simulate,
    tenant_profiles,
    write_simulation,
)
from ._simulator_export import export_simulation, save_ground_truth
from ._store import EventStore, TenantSummary

__all__ = [
    "ATTRIBUTE_TYPES",
    "COMPROMISE_SCHEMA",
    "DUPLICATES_SCHEMA",
    "ENTITY_KEYS",
    "FRAUD_TYPES",
    "LABEL_SCHEMA",
    "SIMULATED_DISPOSABLE_DOMAINS",
    "SIMULATED_EMAIL_DOMAINS",
    "TRANSACTION_CORE",
    "TRUTH_SCHEMA",
    "UTC_TIME",
    "ColumnProfile",
    "DriftSpec",
    "EventStore",
    "FieldSpec",
    "IngestReport",
    "LabelDelay",
    "LabelSpec",
    "Mapping",
    "Problem",
    "Profile",
    "RawTable",
    "Simulation",
    "SimulationConfig",
    "SimulationSummary",
    "SourceOptions",
    "TenantProfile",
    "TenantSummary",
    "canonical_columns",
    "check_attribute_name",
    "conform_labels",
    "conform_transactions",
    "derive_event_ids",
    "export_simulation",
    "ingest_file",
    "load_mapping",
    "new_batch_id",
    "parse_mapping",
    "profile_events",
    "read_source",
    "render_profile_html",
    "save_ground_truth",
    "simulate",
    "tenant_profiles",
    "write_profile",
    "write_simulation",
]
