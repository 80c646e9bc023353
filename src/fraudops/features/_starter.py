"""The feature definitions a new workspace starts from: what a fraud engineer writes first."""

from __future__ import annotations

from pathlib import Path

_HEADER = '''\
"""Feature definitions of this workspace (see docs/features.md).

Both engines read these objects: `fraudops features backfill` computes them offline,
`fraudops features parity` proves the online engine returns the same values. Edit freely;
a changed definition gets a new definition hash, and models trained on the old one refuse
to serve with the new one.
"""

from fraudops.features import (
    Aggregation, Column, Entity, FeatureGroup, FeatureSet, HourOfDay, IsNight, IsWeekend, Op,
    Ratio, ZScore, after_delay, as_known, days, hours,
)

card = Entity("card", keys=("card_id",))
terminal = Entity("terminal", keys=("terminal_id",))
'''

_IDENTITY_ENTITIES = '''\
email = Entity("email", keys=("email",))
device = Entity("device", keys=("device_id",))
'''

_GROUPS = '''
#: Labels are trusted once a transaction is this old (chargebacks arrive later still:
#: the as_known() features use every label as soon as it arrives).
LABEL_DELAY = days(7)

FEATURES = FeatureSet("starter_v1", groups=[
    FeatureGroup(card, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7), days(30)]),
        Aggregation("amount", Op.SUM, windows=[hours(1), days(1), days(7)]),
        Aggregation("amount", Op.MEAN, windows=[days(7), days(30)]),
        Aggregation("amount", Op.MAX, windows=[days(30)], exclude_current=True),
        Aggregation("amount", Op.STD, windows=[days(30)]),
        Aggregation("terminal_id", Op.COUNT_DISTINCT, windows=[days(1), days(7)]),
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(30)]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)], labels=as_known()),
    ]),
    FeatureGroup(terminal, [
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1), days(7)]),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(1), days(7), days(30)],
                    labels=after_delay(LABEL_DELAY)),
        Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)], labels=as_known()),
    ]),{identity}
], transforms=[
    Column("amount"),
    Ratio("amount", "amount_mean_30d_by_card", name="amount_over_card_mean_30d"),
    ZScore("amount", "amount_mean_30d_by_card", "amount_std_30d_by_card",
           name="amount_zscore_card_30d"),
    IsWeekend(),
    IsNight(),
    HourOfDay(),
])
'''

_IDENTITY_GROUPS = '''
    FeatureGroup(email, [
        Aggregation("card_id", Op.COUNT_DISTINCT, windows=[days(1), days(30)]),
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)], labels=as_known()),
    ]),
    FeatureGroup(device, [
        Aggregation("card_id", Op.COUNT_DISTINCT, windows=[days(1), days(30)]),
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1)]),
    ]),'''


def starter_definitions(*, identity: bool = False) -> str:
    """Python source of the starter feature set: card and terminal velocity, amount
    statistics, terminal fraud ratios, time of day; with ``identity``, also email and device
    sharing (for data that has ``email`` and ``device_id``)."""
    entities = _IDENTITY_ENTITIES if identity else ""
    groups = _GROUPS.format(identity=_IDENTITY_GROUPS if identity else "")
    return _HEADER + entities + groups


def write_starter_definitions(features_dir: Path | str, *, identity: bool = False) -> Path:
    """Write the starter definitions to ``features_dir/definitions.py`` (replacing it)."""
    path = Path(features_dir) / "definitions.py"
    path.write_text(starter_definitions(identity=identity))
    return path
