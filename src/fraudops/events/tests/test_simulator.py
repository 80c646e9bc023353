"""Tests of the transaction simulator: contracts, scenario rules, labels, tenants, drift.

Every test runs on a small population (300 customers, 600 terminals, 40 days), so the whole
file takes a few seconds; the handbook-sized run is measured by benchmarks/bench_simulator.py.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fraudops.events import (
    LABEL_SCHEMA,
    DriftSpec,
    EventStore,
    LabelDelay,
    SimulationConfig,
    TenantProfile,
    conform_transactions,
    simulate,
    tenant_profiles,
    write_simulation,
)

START = date(2018, 4, 1)
N_DAYS = 40
DRIFT_START = date(2018, 4, 21)
SMALL_TENANT = TenantProfile(n_customers=300, n_terminals=600)
SMALL = SimulationConfig(start=START, n_days=N_DAYS, tenants=(SMALL_TENANT,), seed=7)
PERIOD_START = datetime(2018, 4, 1, tzinfo=UTC)
PERIOD_END = PERIOD_START + timedelta(days=N_DAYS)


@pytest.fixture(scope="module")
def simulation() -> Any:
    return simulate(replace(SMALL, drift=DriftSpec(start=DRIFT_START)))


@pytest.fixture(scope="module")
def rows(simulation: Any) -> dict[str, Any]:
    """Transactions joined with their truth, as Python lists by column."""
    table = simulation.transactions
    data: dict[str, Any] = table.to_pydict()
    data["scenario"] = simulation.truth.column("fraud_scenario").to_pylist()
    return data


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _of_scenario(rows: dict[str, Any], *scenarios: int) -> list[int]:
    return [i for i, s in enumerate(rows["scenario"]) if s in scenarios]


# -- reproducibility -------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_tables() -> None:
    first, second = simulate(SMALL), simulate(SMALL)
    for name in ("transactions", "labels", "truth", "compromises"):
        assert _ipc_bytes(getattr(first, name)) == _ipc_bytes(getattr(second, name)), name


def test_a_different_seed_gives_different_transactions() -> None:
    other = simulate(replace(SMALL, seed=8))
    assert not other.transactions.equals(simulate(SMALL).transactions)


# -- contracts -------------------------------------------------------------------------------
def test_transactions_satisfy_the_transaction_contract(simulation: Any) -> None:
    table = simulation.transactions
    assert conform_transactions(table).equals(table)
    for key in ("card_id", "customer_id", "terminal_id", "email", "device_id"):
        assert table.schema.field(key).type == pa.string()
        assert table.column(key).null_count == 0


def test_labels_satisfy_the_label_contract(simulation: Any) -> None:
    assert simulation.labels.schema.equals(LABEL_SCHEMA)


def test_event_ids_are_unique_per_tenant_and_follow_time_order() -> None:
    tenants = tenant_profiles(2, base=SMALL_TENANT)
    table = simulate(replace(SMALL, tenants=tenants)).transactions
    for profile in tenants:
        mine = table.filter(pc.equal(table.column("tenant"), profile.name))
        ids = mine.column("event_id").to_pylist()
        times = mine.column("event_time").to_pylist()
        assert len(set(ids)) == len(ids)
        assert sorted(zip(times, ids, strict=True)) == list(zip(times, ids, strict=True))
        assert ids == sorted(ids)


def test_event_times_are_utc_and_inside_the_period(simulation: Any) -> None:
    times = simulation.transactions.column("event_time")
    assert times.type == pa.timestamp("us", tz="UTC")
    assert pc.min(times).as_py() >= PERIOD_START
    assert pc.max(times).as_py() < PERIOD_END


def test_truth_has_one_row_per_transaction_in_the_same_order(simulation: Any) -> None:
    assert simulation.truth.column("event_id").equals(simulation.transactions.column("event_id"))


# -- fraud scenarios -------------------------------------------------------------------------
def test_every_scenario_is_present(simulation: Any) -> None:
    counts = simulation.summary()[0].frauds_by_type
    assert all(counts[kind] > 0 for kind in ("S1_amount", "S2_terminal", "S3_card_not_present",
                                             "S4_account_takeover")), counts


def test_no_genuine_transaction_is_above_the_amount_threshold(rows: dict[str, Any]) -> None:
    genuine_amounts = [a for a, s in zip(rows["amount_cents"], rows["scenario"], strict=True)
                       if s == 0]
    assert max(genuine_amounts) <= SMALL_TENANT.large_amount_cents


def test_amount_frauds_are_above_the_threshold(rows: dict[str, Any]) -> None:
    assert all(rows["amount_cents"][i] > SMALL_TENANT.large_amount_cents
               for i in _of_scenario(rows, 1))


def test_compromised_terminal_makes_every_transaction_of_its_window_fraud(
        simulation: Any, rows: dict[str, Any]) -> None:
    """S2: all of a compromised terminal's transactions in its 28-day window are fraud
    (S2, or a later scenario that won), and no S2 fraud lies outside such a window."""
    windows = defaultdict(list)
    incidents = simulation.compromises.filter(
        pc.equal(simulation.compromises.column("fraud_type"), "S2_terminal")).to_pylist()
    for incident in incidents:
        assert incident["window_end"] - incident["window_start"] == timedelta(days=28) \
            or incident["window_end"] == PERIOD_END
        windows[incident["entity_id"]].append((incident["window_start"], incident["window_end"]))
    assert max(i["window_start"] for i in incidents) == PERIOD_END - timedelta(days=2)
    for terminal, time, scenario in zip(rows["terminal_id"], rows["event_time"],
                                        rows["scenario"], strict=True):
        covered = any(start <= time < end for start, end in windows.get(terminal, ()))
        assert (scenario >= 2) if covered else (scenario != 2)


def test_card_not_present_fraud_multiplies_the_amount_by_five(simulation: Any) -> None:
    """Without S3 the same seed gives the same transactions, so amounts can be compared."""
    config = replace(SMALL, drift=DriftSpec(start=DRIFT_START))
    without = replace(config, tenants=(replace(SMALL_TENANT, compromised_customers_per_day=0),))
    plain = simulate(without).transactions.column("amount_cents").to_numpy()
    amounts = simulation.transactions.column("amount_cents").to_numpy()
    is_s3 = simulation.truth.column("fraud_scenario").to_numpy() == 3
    assert is_s3.sum() > 0
    np.testing.assert_array_equal(amounts[is_s3], 5 * plain[is_s3])
    np.testing.assert_array_equal(amounts[~is_s3], plain[~is_s3])


def test_card_not_present_fraud_takes_about_a_third_of_the_victims_transactions(
        simulation: Any, rows: dict[str, Any]) -> None:
    windows = defaultdict(list)
    for incident in simulation.compromises.to_pylist():
        if incident["fraud_type"] == "S3_card_not_present":
            windows[incident["entity_id"]].append((incident["window_start"],
                                                   incident["window_end"]))
    in_window = [s for c, t, s in zip(rows["customer_id"], rows["event_time"], rows["scenario"],
                                      strict=True)
                 if s != 4 and any(a <= t < b for a, b in windows.get(c, ()))]
    share = sum(s == 3 for s in in_window) / len(in_window)
    assert 0.25 < share < 0.4, share


# -- labels ----------------------------------------------------------------------------------
def test_only_frauds_are_labelled(simulation: Any, rows: dict[str, Any]) -> None:
    labels = simulation.labels
    assert pc.all(labels.column("is_fraud")).as_py()
    fraud_ids = {e for e, s in zip(rows["event_id"], rows["scenario"], strict=True) if s}
    assert set(labels.column("event_id").to_pylist()) <= fraud_ids


def test_label_types_name_the_scenario(simulation: Any, rows: dict[str, Any]) -> None:
    scenario_of = dict(zip(rows["event_id"], rows["scenario"], strict=True))
    names = {1: "S1_amount", 2: "S2_terminal", 3: "S3_card_not_present",
             4: "S4_account_takeover"}
    for label in simulation.labels.to_pylist():
        assert label["fraud_type"] == names[scenario_of[label["event_id"]]]


def test_label_delay_follows_the_source(simulation: Any, rows: dict[str, Any]) -> None:
    """Cardholders report within 1-7 days, chargebacks come 7-60 days after the transaction."""
    time_of = dict(zip(rows["event_id"], rows["event_time"], strict=True))
    ranges = {"cardholder": (timedelta(days=1), timedelta(days=7)),
              "chargeback": (timedelta(days=7), timedelta(days=60))}
    sources = set()
    for label in simulation.labels.to_pylist():
        low, high = ranges[label["source"]]
        assert low <= label["label_time"] - time_of[label["event_id"]] <= high
        sources.add(label["source"])
    assert sources == {"cardholder", "chargeback"}


def test_never_labelled_share_is_close_to_the_config() -> None:
    config = replace(SMALL, label_delay=LabelDelay(unlabelled_share=0.2))
    summary = simulate(config).summary()[0]
    assert summary.unlabelled_frauds / summary.frauds == pytest.approx(0.2, abs=0.04)


def test_labels_after_the_simulated_period_are_kept(simulation: Any) -> None:
    label_times = simulation.labels.column("label_time")
    assert pc.max(label_times).as_py() > PERIOD_END
    assert simulation.summary()[0].labels_after_period > 0


def test_truth_includes_frauds_that_are_never_labelled(simulation: Any) -> None:
    frauds = pc.sum(simulation.truth.column("is_fraud")).as_py()
    assert 0 < simulation.labels.num_rows < frauds


# -- tenants ---------------------------------------------------------------------------------
def test_higher_fraud_intensity_gives_a_higher_fraud_rate() -> None:
    tenants = tenant_profiles(3, base=SMALL_TENANT, fraud_intensity=(0.25, 4.0))
    rates = [s.fraud_rate for s in simulate(replace(SMALL, tenants=tenants)).summary()]
    assert rates == sorted(rates)
    assert rates[0] < rates[-1] / 4, rates


def test_a_tenants_data_does_not_depend_on_the_other_tenants() -> None:
    alone = simulate(SMALL).transactions
    together = simulate(replace(SMALL, tenants=(
        replace(SMALL_TENANT, name="aaa"), SMALL_TENANT))).transactions
    mine = together.filter(pc.equal(together.column("tenant"), SMALL_TENANT.name))
    assert mine.equals(alone)


# -- drift -----------------------------------------------------------------------------------
def _takeover_times(rows: dict[str, Any]) -> list[datetime]:
    return [rows["event_time"][i] for i in _of_scenario(rows, 4)]


def test_no_account_takeover_before_the_drift_date(rows: dict[str, Any]) -> None:
    drift_time = datetime.combine(DRIFT_START, datetime.min.time(), tzinfo=UTC)
    assert min(_takeover_times(rows)) >= drift_time


def test_account_takeovers_happen_on_most_days_after_the_drift_date(rows: dict[str, Any]) -> None:
    days = {t.date() for t in _takeover_times(rows)}
    assert len(days) >= 0.8 * (N_DAYS - (DRIFT_START - START).days)


def test_no_account_takeover_without_drift() -> None:
    assert simulate(SMALL).summary()[0].frauds_by_type["S4_account_takeover"] == 0


def test_drift_reaches_only_the_named_tenants() -> None:
    tenants = (SMALL_TENANT, replace(SMALL_TENANT, name="other"))
    drift = DriftSpec(start=DRIFT_START, tenants=("other",))
    counts = {s.tenant: s.frauds_by_type["S4_account_takeover"]
              for s in simulate(replace(SMALL, tenants=tenants, drift=drift)).summary()}
    assert counts["default"] == 0 < counts["other"]


def test_account_takeovers_use_terminals_the_customer_never_uses(rows: dict[str, Any]) -> None:
    usual = defaultdict(set)
    for i in _of_scenario(rows, 0):
        usual[rows["customer_id"][i]].add(rows["terminal_id"][i])
    assert not any(rows["terminal_id"][i] in usual[rows["customer_id"][i]]
                   for i in _of_scenario(rows, 4))


def test_account_takeovers_happen_more_often_at_night(rows: dict[str, Any]) -> None:
    def night_share(indices: list[int]) -> float:
        return sum(rows["event_time"][i].hour < 6 for i in indices) / len(indices)

    assert night_share(_of_scenario(rows, 4)) > 2 * night_share(_of_scenario(rows, 0))


# -- attributes ------------------------------------------------------------------------------
def test_disposable_domains_are_more_frequent_among_stolen_identity_frauds(
        rows: dict[str, Any]) -> None:
    disposable = ("tempmail.example", "throwaway.example", "burner.example",
                  "minutemail.example")

    def share(indices: list[int]) -> float:
        return sum(rows["email"][i].endswith(disposable) for i in indices) / len(indices)

    genuine = share(_of_scenario(rows, 0))
    assert 0 < genuine < 0.1
    assert share(_of_scenario(rows, 3, 4)) > 3 * genuine


def test_customers_check_out_with_their_own_email_outside_s3_and_s4(
        rows: dict[str, Any]) -> None:
    emails = defaultdict(set)
    for i in _of_scenario(rows, 0, 1, 2):
        emails[rows["customer_id"][i]].add(rows["email"][i])
    assert all(len(found) == 1 for found in emails.values())


def test_customers_use_one_to_three_devices_outside_s3_and_s4(rows: dict[str, Any]) -> None:
    devices = defaultdict(set)
    for i in _of_scenario(rows, 0, 1, 2):
        devices[rows["customer_id"][i]].add(rows["device_id"][i])
    assert {len(found) for found in devices.values()} == {1, 2, 3}


def test_fraudster_devices_are_shared_across_victims(rows: dict[str, Any]) -> None:
    victims = defaultdict(set)
    for i in _of_scenario(rows, 3, 4):
        victims[rows["device_id"][i]].add(rows["customer_id"][i])
    genuine_devices = {rows["device_id"][i] for i in _of_scenario(rows, 0)}
    assert max(len(v) for v in victims.values()) > 1
    assert not set(victims) & genuine_devices


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"n_days": 0}, "'n_days' parameter of SimulationConfig must be an int >= 1; got 0"),
    ({"seed": -1}, "'seed' parameter of SimulationConfig must be an int >= 0; got -1"),
    ({"start": datetime(2018, 4, 1)}, "'start' parameter of SimulationConfig"),
    ({"tenants": ()}, "'tenants' parameter of SimulationConfig must be a non-empty tuple"),
    ({"tenants": (SMALL_TENANT, SMALL_TENANT)}, "'tenants' .* unique names"),
    ({"tenants": (replace(SMALL_TENANT, n_customers=0),)},
     "'n_customers' parameter of TenantProfile 'default' must be an int >= 1; got 0"),
    ({"tenants": (replace(SMALL_TENANT, name="no spaces"),)}, "'name' parameter of TenantProfile"),
    ({"tenants": (replace(SMALL_TENANT, card_not_present_share=1.5),)},
     "'card_not_present_share' .* <= 1.0; got 1.5"),
    ({"tenants": (replace(SMALL_TENANT, compromised_terminals_per_day=601),)},
     "'compromised_terminals_per_day' .* <= 600; got 601"),
    ({"label_delay": LabelDelay(unlabelled_share=-0.1)},
     "'unlabelled_share' parameter of LabelDelay"),
    ({"label_delay": LabelDelay(cardholder_delay=(timedelta(days=7), timedelta(days=1)))},
     "'cardholder_delay' parameter of LabelDelay .* shortest <= longest"),
    ({"drift": DriftSpec(start=date(2019, 1, 1))},
     r"'start' parameter of DriftSpec must be a date from 2018-04-01 to 2018-05-10"),
    ({"drift": DriftSpec(start=DRIFT_START, tenants=("nobody",))},
     r"'tenants' parameter of DriftSpec .* \['default'\]; got \('nobody',\)"),
])
def test_invalid_config_raises_naming_the_parameter(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(replace(SMALL, **change))


def test_tenant_profiles_grade_the_daily_compromises() -> None:
    profiles = tenant_profiles(3, fraud_intensity=(0.5, 2.0), prefix="client")
    assert [p.name for p in profiles] == ["client_01", "client_02", "client_03"]
    assert [p.compromised_terminals_per_day for p in profiles] == [1.0, 2.0, 4.0]


# -- output ----------------------------------------------------------------------------------
def test_write_simulation_appends_transactions_and_labels(simulation: Any, tmp_path: Any) -> None:
    store = EventStore(tmp_path)
    written = write_simulation(simulation, store, batch_id="sim")
    assert written == (simulation.transactions.num_rows, simulation.labels.num_rows)
    assert store.read_transactions(["event_id"]).num_rows == written[0]
    assert store.read_labels().num_rows == written[1]


def test_summary_matches_the_truth_table(simulation: Any) -> None:
    summary = simulation.summary()[0]
    scenario = simulation.truth.column("fraud_scenario").to_numpy()
    assert summary.transactions == len(scenario)
    assert summary.frauds == sum(summary.frauds_by_type.values()) == (scenario > 0).sum()
    assert summary.labels + summary.unlabelled_frauds == summary.frauds


def test_progress_is_reported_for_every_day_and_stage() -> None:
    calls: list[tuple[str, int, int | None]] = []
    simulate(SMALL, progress=lambda stage, done, total: calls.append((stage, done, total)))
    days = [done for stage, done, _ in calls if stage == "default: transactions"]
    assert days == list(range(1, N_DAYS + 1))
    assert ("default: fraud", 4, 4) in calls
    assert calls[-1] == ("tables", 1, 1)


def test_handbook_size_matches_the_handbooks_shape() -> None:
    """The acceptance figures of the foundation issue, at full size (about a second)."""
    simulation = simulate(SimulationConfig())
    (summary,) = simulation.summary()
    assert 9_000 <= summary.tx_per_day_min <= summary.tx_per_day_max <= 10_500
    assert 0.005 <= summary.fraud_rate <= 0.012
    assert all(summary.frauds_by_type[kind] > 0
               for kind in ("S1_amount", "S2_terminal", "S3_card_not_present"))
