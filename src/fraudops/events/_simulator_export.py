"""A simulation written the way a real system would hand it over: an export file and its mapping.

The quickstart ingests simulated data through the same mapping and quarantine path as any
export, so the main job exercises ingestion, not a side door. The ground truth (which
transactions were fraud, labelled or not) is saved apart from the events, for evaluation only.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ._simulator import Simulation

_MAPPING = """\
# Mapping of a fraudops simulator export (written by 'fraudops simulate --export').
[source]
format = "{format}"
timezone = "UTC"

[transaction]
event_id = "tx_id"
tenant = "tenant"
event_time = "tx_time"
amount = "amount"
customer_id = "customer_id"
card_id = "card_id"
terminal_id = "terminal_id"
email = "email"
device_id = "device_id"

[label]
# only reported frauds carry a label; the rest are unlabelled, as in a real export
column = "fraud_reported"
time = {{ column = "reported_at" }}
fraud_type = "fraud_type"
source = "simulator"
"""


def export_simulation(simulation: Simulation, path: Path | str) -> Path:
    """Write transactions with their (late) fraud labels to ``path`` (.parquet or .csv).

    Returns the path of the mapping written beside it (``<path>.mapping.toml``), which
    ``fraudops ingest`` reads.
    """
    path = Path(path)
    fmt = {".parquet": "parquet", ".csv": "csv"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"export path {str(path)!r}: must end in .parquet or .csv")
    txns = simulation.transactions
    labels = simulation.labels.select(["tenant", "event_id", "label_time", "fraud_type"])
    joined = txns.join(labels, keys=["tenant", "event_id"], join_type="left outer")
    joined = joined.sort_by([("tenant", "ascending"), ("event_time", "ascending"),
                             ("event_id", "ascending")])
    reported = pc.is_valid(joined.column("label_time"))
    export = pa.table({
        "tx_id": joined.column("event_id"),
        "tenant": joined.column("tenant"),
        "tx_time": joined.column("event_time"),
        "amount": pc.divide(pc.cast(joined.column("amount_cents"), pa.float64()), 100.0),
        "customer_id": joined.column("customer_id"),
        "card_id": joined.column("card_id"),
        "terminal_id": joined.column("terminal_id"),
        "email": joined.column("email"),
        "device_id": joined.column("device_id"),
        "fraud_reported": pc.if_else(reported, 1, pa.scalar(None, pa.int8())),
        "reported_at": joined.column("label_time"),
        "fraud_type": joined.column("fraud_type"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(export, path, compression="zstd")
    else:
        pcsv.write_csv(export, path)
    mapping = path.with_name(path.name + ".mapping.toml")
    mapping.write_text(_MAPPING.format(format=fmt))
    return mapping


def save_ground_truth(simulation: Simulation, folder: Path | str) -> tuple[Path, Path]:
    """Save the truth table and the compromise incidents, for evaluation (never for features)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth, compromises = folder / "truth.parquet", folder / "compromises.parquet"
    pq.write_table(simulation.truth, truth)
    pq.write_table(simulation.compromises, compromises)
    return truth, compromises
