"""What to simulate: tenants, label delays, drift and the seed, as frozen dataclasses.

The dataclasses only hold values; :func:`validate_config` checks them when :func:`simulate`
starts (as scikit-learn checks parameters in ``fit``, not in the constructor), so a config can
be built, copied with :func:`dataclasses.replace` and compared freely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TypeGuard

import numpy as np

from fraudops.core import WorkspaceError, validate_name

HANDBOOK_START = date(2018, 4, 1)


@dataclass(frozen=True)
class TenantProfile:
    """One tenant's population and fraud intensity; the defaults are the handbook's.

    Each tenant is an independent population (its own customers, terminals and fraudsters)
    drawn from a seed derived from the simulation seed and the tenant's name.

    Parameters
    ----------
    name : str
        Tenant name, as stored in the ``tenant`` column.
    n_customers, n_terminals : int
        Population sizes; both are placed uniformly on a 100×100 grid.
    radius : float
        A customer shops at the terminals within this distance, chosen uniformly. Customers
        with no terminal in reach make no transactions.
    large_amount_cents : int
        S1: every transaction above this amount (22,000 cents = 220.00) is fraud.
    compromised_terminals_per_day : float
        S2: terminals compromised each day. A fraction is the chance of one more (1.5 gives 1
        or 2, 1.5 on average); whole numbers give exactly that many, as in the handbook.
    terminal_compromise_days : int
        S2: days a compromised terminal stays compromised, its first day included.
    compromised_customers_per_day : float
        S3: customers whose card details leak each day (fractions as above).
    customer_compromise_days : int
        S3: days over which the leaked card is used, the first day included.
    card_not_present_share : float
        S3: share of the victims' transactions in the window that become fraud.
    card_not_present_factor : int
        S3: those transactions' amounts are multiplied by this.
    disposable_email_share : float
        Share of genuine customers whose email is at a disposable domain.
    max_devices : int
        Each customer has between 1 and this many devices, used uniformly.
    fraudsters : int
        Size of the tenant's pool of fraudster identities (an email and a device each),
        shared across the victims of S3 and S4.
    fraudster_disposable_share : float
        Share of fraudster emails at a disposable domain.
    """

    name: str = "default"
    n_customers: int = 5_000
    n_terminals: int = 10_000
    radius: float = 5.0
    large_amount_cents: int = 22_000
    compromised_terminals_per_day: float = 2.0
    terminal_compromise_days: int = 28
    compromised_customers_per_day: float = 3.0
    customer_compromise_days: int = 14
    card_not_present_share: float = 1 / 3
    card_not_present_factor: int = 5
    disposable_email_share: float = 0.03
    max_devices: int = 3
    fraudsters: int = 50
    fraudster_disposable_share: float = 0.7


@dataclass(frozen=True)
class LabelDelay:
    """When fraud labels arrive: a mixture of cardholder reports and later chargebacks.

    Only frauds are labelled; a transaction without a label counts as genuine once it is older
    than the longest delay. Delays are uniform within each range.

    Parameters
    ----------
    cardholder_share : float
        Share of labelled frauds reported by the cardholder; the rest come as chargebacks.
    cardholder_delay, chargeback_delay : tuple of timedelta
        ``(shortest, longest)`` delay from the transaction to its label.
    unlabelled_share : float
        Share of frauds that never get a label (present in the truth table only).
    """

    cardholder_share: float = 0.5
    cardholder_delay: tuple[timedelta, timedelta] = (timedelta(days=1), timedelta(days=7))
    chargeback_delay: tuple[timedelta, timedelta] = (timedelta(days=7), timedelta(days=60))
    unlabelled_share: float = 0.05


@dataclass(frozen=True)
class DriftSpec:
    """A new fraud pattern (S4, account takeover) that starts at ``start``; never before.

    Each day from ``start`` on, ``takeovers_per_day`` customers (of each tenant it applies to)
    are taken over. For ``takeover_days`` days the fraudster makes Poisson(``fraud_tx_per_day``)
    transactions a day from a fraudster device and email, at terminals beyond the customer's
    radius, for amounts from N(mean, ``amount_spread`` · mean) of the customer's usual mean;
    a ``night_share`` of them between 00:00 and 06:00 UTC.

    Parameters
    ----------
    start : date
        First day of the new pattern; must fall within the simulated period.
    tenants : tuple of str or None
        Names of the tenants the pattern reaches; ``None`` for all.
    """

    start: date
    takeovers_per_day: float = 3.0
    takeover_days: int = 7
    fraud_tx_per_day: float = 1.0
    night_share: float = 0.5
    amount_spread: float = 0.25
    tenants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SimulationConfig:
    """Everything :func:`simulate` needs; the defaults reproduce the handbook's data set shape.

    Parameters
    ----------
    start : date
        First simulated day (UTC).
    n_days : int
        Number of simulated days.
    tenants : tuple of TenantProfile
        The tenants, with unique names; see :func:`tenant_profiles` for a graded set.
    label_delay : LabelDelay
        How fraud labels arrive.
    drift : DriftSpec or None
        A new fraud pattern from a given date; ``None`` for none.
    seed : int
        Same seed, same data: tables are byte-identical across runs.
    """

    start: date = HANDBOOK_START
    n_days: int = 183
    tenants: tuple[TenantProfile, ...] = (TenantProfile(),)
    label_delay: LabelDelay = LabelDelay()
    drift: DriftSpec | None = None
    seed: int = 0


def tenant_profiles(count: int, *, base: TenantProfile | None = None,
                    fraud_intensity: tuple[float, float] = (0.5, 2.0),
                    prefix: str = "tenant") -> tuple[TenantProfile, ...]:
    """``count`` tenants like ``base`` whose S2 and S3 rates rise geometrically from
    ``fraud_intensity[0]`` to ``fraud_intensity[1]`` times the base rates.

    The way to simulate a fraud vendor's clients: same kind of traffic, different fraud
    pressure. S1 depends on amounts only and is the same everywhere. Names are
    ``{prefix}_01``, ``{prefix}_02``, …; with ``count=1`` the single tenant gets the low end.

    Examples
    --------
    >>> [p.compromised_customers_per_day for p in tenant_profiles(3, fraud_intensity=(0.5, 2))]
    [1.5, 3.0, 6.0]
    """
    base = base or TenantProfile()
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(
            f"The 'count' parameter of tenant_profiles must be an int >= 1; got {count!r}")
    low, high = fraud_intensity
    if not (_is_number(low) and _is_number(high) and 0 < low <= high):
        raise ValueError("The 'fraud_intensity' parameter of tenant_profiles must be"
                         f" (low, high) with 0 < low <= high; got {fraud_intensity!r}")
    factors = np.geomspace(low, high, count)
    width = max(2, len(str(count)))
    return tuple(
        replace(base, name=f"{prefix}_{i + 1:0{width}d}",
                compromised_terminals_per_day=base.compromised_terminals_per_day * float(f),
                compromised_customers_per_day=base.compromised_customers_per_day * float(f))
        for i, f in enumerate(factors))


# -- validation -----------------------------------------------------------------------------
def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(owner: str, name: str, allowed: str, value: object) -> ValueError:
    return ValueError(f"The {name!r} parameter of {owner} must be {allowed}; got {value!r}")


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise _fail(owner, name, f"an int >= {minimum}", value)


def _check_range(owner: str, name: str, value: object, low: float, high: float | None = None,
                 *, low_open: bool = False) -> None:
    ok = _is_number(value) and (value > low if low_open else value >= low) \
        and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        allowed = f"a number {bound}" + (f" and <= {high}" if high is not None else "")
        raise _fail(owner, name, allowed, value)


def _check_delay_range(owner: str, name: str, value: object) -> None:
    ok = (isinstance(value, tuple) and len(value) == 2
          and all(isinstance(v, timedelta) for v in value)
          and timedelta(seconds=1) <= value[0] <= value[1])
    if not ok:
        raise _fail(owner, name, "a (shortest, longest) pair of timedelta with"
                    " 1 second <= shortest <= longest", value)


def validate_tenant(profile: TenantProfile) -> None:
    """Raise ValueError naming the first invalid parameter of a tenant profile."""
    if not isinstance(profile, TenantProfile):
        raise _fail("SimulationConfig", "tenants", "a tuple of TenantProfile", profile)
    try:
        validate_name(profile.name, field="name")
    except WorkspaceError:
        raise _fail("TenantProfile", "name", "1-64 letters, digits, '_', '.' or '-', starting"
                    " with a letter or digit", profile.name) from None
    owner = f"TenantProfile {profile.name!r}"
    for name in ("n_customers", "n_terminals", "terminal_compromise_days",
                 "customer_compromise_days", "card_not_present_factor", "max_devices",
                 "fraudsters"):
        _check_int(owner, name, getattr(profile, name), 1)
    _check_int(owner, "large_amount_cents", profile.large_amount_cents, 0)
    _check_range(owner, "radius", profile.radius, 0.0, low_open=True)
    _check_range(owner, "compromised_terminals_per_day", profile.compromised_terminals_per_day,
                 0.0, profile.n_terminals)
    _check_range(owner, "compromised_customers_per_day", profile.compromised_customers_per_day,
                 0.0, profile.n_customers)
    for name in ("card_not_present_share", "disposable_email_share",
                 "fraudster_disposable_share"):
        _check_range(owner, name, getattr(profile, name), 0.0, 1.0)


def validate_config(config: SimulationConfig) -> None:
    """Raise ValueError naming the first invalid parameter, what it may be and what it got."""
    if not isinstance(config, SimulationConfig):
        raise TypeError(f"simulate() needs a SimulationConfig; got {type(config).__name__}")
    owner = "SimulationConfig"
    if isinstance(config.start, datetime) or not isinstance(config.start, date):
        raise _fail(owner, "start", "a datetime.date (a UTC day)", config.start)
    _check_int(owner, "n_days", config.n_days, 1)
    _check_int(owner, "seed", config.seed, 0)
    if not isinstance(config.tenants, tuple) or not config.tenants:
        raise _fail(owner, "tenants", "a non-empty tuple of TenantProfile", config.tenants)
    for profile in config.tenants:
        validate_tenant(profile)
    names = [p.name for p in config.tenants]
    if len(set(names)) != len(names):
        raise _fail(owner, "tenants", "profiles with unique names", names)
    _validate_label_delay(config.label_delay)
    if config.drift is not None:
        _validate_drift(config.drift, config, names)


def _validate_label_delay(delay: LabelDelay) -> None:
    if not isinstance(delay, LabelDelay):
        raise _fail("SimulationConfig", "label_delay", "a LabelDelay", delay)
    for name in ("cardholder_share", "unlabelled_share"):
        _check_range("LabelDelay", name, getattr(delay, name), 0.0, 1.0)
    for name in ("cardholder_delay", "chargeback_delay"):
        _check_delay_range("LabelDelay", name, getattr(delay, name))


def _validate_drift(drift: DriftSpec, config: SimulationConfig, names: list[str]) -> None:
    if not isinstance(drift, DriftSpec):
        raise _fail("SimulationConfig", "drift", "a DriftSpec or None", drift)
    last = config.start + timedelta(days=config.n_days - 1)
    if isinstance(drift.start, datetime) or not isinstance(drift.start, date) \
            or not config.start <= drift.start <= last:
        raise _fail("DriftSpec", "start", f"a date from {config.start} to {last} (the simulated"
                    " period)", drift.start)
    _check_range("DriftSpec", "takeovers_per_day", drift.takeovers_per_day, 0.0)
    _check_int("DriftSpec", "takeover_days", drift.takeover_days, 1)
    _check_range("DriftSpec", "fraud_tx_per_day", drift.fraud_tx_per_day, 0.0)
    _check_range("DriftSpec", "night_share", drift.night_share, 0.0, 1.0)
    _check_range("DriftSpec", "amount_spread", drift.amount_spread, 0.0)
    if drift.tenants is not None and (not isinstance(drift.tenants, tuple)
                                      or not set(drift.tenants) <= set(names)):
        raise _fail("DriftSpec", "tenants", f"None or a tuple of tenant names from {names}",
                    drift.tenants)
