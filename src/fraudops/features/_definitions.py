"""Feature definitions: plain frozen data that both the offline and the online engine interpret.

A :class:`FeatureSet` is what a workspace's ``features/definitions.py`` declares::

    card = Entity("card", keys=("card_id",))
    FEATURES = FeatureSet("card_risk_v1", groups=[
        FeatureGroup(card, [Aggregation("amount", Op.MEAN, windows=[days(1), days(7)]),
                            Aggregation(None, Op.COUNT, windows=[hours(1), days(1)])]),
    ], transforms=[IsNight(), Ratio("amount", "amount_mean_7d_by_card")])

Semantics (``docs/features.md``): an aggregation at event *e* (time *t*) reads the same
tenant's events of the same entity in its window (see :mod:`._windows`), in
``(event_time, event_id)`` order. Label-aware operations read the label of a past event as it
was known at *t* (its latest label event with ``label_time <= t``), never the current event's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from fraudops.core import DefinitionError, format_duration, parse_duration

from ._transforms import (
    _TRANSFORMS,
    IsNight,
    Transform,
    references,
)
from ._windows import Window

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Columns that hold labels: reading them outside a label mode leaks the future.
LABEL_COLUMNS = frozenset({"is_fraud", "label_time", "fraud_type", "label_source"})
#: Virtual columns every transaction has besides its stored ones.
VIRTUAL_COLUMNS = {"amount": "amount_cents / 100"}


class Op(StrEnum):
    """The closed set of aggregation operations."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    STD = "std"
    COUNT_DISTINCT = "count_distinct"
    LAST = "last"
    TIME_SINCE_PREVIOUS = "time_since_previous"
    FRAUD_COUNT = "fraud_count"
    FRAUD_RATIO = "fraud_ratio"

    @property
    def needs_column(self) -> bool:
        return self in _COLUMN_OPS

    @property
    def reads_labels(self) -> bool:
        return self in (Op.FRAUD_COUNT, Op.FRAUD_RATIO)


_COLUMN_OPS = frozenset({Op.SUM, Op.MEAN, Op.MIN, Op.MAX, Op.STD, Op.COUNT_DISTINCT, Op.LAST})


@dataclass(frozen=True)
class Entity:
    """Something events are grouped by: a card, a terminal, an email... (per tenant).

    ``keys`` are transaction columns; an event whose key is missing belongs to no entity and
    gets missing values for that entity's features.
    """

    name: str
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))


@dataclass(frozen=True)
class LabelMode:
    """How label-aware aggregations may read labels (never from the future).

    ``delay``: only events at least ``delay`` old count (the window is lagged by ``delay``), as
    the handbook's terminal risk. ``label_time``: any past event in the window counts once its
    label has arrived. Either way a past event counts as fraud when its label as known at *t*
    says fraud.
    """

    mode: str
    delay: timedelta = timedelta(0)

    @property
    def name(self) -> str:
        return f"delay{format_duration(self.delay)}" if self.mode == "delay" else "asknown"


def after_delay(delay: timedelta | str | Window) -> LabelMode:
    """Labels of events older than ``delay`` (the fixed-delay mode)."""
    value = delay.length if isinstance(delay, Window) else parse_duration(delay, field="delay")
    return LabelMode("delay", value)


def as_known() -> LabelMode:
    """Labels of past events as soon as they arrive (the label-time mode)."""
    return LabelMode("label_time")


@dataclass(frozen=True)
class Aggregation:
    """One operation over one column (or over events) for several windows.

    ``names`` gives explicit output names per window, to match an existing schema; otherwise
    names are derived: ``amount_mean_7d_by_card``, ``count_1h_by_card``,
    ``fraud_ratio_30d_delay7d_by_terminal``.
    """

    column: str | None
    op: Op
    windows: tuple[Window, ...]
    exclude_current: bool = False
    labels: LabelMode | None = None
    names: Mapping[Window, str] | tuple[tuple[Window, str], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", Op(self.op))
        object.__setattr__(self, "windows", tuple(self.windows))
        if isinstance(self.names, Mapping):  # frozen and hashable, like the rest
            object.__setattr__(self, "names", tuple(self.names.items()))

    def name_for(self, window: Window) -> str | None:
        """The explicit name given for ``window``, if any."""
        return dict(self.names or ()).get(window)

    def effective_window(self, window: Window) -> Window:
        """The window the engines read: delay-mode labels lag it by the delay."""
        if self.labels is not None and self.labels.mode == "delay":
            return Window(window.length, window.lag + self.labels.delay)
        return window

    def includes_current(self, window: Window) -> bool:
        """Whether the current event itself is in the window."""
        lagged = self.effective_window(window).lag_us > 0
        return not (lagged or self.exclude_current or self.op.reads_labels
                    or self.op is Op.TIME_SINCE_PREVIOUS)


@dataclass(frozen=True)
class FeatureGroup:
    """Aggregations over one entity."""

    entity: Entity
    aggregations: tuple[Aggregation, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "aggregations", tuple(self.aggregations))


@dataclass(frozen=True)
class FeatureSpec:
    """One output feature of an aggregation: what the engines compute, under which name."""

    name: str
    entity: Entity
    aggregation: Aggregation
    window: Window

    @property
    def op(self) -> Op:
        return self.aggregation.op

    @property
    def column(self) -> str | None:
        return self.aggregation.column

    @property
    def effective(self) -> Window:
        return self.aggregation.effective_window(self.window)

    @property
    def includes_current(self) -> bool:
        return self.aggregation.includes_current(self.window)


# -- the feature set ------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned list of features: what a model is trained on and served with."""

    name: str
    groups: tuple[FeatureGroup, ...] = ()
    transforms: tuple[Transform, ...] = ()
    features_: tuple[FeatureSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "transforms", tuple(self.transforms))
        object.__setattr__(self, "features_", tuple(_expand(self.groups)))

    @property
    def aggregations(self) -> tuple[FeatureSpec, ...]:
        """Every windowed aggregation output, in definition order."""
        return self.features_

    @property
    def entities(self) -> tuple[Entity, ...]:
        return tuple(dict.fromkeys(g.entity for g in self.groups))

    @property
    def names(self) -> list[str]:
        """Output feature names in order: aggregations, then transforms."""
        return [f.name for f in self.features_] + [t.output for t in self.transforms]

    def definition(self) -> dict[str, Any]:
        """A canonical, JSON-serialisable description (what the hash covers)."""
        return {"name": self.name, "groups": [_describe(g) for g in self.groups],
                "transforms": [{"type": type(t).__name__, **_fields(t)} for t in self.transforms]}

    def definition_hash(self) -> str:
        """A stable hash of the definition; stored with every model trained on this set."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def validate(self, columns: Iterable[str] | None = None) -> FeatureSet:
        """Check the whole definition; with ``columns``, also that every input exists.

        Raises :class:`DefinitionError` naming the feature, the problem and, for unknown
        columns, the columns that do exist.
        """
        validate_feature_set(self, None if columns is None else set(columns))
        return self


def _expand(groups: Sequence[FeatureGroup]) -> list[FeatureSpec]:
    out = []
    for group in groups:
        for aggregation in group.aggregations:
            for window in aggregation.windows:
                explicit = aggregation.name_for(window)
                out.append(FeatureSpec(explicit or _derived_name(group.entity, aggregation,
                                                                 window),
                                       group.entity, aggregation, window))
    return out


def _derived_name(entity: Entity, aggregation: Aggregation, window: Window) -> str:
    parts = [aggregation.column] if aggregation.column else []
    parts += [aggregation.op.value, window.name]
    if aggregation.labels is not None and aggregation.labels.mode == "delay":
        parts.append(aggregation.labels.name)
    if aggregation.exclude_current:
        parts.append("excl")
    return "_".join(parts) + f"_by_{entity.name}"


def _fields(value: Any) -> dict[str, Any]:
    out = {}
    for name in value.__dataclass_fields__:
        item = getattr(value, name)
        if isinstance(item, timedelta):
            item = item.total_seconds()
        elif isinstance(item, Window):
            item = [item.length.total_seconds(), item.lag.total_seconds()]
        elif isinstance(item, LabelMode):
            item = [item.mode, item.delay.total_seconds()]
        elif isinstance(item, Entity):
            item = [item.name, list(item.keys)]
        elif name == "names":
            item = sorted((k.name, v) for k, v in (item or ()))
        elif isinstance(item, tuple):
            item = [_fields(v) if hasattr(v, "__dataclass_fields__") else
                    (v.name if isinstance(v, Window) else v) for v in item]
        out[name] = item
    return out


def _describe(group: FeatureGroup) -> dict[str, Any]:
    return {"entity": [group.entity.name, list(group.entity.keys)],
            "aggregations": [_fields(a) for a in group.aggregations]}


def validate_feature_set(features: FeatureSet, columns: set[str] | None) -> None:
    """See :meth:`FeatureSet.validate`."""
    if not _NAME.match(features.name):
        raise DefinitionError(f"feature set name {features.name!r}: letters, digits and '_'")
    available = None if columns is None else columns | set(VIRTUAL_COLUMNS)

    def need(column: str, where: str) -> None:
        if column in LABEL_COLUMNS:
            raise DefinitionError(f"{where} reads the label column {column!r}: label leakage;"
                                  " use Op.FRAUD_COUNT / Op.FRAUD_RATIO with a label mode")
        if available is not None and column not in available:
            raise DefinitionError(f"{where}: {column!r} is not a column of transactions;"
                                  f" columns: {sorted(available)}")

    seen: dict[str, str] = {}
    for group in features.groups:
        entity = group.entity
        if not _NAME.match(entity.name) or not entity.keys:
            raise DefinitionError(f"entity {entity.name!r}: needs a name (letters, digits, '_')"
                                  " and at least one key column")
        for key in entity.keys:
            need(key, f"entity {entity.name!r}")
        for aggregation in group.aggregations:
            _validate_aggregation(aggregation, entity, need)
    for spec in features.features_:
        _unique(seen, spec.name, f"{spec.op.value} over {spec.window.name} by {spec.entity.name}")
    for transform in features.transforms:
        if not isinstance(transform, _TRANSFORMS):
            raise DefinitionError(f"transform {transform!r}: not one of"
                                  f" {[t.__name__ for t in _TRANSFORMS]}")
        where = f"transform {transform.output!r}"
        if not _NAME.match(transform.output):
            raise DefinitionError(f"{where}: names are letters, digits and '_'")
        for reference in references(transform):
            if reference not in seen:
                need(reference, where)
        if isinstance(transform, IsNight) and not (
                0 <= transform.start_hour <= transform.end_hour <= 23):
            raise DefinitionError(f"{where}: need 0 <= start_hour <= end_hour <= 23")
        _unique(seen, transform.output, where)


def _unique(seen: dict[str, str], name: str, where: str) -> None:
    if not _NAME.match(name):
        raise DefinitionError(f"feature name {name!r} ({where}): letters, digits and '_'")
    if name in seen:
        raise DefinitionError(f"feature name {name!r} is given twice ({seen[name]}; {where})")
    seen[name] = where


def _validate_aggregation(aggregation: Aggregation, entity: Entity, need: Any) -> None:
    op = aggregation.op
    where = f"{op.value} of {aggregation.column or 'events'} by {entity.name}"
    if not aggregation.windows:
        raise DefinitionError(f"{where}: give at least one window")
    if len(set(aggregation.windows)) != len(aggregation.windows):
        raise DefinitionError(f"{where}: a window is given twice")
    for window in aggregation.windows:
        if not isinstance(window, Window):
            raise DefinitionError(f"{where}: window {window!r} is not a Window; use days(7),"
                                  " hours(1) or window('30m')")
        window.validate(where)
    if op.needs_column and aggregation.column is None:
        raise DefinitionError(f"{where}: {op.value} needs a column")
    if not op.needs_column and op is not Op.COUNT and aggregation.column is not None:
        raise DefinitionError(f"{where}: {op.value} takes no column")
    if aggregation.column is not None:
        need(aggregation.column, where)
    if op.reads_labels and aggregation.labels is None:
        raise DefinitionError(f"{where}: say how labels may be read: labels=after_delay(days(7))"
                              " or labels=as_known()")
    if aggregation.labels is not None:
        if not op.reads_labels:
            raise DefinitionError(f"{where}: labels= is only for fraud_count and fraud_ratio")
        mode = aggregation.labels
        if mode.mode not in ("delay", "label_time"):
            raise DefinitionError(f"{where}: label mode {mode.mode!r} is not 'delay' or"
                                  " 'label_time'")
        if mode.mode == "delay" and mode.delay <= timedelta(0):
            raise DefinitionError(f"{where}: a label delay must be > 0 (a zero delay reads the"
                                  " label at the moment of the transaction); use as_known()")
    if aggregation.names is not None:
        unknown = [w.name for w, _ in aggregation.names  # type: ignore[misc]
                   if w not in aggregation.windows]
        if unknown:
            raise DefinitionError(f"{where}: names given for windows not in windows: {unknown}")
    if op is Op.TIME_SINCE_PREVIOUS and len(aggregation.windows) != 1:
        raise DefinitionError(f"{where}: give exactly one window (how far back to look)")
