"""Feature definitions: names follow from the definition, mistakes fail with their reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from fraudops.core import DefinitionError, Workspace
from fraudops.features import (
    Aggregation,
    Column,
    Entity,
    FeatureGroup,
    FeatureSet,
    IsNight,
    Op,
    Ratio,
    after_delay,
    as_known,
    days,
    hours,
    load_feature_sets,
    window,
    workspace_feature_set,
)

CARD = Entity("card", keys=("card_id",))
TERMINAL = Entity("terminal", keys=("terminal_id",))
COLUMNS = {"event_id", "event_time", "tenant", "amount_cents", "card_id", "terminal_id", "mcc"}


def feature_set(*aggregations: Aggregation, entity: Entity = CARD, **kwargs: object) -> FeatureSet:
    return FeatureSet("test", groups=[FeatureGroup(entity, list(aggregations))], **kwargs)  # type: ignore[arg-type]


def test_names_are_derived_from_the_definition() -> None:
    features = feature_set(
        Aggregation(None, Op.COUNT, windows=[hours(1), days(1)]),
        Aggregation("amount", Op.MEAN, windows=[days(30)]),
        Aggregation("amount", Op.SUM, windows=[days(1)], exclude_current=True),
        Aggregation(None, Op.COUNT, windows=[days(30).lagged(days(7))]))
    assert features.names == ["count_1h_by_card", "count_1d_by_card", "amount_mean_30d_by_card",
                              "amount_sum_1d_excl_by_card", "count_30d_lag7d_by_card"]


def test_label_aware_names_carry_the_delay() -> None:
    features = feature_set(Aggregation(None, Op.FRAUD_RATIO, windows=[days(7)],
                                       labels=after_delay(days(7))), entity=TERMINAL)
    assert features.names == ["fraud_ratio_7d_delay7d_by_terminal"]


def test_explicit_names_match_a_given_schema() -> None:
    features = feature_set(Aggregation(None, Op.COUNT, windows=[days(1), days(7)],
                                       names={days(1): "CUSTOMER_ID_NB_TX_1DAY_WINDOW"}))
    assert features.names == ["CUSTOMER_ID_NB_TX_1DAY_WINDOW", "count_7d_by_card"]


def test_delay_mode_lags_the_window_by_the_delay() -> None:
    features = feature_set(Aggregation(None, Op.FRAUD_COUNT, windows=[days(30)],
                                       labels=after_delay("7d")))
    (spec,) = features.aggregations
    assert (spec.effective.length, spec.effective.lag) == (timedelta(days=30), timedelta(days=7))
    assert not spec.includes_current


def test_current_event_is_in_its_window_only_when_it_can_be() -> None:
    cases = {
        Aggregation(None, Op.COUNT, windows=[days(1)]): True,
        Aggregation(None, Op.COUNT, windows=[days(1)], exclude_current=True): False,
        Aggregation(None, Op.COUNT, windows=[days(1).lagged("1d")]): False,
        Aggregation(None, Op.FRAUD_COUNT, windows=[days(1)], labels=as_known()): False,
        Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(1)]): False,
    }
    for aggregation, expected in cases.items():
        assert aggregation.includes_current(aggregation.windows[0]) is expected, aggregation


def test_hash_changes_with_any_field_and_only_then() -> None:
    base = feature_set(Aggregation("amount", Op.MEAN, windows=[days(7)]))
    same = feature_set(Aggregation("amount", Op.MEAN, windows=[days(7)]))
    other = feature_set(Aggregation("amount", Op.MEAN, windows=[days(8)]))
    excluded = feature_set(Aggregation("amount", Op.MEAN, windows=[days(7)],
                                       exclude_current=True))
    assert base.definition_hash() == same.definition_hash()
    assert len({base.definition_hash(), other.definition_hash(),
                excluded.definition_hash()}) == 3


@pytest.mark.parametrize(("features", "message"), [
    (feature_set(Aggregation("amt", Op.SUM, windows=[days(1)])),
     r"'amt' is not a column of transactions; columns: \['amount', 'amount_cents'"),
    (feature_set(Aggregation("amount", Op.SUM, windows=[window("0s")])),
     "length must be > 0"),
    (feature_set(Aggregation("amount", Op.SUM, windows=[])), "at least one window"),
    (feature_set(Aggregation("is_fraud", Op.SUM, windows=[days(1)])), "label leakage"),
    (feature_set(Aggregation(None, Op.FRAUD_RATIO, windows=[days(1)])),
     "say how labels may be read"),
    (feature_set(Aggregation(None, Op.FRAUD_RATIO, windows=[days(1)],
                             labels=after_delay("0s"))), "delay must be > 0"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)], labels=as_known())),
     "only for fraud_count and fraud_ratio"),
    (feature_set(Aggregation(None, Op.SUM, windows=[days(1)])), "sum needs a column"),
    (feature_set(Aggregation("amount", Op.FRAUD_COUNT, windows=[days(1)], labels=as_known())),
     "takes no column"),
    (feature_set(Aggregation(None, Op.TIME_SINCE_PREVIOUS, windows=[days(1), days(2)])),
     "exactly one window"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1), days(1)])), "given twice"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)]),
                 Aggregation("card_id", Op.COUNT, windows=[days(1)],
                             names={days(1): "count_1d_by_card"})),
     "'count_1d_by_card' is given twice"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)]), entity=Entity("c", ("cc",))),
     "'cc' is not a column"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)]),
                 transforms=[Ratio("amount", "nope")]), "'nope' is not a column"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)]),
                 transforms=[IsNight(start_hour=7, end_hour=6)]), "start_hour <= end_hour"),
    (feature_set(Aggregation(None, Op.COUNT, windows=[days(1)]),
                 transforms=[Column("fraud_type")]), "label leakage"),
])
def test_invalid_definitions_name_the_problem(features: FeatureSet, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        features.validate(COLUMNS)


def test_transforms_may_reference_earlier_features() -> None:
    features = feature_set(Aggregation("amount", Op.MEAN, windows=[days(30)]),
                           transforms=[Ratio("amount", "amount_mean_30d_by_card", name="rel")])
    assert features.validate(COLUMNS).names[-1] == "rel"


def test_workspace_loader_finds_the_feature_set(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.features_dir / "definitions.py").write_text(
        "from fraudops.features import *\n"
        "card = Entity('card', ('card_id',))\n"
        "FEATURES = FeatureSet('v1', groups=[FeatureGroup(card,"
        " [Aggregation(None, Op.COUNT, windows=[days(1)])])])\n")
    assert workspace_feature_set(ws).names == ["count_1d_by_card"]
    assert list(load_feature_sets(ws.features_dir / "definitions.py")) == ["v1"]


def test_workspace_without_a_feature_set_says_so(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(DefinitionError, match="defines none"):
        workspace_feature_set(ws)


def test_unknown_feature_set_lists_the_defined_ones(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.features_dir / "definitions.py").write_text(
        "from fraudops.features import *\nA = FeatureSet('a')\nB = FeatureSet('b')\n")
    with pytest.raises(DefinitionError, match=r"defined: \['a', 'b'\]"):
        workspace_feature_set(ws, "c")
    with pytest.raises(DefinitionError, match="choose one with --feature-set"):
        workspace_feature_set(ws)
