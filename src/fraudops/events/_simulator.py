"""The transaction simulator: card transactions with known fraud, late labels and drift.

It follows the generative process of the *Fraud Detection Handbook* (Le Borgne et al., 2022,
chapter 3.2), written from its description, and adds what the rest of fraudops needs to be
exercised end to end: fraud labels that arrive late (or never), several tenants with different
fraud pressure, a new fraud pattern from a given date, and email / device attributes.
docs/simulator.md describes the process, the parameters and measured figures.

The work is split over private modules: ``_simulator_config`` (what to simulate),
``_simulator_population`` (customers, terminals, genuine transactions) and
``_simulator_fraud`` (scenarios S1–S4 and labels); this module ties them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import Progress, null_progress

from ._schema import UTC_TIME, conform_labels, conform_transactions
from ._simulator_config import (
    DriftSpec,
    LabelDelay,
    SimulationConfig,
    TenantProfile,
    tenant_profiles,
    validate_config,
)
from ._simulator_fraud import (
    FRAUD_TYPES,
    DrawnLabels,
    Incidents,
    compromise_cards,
    compromise_terminals,
    draw_labels,
    event_time_us,
    mark_large_amounts,
    take_over_accounts,
)
from ._simulator_population import (
    DAY_SECONDS,
    SIMULATED_DISPOSABLE_DOMAINS,
    SIMULATED_EMAIL_DOMAINS,
    Population,
    Rows,
    Stream,
    build_population,
    genuine_transactions,
    numbered_strings,
    tenant_rng,
)
from ._store import EventStore

__all__ = [
    "COMPROMISE_SCHEMA",
    "FRAUD_TYPES",
    "SIMULATED_DISPOSABLE_DOMAINS",
    "SIMULATED_EMAIL_DOMAINS",
    "TRUTH_SCHEMA",
    "DriftSpec",
    "LabelDelay",
    "Simulation",
    "SimulationConfig",
    "SimulationSummary",
    "TenantProfile",
    "simulate",
    "tenant_profiles",
    "write_simulation",
]

#: The ground truth of every simulated transaction, for evaluation only: it includes frauds
#: that never get a label, which no model or metric in production could know about.
TRUTH_SCHEMA = pa.schema([
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("is_fraud", pa.bool_(), nullable=False),
    # 0 genuine, 1-4 the scenario of FRAUD_TYPES whose label won
    pa.field("fraud_scenario", pa.int8(), nullable=False),
])
#: The compromise windows behind S2-S4: which terminal or customer, from when to when.
COMPROMISE_SCHEMA = pa.schema([
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("fraud_type", pa.string(), nullable=False),
    pa.field("entity", pa.string(), nullable=False),  # 'terminal_id' or 'customer_id'
    pa.field("entity_id", pa.string(), nullable=False),
    pa.field("window_start", UTC_TIME, nullable=False),
    pa.field("window_end", UTC_TIME, nullable=False),  # exclusive, clipped to the period
    pa.field("fraudster_email", pa.string()),  # S3 and S4 only
    pa.field("fraudster_device", pa.string()),
])
EVENT_ID_WIDTH = 10
_MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class SimulationSummary:
    """Headline figures of one simulated tenant."""

    tenant: str
    transactions: int
    tx_per_day_min: int
    tx_per_day_max: int
    frauds: int
    fraud_rate: float
    frauds_by_type: dict[str, int]
    labels: int
    unlabelled_frauds: int
    labels_after_period: int


@dataclass(frozen=True)
class Simulation:
    """What :func:`simulate` returns.

    Attributes
    ----------
    config : SimulationConfig
        The config that produced it.
    transactions : pyarrow.Table
        Conformed transactions ordered by ``(tenant, event_time, event_id)``; entity keys
        ``card_id``, ``customer_id``, ``terminal_id``, ``email``, ``device_id``.
    labels : pyarrow.Table
        Label events (:data:`LABEL_SCHEMA`), frauds only, ordered by
        ``(tenant, label_time, event_id)``. Some ``label_time`` lie after the simulated period:
        they are the labels a user would receive later, kept so that label maturity can be
        simulated by filtering on ``label_time``.
    truth : pyarrow.Table
        :data:`TRUTH_SCHEMA`, one row per transaction, in transaction order; for evaluation.
    compromises : pyarrow.Table
        :data:`COMPROMISE_SCHEMA`: the S2-S4 incidents, for evaluating detection delays.
    """

    config: SimulationConfig
    transactions: pa.Table
    labels: pa.Table
    truth: pa.Table
    compromises: pa.Table

    def summary(self) -> tuple[SimulationSummary, ...]:
        """Per tenant: volume, daily range, fraud rate by scenario, and label counts."""
        start_us = _day_start_us(self.config)
        end_us = start_us + self.config.n_days * DAY_SECONDS * _MICROSECONDS
        out = []
        for profile in sorted(self.config.tenants, key=lambda p: p.name):
            mine = pc.equal(self.truth.column("tenant"), profile.name)
            scenario = self.truth.filter(mine).column("fraud_scenario").to_numpy()
            times = self.transactions.filter(mine).column("event_time")
            day = (pc.cast(times, pa.int64()).to_numpy() - start_us) // (
                DAY_SECONDS * _MICROSECONDS)
            per_day = np.bincount(day, minlength=self.config.n_days)
            labels = self.labels.filter(pc.equal(self.labels.column("tenant"), profile.name))
            label_us = pc.cast(labels.column("label_time"), pa.int64()).to_numpy()
            frauds = int((scenario > 0).sum())
            out.append(SimulationSummary(
                tenant=profile.name, transactions=len(scenario),
                tx_per_day_min=int(per_day.min()), tx_per_day_max=int(per_day.max()),
                frauds=frauds, fraud_rate=frauds / max(len(scenario), 1),
                frauds_by_type={kind: int((scenario == s).sum())
                                for s, kind in FRAUD_TYPES.items()},
                labels=labels.num_rows, unlabelled_frauds=frauds - labels.num_rows,
                labels_after_period=int((label_us >= end_us).sum())))
        return tuple(out)


def simulate(config: SimulationConfig, progress: Progress = null_progress) -> Simulation:
    """Simulate card transactions, their late fraud labels and the ground truth.

    Tenants are simulated one after another, each from its own seed (derived from
    ``config.seed`` and the tenant's name), so a tenant's data does not depend on the others.
    Progress is reported per day (stage ``'<tenant>: transactions'``), per scenario
    (``'<tenant>: fraud'``) and for the final tables (``'tables'``).

    Raises
    ------
    ValueError
        If a parameter is invalid; the message names it, what it may be and what it got.

    Examples
    --------
    >>> from fraudops.events import SimulationConfig, TenantProfile, simulate
    >>> config = SimulationConfig(
    ...     n_days=10, tenants=(TenantProfile(n_customers=100, n_terminals=200),))
    >>> simulation = simulate(config)
    >>> simulation.transactions.column_names[:4]
    ['event_id', 'event_time', 'tenant', 'amount_cents']
    >>> import pyarrow.compute as pc
    >>> pc.all(simulation.labels.column("is_fraud")).as_py()  # only frauds get labels
    True
    """
    validate_config(config)
    parts = [_simulate_tenant(profile, config, progress)
             for profile in sorted(config.tenants, key=lambda p: p.name)]
    progress("tables", 0, 1)
    transactions = conform_transactions(pa.concat_tables([p[0] for p in parts]))
    labels = conform_labels(pa.concat_tables([p[1] for p in parts]))
    labels = labels.sort_by([("tenant", "ascending"), ("label_time", "ascending"),
                             ("event_id", "ascending")])
    truth = pa.concat_tables([p[2] for p in parts])
    compromises = pa.concat_tables([p[3] for p in parts])
    progress("tables", 1, 1)
    return Simulation(config, transactions, labels, truth, compromises)


def write_simulation(simulation: Simulation, store: EventStore, batch_id: str) -> tuple[int, int]:
    """Append the simulated transactions and labels to ``store``; returns both row counts.

    Only what a real user would receive is written: the truth table and the compromise
    windows stay in memory (save them yourself for evaluation). Labels dated after the
    simulated period are written too, so a store already holds labels "from the future" of
    its last transaction; readers must filter by ``label_time``, as the label contract says.
    """
    n_transactions = store.append_transactions(simulation.transactions, batch_id=batch_id)
    n_labels = store.append_labels(simulation.labels, batch_id=batch_id)
    return n_transactions, n_labels


# -- one tenant -----------------------------------------------------------------------------
def _day_start_us(config: SimulationConfig) -> int:
    start = datetime.combine(config.start, time(0), tzinfo=UTC)
    return int(start.timestamp()) * _MICROSECONDS


def _simulate_tenant(profile: TenantProfile, config: SimulationConfig,
                     progress: Progress) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    seed, name, n_days = config.seed, profile.name, config.n_days
    population = build_population(
        seed=seed, tenant=name, n_customers=profile.n_customers,
        n_terminals=profile.n_terminals, radius=profile.radius, max_devices=profile.max_devices,
        disposable_share=profile.disposable_email_share, n_fraudsters=profile.fraudsters,
        fraudster_disposable_share=profile.fraudster_disposable_share)
    rows = genuine_transactions(population, seed=seed, tenant=name, n_days=n_days,
                                progress=progress, stage=f"{name}: transactions")
    stage = f"{name}: fraud"
    mark_large_amounts(rows, profile.large_amount_cents)
    progress(stage, 1, 4)
    incidents = [compromise_terminals(
        rows, profile, n_days=n_days, rng=tenant_rng(seed, name, Stream.TERMINAL_COMPROMISE))]
    progress(stage, 2, 4)
    incidents.append(compromise_cards(
        rows, profile, n_days=n_days, rng=tenant_rng(seed, name, Stream.CARD_NOT_PRESENT)))
    progress(stage, 3, 4)
    drift = config.drift
    if drift is not None and (drift.tenants is None or name in drift.tenants):
        takeovers, s4 = take_over_accounts(
            population, profile, drift, first_day=(drift.start - config.start).days,
            n_days=n_days, radius=profile.radius,
            rng=tenant_rng(seed, name, Stream.ACCOUNT_TAKEOVER))
        rows = Rows.concat([rows, takeovers])
        incidents.append(s4)
    progress(stage, 4, 4)

    times = event_time_us(rows.day, rows.second, _day_start_us(config))
    order = np.argsort(times, kind="stable")
    rows, times = rows.take(order), times[order]
    drawn = draw_labels(times, rows.scenario, config.label_delay,
                        tenant_rng(seed, name, Stream.LABELS))
    event_ids = numbered_strings("", np.arange(len(rows)), width=EVENT_ID_WIDTH)
    return (_transactions(name, population, rows, times, event_ids),
            _labels(name, drawn, rows, event_ids),
            _truth(name, rows, event_ids),
            _compromises(name, population, incidents, _day_start_us(config)))


def _repeat(value: str, n: int) -> Any:
    return pc.take(pa.array([value], pa.string()), pa.array(np.zeros(n, dtype=np.int32)))


def _entity_ids(prefix: str, count: int) -> Any:
    return numbered_strings(prefix, np.arange(count), width=len(str(max(count - 1, 1))))


def _transactions(name: str, population: Population, rows: Rows, times: Any,
                  event_ids: Any) -> pa.Table:
    by_fraudster = rows.fraudster >= 0
    email = np.where(by_fraudster, population.n_customers + rows.fraudster, rows.customer)
    device = np.where(by_fraudster, population.n_customer_devices + rows.fraudster, rows.device)
    customers = pa.array(rows.customer)
    return pa.table({
        "event_id": event_ids,
        "event_time": pa.array(times, UTC_TIME),
        "tenant": _repeat(name, len(rows)),
        "amount_cents": pa.array(rows.amount_cents, pa.int64()),
        "card_id": pc.take(_entity_ids("K", population.n_customers), customers),
        "customer_id": pc.take(_entity_ids("C", population.n_customers), customers),
        "terminal_id": pc.take(_entity_ids("T", population.n_terminals), pa.array(rows.terminal)),
        "email": pc.take(population.emails, pa.array(email)),
        "device_id": pc.take(population.devices, pa.array(device)),
    })


def _labels(name: str, drawn: DrawnLabels, rows: Rows, event_ids: Any) -> pa.Table:
    n = len(drawn.row)
    fraud_types = pa.array(["", *FRAUD_TYPES.values()])
    return pa.table({
        "event_id": pc.take(event_ids, pa.array(drawn.row)),
        "tenant": _repeat(name, n),
        "is_fraud": pa.array(np.ones(n, dtype=np.bool_)),
        "label_time": pa.array(drawn.label_time_us, UTC_TIME),
        "source": pc.take(pa.array(["chargeback", "cardholder"]),
                          pa.array(drawn.by_cardholder.astype(np.int8))),
        "fraud_type": pc.take(fraud_types, pa.array(rows.scenario[drawn.row])),
    })


def _truth(name: str, rows: Rows, event_ids: Any) -> pa.Table:
    return pa.Table.from_arrays([
        _repeat(name, len(rows)), event_ids, pa.array(rows.scenario > 0),
        pa.array(rows.scenario, pa.int8())], schema=TRUTH_SCHEMA)


def _compromises(name: str, population: Population, incidents: list[Incidents],
                 start_us: int) -> pa.Table:
    tables = []
    for incident in incidents:
        n = len(incident.entity)
        ids = _entity_ids("T" if incident.key == "terminal_id" else "C",
                          population.n_terminals if incident.key == "terminal_id"
                          else population.n_customers)
        has_fraudster = incident.fraudster >= 0
        fraudster = pa.array(np.where(has_fraudster, incident.fraudster, 0), mask=~has_fraudster)
        day_us = DAY_SECONDS * _MICROSECONDS
        tables.append(pa.Table.from_arrays([
            _repeat(name, n), _repeat(FRAUD_TYPES[incident.scenario], n),
            _repeat(incident.key, n), pc.take(ids, pa.array(incident.entity)),
            pa.array(start_us + incident.start_day * day_us, UTC_TIME),
            pa.array(start_us + incident.end_day * day_us, UTC_TIME),
            pc.take(population.emails, pc.add(fraudster, population.n_customers)),
            pc.take(population.devices, pc.add(fraudster, population.n_customer_devices)),
        ], schema=COMPROMISE_SCHEMA))
    return pa.concat_tables(tables).sort_by([("window_start", "ascending"),
                                             ("fraud_type", "ascending"),
                                             ("entity_id", "ascending")])
