"""One simulated tenant's population and its genuine card transactions.

This is the handbook's generative process (docs/simulator.md, "The generative process"):
customers and terminals uniform on a 100×100 grid, each customer using the terminals within a
radius, a spending profile per customer, a Poisson number of transactions a day, a normal time of
day and a normal amount. It also gives every customer an email and 1–3 devices, and builds the
shared pool of fraudster identities that the card-not-present and account-takeover scenarios use.

Everything is vectorised with NumPy; the only Python loop is over days. Internal to
:mod:`fraudops.events`; the public API is in ``_simulator.py``.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudops.core import Progress

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

GRID_SIZE = 100.0
DAY_SECONDS = 86_400
TIME_OF_DAY_MEAN = 43_200.0
TIME_OF_DAY_STD = 20_000.0
MEAN_AMOUNT_RANGE = (5.0, 100.0)
MEAN_TX_PER_DAY_RANGE = (0.0, 4.0)

#: Email domains of ordinary mailbox providers in simulated data (``.example`` is reserved, so
#: no simulated address can belong to anyone), with the share of customers at each.
SIMULATED_EMAIL_DOMAINS: tuple[str, ...] = (
    "mail.example", "inbox.example", "post.example", "webmail.example", "home.example")
_EMAIL_DOMAIN_WEIGHTS = (0.35, 0.25, 0.2, 0.12, 0.08)
#: Email domains that simulated data treats as disposable (throw-away) mailboxes.
SIMULATED_DISPOSABLE_DOMAINS: tuple[str, ...] = (
    "tempmail.example", "throwaway.example", "burner.example", "minutemail.example")


class Stream(IntEnum):
    """Independent random streams of one tenant, so that changing one stage's parameters
    (say, the label delays) leaves every other stage's draws unchanged."""

    CUSTOMERS = 0
    TERMINALS = 1
    DAILY = 2
    IDENTITIES = 3
    TERMINAL_COMPROMISE = 4
    CARD_NOT_PRESENT = 5
    ACCOUNT_TAKEOVER = 6
    LABELS = 7


def tenant_rng(seed: int, tenant: str, stream: Stream) -> np.random.Generator:
    """The generator of one stream of one tenant.

    The tenant enters through a hash of its name, not its position in the config, so adding
    or removing a tenant leaves the others' data unchanged.
    """
    name_key = int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(name_key, int(stream))))


@dataclass(frozen=True)
class Population:
    """Customers, terminals and identities of one tenant (index-based; strings come last)."""

    customer_xy: FloatArray
    mean_amount: FloatArray
    mean_tx_per_day: FloatArray
    terminal_xy: FloatArray
    reach_offsets: IntArray
    reach_terminals: IntArray
    device_offsets: IntArray
    fraudster_disposable: npt.NDArray[np.bool_]
    #: email strings: one per customer, then one per fraudster
    emails: Any
    #: device strings: the customers' devices (see ``device_offsets``), then one per fraudster
    devices: Any

    @property
    def n_customers(self) -> int:
        return len(self.mean_amount)

    @property
    def n_terminals(self) -> int:
        return len(self.terminal_xy)

    @property
    def reach_counts(self) -> IntArray:
        return np.diff(self.reach_offsets)

    @property
    def n_customer_devices(self) -> int:
        return int(self.device_offsets[-1])


def build_population(*, seed: int, tenant: str, n_customers: int, n_terminals: int,
                     radius: float, max_devices: int, disposable_share: float,
                     n_fraudsters: int, fraudster_disposable_share: float) -> Population:
    """Draw customers, terminals, the terminals each customer reaches, and identities."""
    rng = tenant_rng(seed, tenant, Stream.CUSTOMERS)
    customer_xy = rng.uniform(0.0, GRID_SIZE, size=(n_customers, 2))
    mean_amount = rng.uniform(*MEAN_AMOUNT_RANGE, size=n_customers)
    mean_tx_per_day = rng.uniform(*MEAN_TX_PER_DAY_RANGE, size=n_customers)
    terminal_xy = tenant_rng(seed, tenant, Stream.TERMINALS).uniform(
        0.0, GRID_SIZE, size=(n_terminals, 2))

    from scipy.spatial import cKDTree

    reach = cKDTree(terminal_xy).query_ball_point(customer_xy, r=radius, return_sorted=True)
    counts = np.fromiter((len(r) for r in reach), dtype=np.int64, count=n_customers)
    offsets = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    terminals = np.fromiter(itertools.chain.from_iterable(reach), dtype=np.int64,
                            count=int(offsets[-1]))

    rng = tenant_rng(seed, tenant, Stream.IDENTITIES)
    devices_per_customer = rng.integers(1, max_devices + 1, size=n_customers)
    device_offsets = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(devices_per_customer, out=device_offsets[1:])
    customer_disposable = rng.random(n_customers) < disposable_share
    fraudster_disposable = rng.random(n_fraudsters) < fraudster_disposable_share
    emails = _emails(rng, np.concatenate([customer_disposable, fraudster_disposable]))
    devices = numbered_strings("D", rng.permutation(int(device_offsets[-1]) + n_fraudsters))
    return Population(customer_xy, mean_amount, mean_tx_per_day, terminal_xy, offsets,
                      terminals, device_offsets, fraudster_disposable, emails, devices)


def numbered_strings(prefix: str, numbers: IntArray, width: int | None = None) -> Any:
    """``prefix`` + zero-padded numbers as an Arrow string array, built without a Python loop."""
    width = width or len(str(max(int(numbers.max(initial=0)), 1)))
    text = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width,
                        padding="0")
    return pc.binary_join_element_wise(prefix, text, "") if prefix else text


def _emails(rng: np.random.Generator, disposable: npt.NDArray[np.bool_]) -> Any:
    """One address per identity: six random letters, a dot, a number unique among the
    identities (so two identities never share an address), and a domain.

    Customers and fraudsters are drawn the same way, so an address alone does not give a
    fraudster away; only the domain mix differs.
    """
    n = len(disposable)
    letters = (rng.integers(0, 26, size=(n, 6), dtype=np.uint8) + ord("a")).view("S6").ravel()
    words = pc.cast(pa.array(letters, pa.binary()), pa.string())
    local = pc.binary_join_element_wise(words, numbered_strings("", rng.permutation(n)), ".")
    common = rng.choice(len(SIMULATED_EMAIL_DOMAINS), size=n, p=_EMAIL_DOMAIN_WEIGHTS)
    throwaway = rng.integers(0, len(SIMULATED_DISPOSABLE_DOMAINS), size=n)
    domains = pa.array(SIMULATED_EMAIL_DOMAINS + SIMULATED_DISPOSABLE_DOMAINS)
    index = np.where(disposable, len(SIMULATED_EMAIL_DOMAINS) + throwaway, common)
    return pc.binary_join_element_wise(local, pc.take(domains, pa.array(index)), "@")


@dataclass
class Rows:
    """A tenant's transactions as parallel index arrays, in generation order.

    ``scenario`` is 0 for genuine, 1–4 for the fraud scenario that labelled the row last;
    ``fraudster`` is the index of the fraudster identity checking out, or -1 (the customer).
    """

    day: IntArray
    second: IntArray
    customer: IntArray
    terminal: IntArray
    device: IntArray
    amount_cents: IntArray
    scenario: npt.NDArray[np.int8]
    fraudster: IntArray

    def __len__(self) -> int:
        return len(self.day)

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _ROW_FIELDS))

    def take(self, order: IntArray) -> Rows:
        return Rows(*(getattr(self, f)[order] for f in _ROW_FIELDS))


_ROW_FIELDS = ("day", "second", "customer", "terminal", "device", "amount_cents", "scenario",
               "fraudster")


def draw_time_of_day(rng: np.random.Generator, size: int) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Seconds after midnight from N(12:00, 20,000 s), and which draws fall inside the day.

    Draws outside (0, 86400) are dropped by the caller, as in the handbook: the customer simply
    makes fewer transactions that day (about 3 % of draws).
    """
    draws = rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, size=size)
    inside = (draws > 0) & (draws < DAY_SECONDS)
    return np.where(inside, draws, 0).astype(np.int64), inside


def draw_amount_cents(rng: np.random.Generator, mean: FloatArray, std: FloatArray) -> IntArray:
    """Amounts from N(mean, std) in cents; a negative draw is redrawn from U(0, 2·mean)."""
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2.0 * mean[negative])
    return np.rint(amount * 100.0).astype(np.int64)


def pick_segment(rng: np.random.Generator, offsets: IntArray, owners: IntArray) -> IntArray:
    """For each owner, a uniform position in its segment ``offsets[o]:offsets[o + 1]``."""
    sizes = offsets[owners + 1] - offsets[owners]
    within = np.minimum((rng.random(len(owners)) * sizes).astype(np.int64), sizes - 1)
    position: IntArray = offsets[owners] + within
    return position


def genuine_transactions(population: Population, *, seed: int, tenant: str, n_days: int,
                         progress: Progress, stage: str) -> Rows:
    """The handbook's daily loop, vectorised over customers: one NumPy pass per day.

    Customers with no terminal in reach make no transactions.
    """
    rng = tenant_rng(seed, tenant, Stream.DAILY)
    reach = population.reach_counts
    rate = np.where(reach > 0, population.mean_tx_per_day, 0.0)
    everyone = np.arange(population.n_customers, dtype=np.int64)
    parts: list[Rows] = []
    for day in range(n_days):
        customer = np.repeat(everyone, rng.poisson(rate))
        second, inside = draw_time_of_day(rng, len(customer))
        mean = population.mean_amount[customer]
        amount = draw_amount_cents(rng, mean, mean / 2.0)
        slot = pick_segment(rng, population.reach_offsets, customer)
        device = pick_segment(rng, population.device_offsets, customer)
        customer, kept = customer[inside], int(inside.sum())
        parts.append(Rows(
            day=np.full(kept, day, dtype=np.int64), second=second[inside], customer=customer,
            terminal=population.reach_terminals[slot[inside]], device=device[inside],
            amount_cents=amount[inside], scenario=np.zeros(kept, dtype=np.int8),
            fraudster=np.full(kept, -1, dtype=np.int64)))
        progress(stage, day + 1, n_days)
    return Rows.concat(parts)
