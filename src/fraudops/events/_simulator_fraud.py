"""The fraud scenarios of the simulator (S1–S4) and the late fraud labels.

Scenarios run in order S1, S2, S3, S4 on a tenant's rows; a later scenario's label wins where
two overlap. S1–S3 follow the handbook; S4 (account takeover) is ours and starts at a drift
date. Labels are drawn last, one per fraud, from a mixture of cardholder reports and chargebacks.
Internal to :mod:`fraudops.events`; see docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ._simulator_population import (
    DAY_SECONDS,
    IntArray,
    Population,
    Rows,
    draw_amount_cents,
    draw_time_of_day,
)

if TYPE_CHECKING:
    from ._simulator_config import DriftSpec, LabelDelay, TenantProfile

#: The label ``fraud_type`` of each fraud scenario (the truth table's ``fraud_scenario``).
FRAUD_TYPES: dict[int, str] = {
    1: "S1_amount",
    2: "S2_terminal",
    3: "S3_card_not_present",
    4: "S4_account_takeover",
}
NIGHT_END_SECONDS = 6 * 3600
_MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Incidents:
    """Compromise windows of one scenario: entity ``entity[i]`` over days ``[start, end)``."""

    scenario: int
    key: str
    entity: IntArray
    start_day: IntArray
    end_day: IntArray
    fraudster: IntArray


def daily_count(rng: np.random.Generator, rate: float) -> int:
    """How many entities are compromised today: ``rate`` itself when it is whole (the
    handbook's fixed 2 and 3), otherwise its floor plus one with the fractional part's chance."""
    whole = int(rate)
    return whole + int(rng.random() < rate - whole)


def mark_large_amounts(rows: Rows, threshold_cents: int) -> None:
    """S1: every amount above the threshold is fraud."""
    rows.scenario[rows.amount_cents > threshold_cents] = 1


def _window_days(start: IntArray, end: IntArray) -> tuple[IntArray, IntArray]:
    """Every day of every window ``[start, end)``, with the index of its window."""
    lengths = end - start
    window = np.repeat(np.arange(len(start), dtype=np.int64), lengths)
    first = (np.cumsum(lengths) - lengths)[window]
    day: IntArray = start[window] + np.arange(int(lengths.sum()), dtype=np.int64) - first
    return window, day


def _window_keys(entity: IntArray, start: IntArray, end: IntArray, n_days: int) -> IntArray:
    """``entity * n_days + day`` for every day of every window (windows may overlap)."""
    window, day = _window_days(start, end)
    keys: IntArray = np.unique(entity[window] * n_days + day)
    return keys


def compromise_terminals(rows: Rows, profile: TenantProfile, *, n_days: int,
                         rng: np.random.Generator) -> Incidents:
    """S2: each day some terminals are compromised; all their transactions that day and over
    the rest of the window are fraud. Compromises start on days 0 … n_days − 2."""
    terminals: list[IntArray] = []
    starts: list[IntArray] = []
    for day in range(n_days - 1):
        count = daily_count(rng, profile.compromised_terminals_per_day)
        terminals.append(rng.choice(profile.n_terminals, size=count, replace=False))
        starts.append(np.full(count, day, dtype=np.int64))
    entity = np.concatenate([np.empty(0, np.int64), *terminals]).astype(np.int64)
    start = np.concatenate([np.empty(0, np.int64), *starts])
    end = np.minimum(start + profile.terminal_compromise_days, n_days)
    keys = _window_keys(entity, start, end, n_days)
    rows.scenario[np.isin(rows.terminal * n_days + rows.day, keys)] = 2
    return Incidents(2, "terminal_id", entity, start, end, np.full(len(entity), -1))


def compromise_cards(rows: Rows, profile: TenantProfile, *, n_days: int,
                     rng: np.random.Generator) -> Incidents:
    """S3: each day some customers' card details leak; over the window a random share of the
    victims' transactions (pooled over the day's victims, as in the handbook) is fraud, checked
    out by a fraudster identity, with the amount multiplied.

    A transaction picked by two overlapping windows is multiplied once (the handbook multiplies
    it again); its label and fraudster come from the later window.
    """
    order = np.argsort(rows.customer, kind="stable")  # rows are day-major: days stay sorted
    days = rows.day[order]
    bounds = np.searchsorted(rows.customer[order], np.arange(profile.n_customers + 1))
    multiplied = np.zeros(len(rows), dtype=np.bool_)
    victims_all: list[IntArray] = []
    fraudsters_all: list[IntArray] = []
    starts: list[int] = []
    for day in range(n_days - 1):
        count = daily_count(rng, profile.compromised_customers_per_day)
        victims = rng.choice(profile.n_customers, size=count, replace=False)
        fraudsters = rng.integers(0, profile.fraudsters, size=count)
        pool: list[IntArray] = [np.empty(0, np.int64)]
        owner: list[IntArray] = [np.empty(0, np.int64)]
        for victim, fraudster in zip(victims, fraudsters, strict=True):
            lo, hi = bounds[victim], bounds[victim + 1]
            first = lo + np.searchsorted(days[lo:hi], day)
            last = lo + np.searchsorted(days[lo:hi], day + profile.customer_compromise_days)
            pool.append(order[first:last])
            owner.append(np.full(last - first, fraudster, dtype=np.int64))
        candidates, identity = np.concatenate(pool), np.concatenate(owner)
        n_picked = int(len(candidates) * profile.card_not_present_share + 1e-9)
        picked = rng.choice(len(candidates), size=n_picked, replace=False)
        chosen = candidates[picked]
        rows.scenario[chosen] = 3
        rows.fraudster[chosen] = identity[picked]
        fresh = chosen[~multiplied[chosen]]
        rows.amount_cents[fresh] *= profile.card_not_present_factor
        multiplied[fresh] = True
        victims_all.append(victims.astype(np.int64))
        fraudsters_all.append(fraudsters.astype(np.int64))
        starts.extend([day] * count)
    entity = np.concatenate([np.empty(0, np.int64), *victims_all])
    start = np.asarray(starts, dtype=np.int64)
    end = np.minimum(start + profile.customer_compromise_days, n_days)
    fraudster = np.concatenate([np.empty(0, np.int64), *fraudsters_all])
    return Incidents(3, "customer_id", entity, start, end, fraudster)


def take_over_accounts(population: Population, profile: TenantProfile, drift: DriftSpec, *,
                       first_day: int, n_days: int, radius: float,
                       rng: np.random.Generator) -> tuple[Rows, Incidents]:
    """S4: from the drift day on, each day some accounts are taken over; for the takeover's
    window the fraudster shops from their own device and email, at terminals beyond the
    victim's usual radius, for amounts near the victim's usual mean, often at night.

    These are new transactions (the victim keeps shopping as usual alongside them).
    """
    active = np.flatnonzero(population.reach_counts > 0)
    victims: list[IntArray] = [np.empty(0, np.int64)]
    fraudsters: list[IntArray] = [np.empty(0, np.int64)]
    starts: list[int] = []
    for day in range(first_day, n_days):
        count = min(daily_count(rng, drift.takeovers_per_day), len(active))
        victims.append(rng.choice(active, size=count, replace=False).astype(np.int64))
        fraudsters.append(rng.integers(0, profile.fraudsters, size=count).astype(np.int64))
        starts.extend([day] * count)
    entity, fraudster = np.concatenate(victims), np.concatenate(fraudsters)
    start = np.asarray(starts, dtype=np.int64)
    end = np.minimum(start + drift.takeover_days, n_days)
    incidents = Incidents(4, "customer_id", entity, start, end, fraudster)

    window, window_day = _window_days(start, end)
    per_day = rng.poisson(drift.fraud_tx_per_day, size=len(window_day))
    takeover = np.repeat(window, per_day)
    customer = entity[takeover]
    n = len(customer)
    night = rng.random(n) < drift.night_share
    second = np.where(night, rng.integers(0, NIGHT_END_SECONDS, size=n),
                      _times_inside_day(rng, n))
    mean = population.mean_amount[customer]
    rows = Rows(
        day=np.repeat(window_day, per_day), second=second.astype(np.int64), customer=customer,
        terminal=_distant_terminals(rng, population, customer, radius),
        device=np.full(n, -1, dtype=np.int64),
        amount_cents=draw_amount_cents(rng, mean, mean * drift.amount_spread),
        scenario=np.full(n, 4, dtype=np.int8), fraudster=fraudster[takeover])
    return rows, incidents


def _times_inside_day(rng: np.random.Generator, size: int) -> IntArray:
    """Daytime draws redrawn until inside the day (S4 must not lose rows to the cut)."""
    out = np.empty(size, dtype=np.int64)
    todo = np.arange(size)
    while len(todo):
        second, inside = draw_time_of_day(rng, len(todo))
        out[todo[inside]] = second[inside]
        todo = todo[~inside]
    return out


def _distant_terminals(rng: np.random.Generator, population: Population, customer: IntArray,
                       radius: float) -> IntArray:
    """Uniform terminals farther than ``radius`` from each customer (rejection sampling).

    Where the radius covers (nearly) every terminal, the farthest terminal is used.
    """
    terminal = rng.integers(0, population.n_terminals, size=len(customer))
    for _ in range(64):
        near = _distance(population, customer, terminal) <= radius
        if not near.any():
            return terminal
        terminal[near] = rng.integers(0, population.n_terminals, size=int(near.sum()))
    for row in np.flatnonzero(_distance(population, customer, terminal) <= radius):
        offsets = population.terminal_xy - population.customer_xy[customer[row]]
        terminal[row] = int(np.argmax(np.hypot(offsets[:, 0], offsets[:, 1])))
    return terminal


def _distance(population: Population, customer: IntArray,
              terminal: IntArray) -> npt.NDArray[np.float64]:
    delta = population.customer_xy[customer] - population.terminal_xy[terminal]
    distance: npt.NDArray[np.float64] = np.hypot(delta[:, 0], delta[:, 1])
    return distance


@dataclass(frozen=True)
class DrawnLabels:
    """Which frauds get a label (row positions), when, and whether the cardholder reported it."""

    row: IntArray
    label_time_us: IntArray
    by_cardholder: npt.NDArray[np.bool_]


def draw_labels(event_time_us: IntArray, scenario: npt.NDArray[np.int8], delay: LabelDelay,
                rng: np.random.Generator) -> DrawnLabels:
    """One label per fraud, after a delay from the cardholder or the chargeback range;
    a share of frauds is never labelled. Genuine transactions never get a label."""
    fraud = np.flatnonzero(scenario > 0)
    n = len(fraud)
    labelled = rng.random(n) >= delay.unlabelled_share
    by_cardholder = rng.random(n) < delay.cardholder_share
    low = np.where(by_cardholder, delay.cardholder_delay[0].total_seconds(),
                   delay.chargeback_delay[0].total_seconds())
    high = np.where(by_cardholder, delay.cardholder_delay[1].total_seconds(),
                    delay.chargeback_delay[1].total_seconds())
    seconds = np.rint(rng.uniform(low, high)).astype(np.int64)
    label_time_us = event_time_us[fraud] + seconds * _MICROSECONDS
    return DrawnLabels(fraud[labelled], label_time_us[labelled], by_cardholder[labelled])


def event_time_us(day: IntArray, second: IntArray, first_day_us: int) -> IntArray:
    """Microseconds since the epoch of a (day index, second of day) pair."""
    result: IntArray = first_day_us + (day * DAY_SECONDS + second) * _MICROSECONDS
    return result
