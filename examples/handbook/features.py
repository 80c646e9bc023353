"""Feature sets for the Fraud Detection Handbook's data (ingested with ``mapping.toml``).

* ``HANDBOOK``: the handbook's own 15 engineered features under its column names, so the
  offline backfill can be compared with its published values
  (``examples/handbook/reproduce_features.py``).
* ``DEFAULT``: what a fraud engineer would start from on card data like this: card and
  terminal velocity, amount statistics, how unusual the amount is for the card (against its
  last 30 days, and against its 30 days before the last 14, which a recent compromise has
  not polluted yet), terminal fraud counts and ratios known after the label delay, and the
  time of day. ``examples/handbook/reproduce.py`` trains fraudops's default model on it.

Copy this file into a workspace's ``features/`` folder to use it from the command line.
"""

from __future__ import annotations

from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    HourOfDay,
    IsNight,
    IsWeekend,
    Op,
    Ratio,
    ZScore,
    after_delay,
    days,
    hours,
)

customer = Entity("customer", keys=("customer_id",))
card = Entity("card", keys=("card_id",))
terminal = Entity("terminal", keys=("terminal_id",))

#: The handbook's label delay: a fraud is known 7 days after the transaction.
DELAY = days(7)
_WINDOWS = (days(1), days(7), days(30))
#: A card's usual amounts: its 30 days before the last 14 (a compromise lasts up to 14 days).
_BASELINE = days(30).lagged(days(14))


def _names(template: str) -> dict:  # type: ignore[type-arg]
    return {w: template.format(n=int(w.length.days)) for w in _WINDOWS}


HANDBOOK = FeatureSet("handbook", groups=[
    FeatureGroup(customer, [
        Aggregation(None, Op.COUNT, windows=_WINDOWS,
                    names=_names("CUSTOMER_ID_NB_TX_{n}DAY_WINDOW")),
        Aggregation("amount", Op.MEAN, windows=_WINDOWS,
                    names=_names("CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW")),
    ]),
    FeatureGroup(terminal, [
        # the number of transactions the risk is computed over: windows lagged by the delay
        Aggregation(None, Op.COUNT, windows=[w.lagged(DELAY) for w in _WINDOWS],
                    names={w.lagged(DELAY): f"TERMINAL_ID_NB_TX_{int(w.length.days)}DAY_WINDOW"
                           for w in _WINDOWS}),
        Aggregation(None, Op.FRAUD_RATIO, windows=_WINDOWS, labels=after_delay(DELAY),
                    names=_names("TERMINAL_ID_RISK_{n}DAY_WINDOW")),
    ]),
], transforms=[
    Column("amount", name="TX_AMOUNT"),
    IsWeekend(name="TX_DURING_WEEKEND"),
    IsNight(name="TX_DURING_NIGHT", start_hour=0, end_hour=6),
])

DEFAULT = FeatureSet("handbook_default_v2", groups=[
    FeatureGroup(card, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7), days(30)]),
        Aggregation("amount", Op.SUM, windows=[hours(1), days(1), days(7)]),
        # the 30 days before the last 14: the card's usual amounts, before a recent compromise
        Aggregation("amount", Op.MEAN, windows=[days(1), days(7), days(30), _BASELINE]),
        Aggregation("amount", Op.MAX, windows=[days(1), days(7), days(30)]),
        Aggregation("amount", Op.STD, windows=[days(30), _BASELINE]),
        Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(1), days(7)]),
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(30)]),
    ]),
    FeatureGroup(terminal, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7)]),
        Aggregation("amount", Op.MEAN, windows=[days(7)]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1), days(7), days(14), days(30)],
                    labels=after_delay(DELAY)),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(1), days(7), days(14), days(30)],
                    labels=after_delay(DELAY)),
    ]),
], transforms=[
    Column("amount"),
    Ratio("amount", "amount_mean_30d_by_card", name="amount_over_card_mean_30d"),
    Ratio("amount", "amount_mean_30d_lag14d_by_card", name="amount_over_card_mean_30d_lag14d"),
    Ratio("amount_max_7d_by_card", "amount_mean_30d_lag14d_by_card",
          name="max_7d_over_card_mean_30d_lag14d"),
    ZScore("amount", "amount_mean_30d_by_card", "amount_std_30d_by_card",
           name="amount_zscore_card_30d"),
    ZScore("amount", "amount_mean_30d_lag14d_by_card", "amount_std_30d_lag14d_by_card",
           name="amount_zscore_card_30d_lag14d"),
    IsWeekend(),
    IsNight(),
    HourOfDay(),
])
