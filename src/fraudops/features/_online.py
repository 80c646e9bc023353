"""The online feature engine: one event in, its feature vector as of that event out.

:class:`OnlineEngine` reads the same :class:`FeatureSet` objects as the offline engine and
implements ``docs/features.md`` event by event, keeping per-entity state (:mod:`._state`) in
a :class:`StateStore` (:mod:`._stores`). The feature set is compiled once, at construction,
into a plan: per entity, the columns it stores, its distinct windows and, per feature, the
operation, column, scale and window to read. ``process_one`` then does one atomic
read-modify-write on the store for the keys of the event's entities.

Out-of-order events (the rule both engines' users can rely on)
----------------------------------------------------------------
Each entity keeps its events for ``horizon + max_lateness``, where the horizon is the longest
``length + lag`` of its windows, counted back from its newest event.

* An event no older than ``max_lateness`` before the newest processed event of each of its
  entities is scored with exact window semantics, against the buffered events that come
  before it in ``(event_time, event_id)`` order (and labels as known at its own time), then
  inserted in order. Its features equal those the offline engine computes over the events
  processed so far plus itself. Events already answered are not recomputed.
* An event older than that is rejected with :class:`fraudops.core.InputError` naming the
  entity and the times; nothing is read for it nor written.
* An event whose ``(event_time, event_id)`` is already in an entity's state (a retry) is
  scored again as of itself and not added a second time.

Labels
------
``label_one`` applies a label event to every entity state that holds the event: a small index
``event_id -> (event time, entity keys)`` is written with the event, for label-reading
entities only, and deleted when the event leaves the state of its longest-horizon
label-reading entity. Label events are stored with their ``label_time`` and read as known at
the scored event's time, so a label dated in the future of a transaction is invisible to it.
A label for an event that the engine has not processed, or has already expired, is ignored
(``label_one`` returns 0).

Idle entities
-------------
An entity's events leave its state only when a later event of the same entity arrives, so a
card that is never used again would keep its state for ever. Every key the engine writes
therefore carries a time to live (``idle_ttl``, by default the longest ``horizon +
max_lateness`` of the feature set): the store drops it after that much wall-clock time
without a write. When event times follow the serving clock (live traffic, where an event
is at most ``max_lateness`` late), every event such a state held is then outside every window
of any later event, so no feature changes. A replay of old events runs faster than their
event time did, so it never loses state it still needs either.
"""

from __future__ import annotations

import json
import numbers
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

from fraudops.core import InputError

from ._definitions import (
    FeatureSet,
    Op,
)
from ._state import (
    EntityState,
    Value,
    agg_count_distinct,
    agg_last,
    agg_max,
    agg_mean,
    agg_min,
    agg_std,
    agg_sum,
    known_fraud,
    present,
)
from ._stores import StateStore
from ._transforms import (
    Column,
    HourOfDay,
    IsNight,
    IsWeekend,
    Ratio,
    Transform,
    ZScore,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
_AMOUNT = "amount"
_AMOUNT_CENTS = "amount_cents"
_OWNER = "\x00owns_label_index"  # hidden column, never an event column

# operation codes of the plan
_COUNT_EVENTS, _COUNT_VALUES, _TSP, _FRAUD_COUNT, _FRAUD_RATIO = range(5)
_COLUMN_FUNCS: dict[Op, Callable[[list[Any], int], float | None]] = {
    Op.SUM: agg_sum, Op.MEAN: agg_mean, Op.MIN: agg_min, Op.MAX: agg_max, Op.STD: agg_std,
    Op.COUNT_DISTINCT: agg_count_distinct, Op.LAST: agg_last,
}
Features = dict[str, float | None]


@dataclass(frozen=True)
class _EntityPlan:
    """What the engine does for one entity: stored columns, windows, features."""

    index: int
    name: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]  # stored source columns ('amount' is stored as 'amount_cents')
    windows: tuple[tuple[int, int], ...]  # distinct (length + lag, lag) in µs
    # (slot, code or column function, column index, scale, window index, includes current)
    specs: tuple[tuple[int, Any, int, int, int, bool], ...]
    keep_us: int  # horizon + max lateness
    reads_labels: bool
    # Which entity deletes an event's label index entry when the event expires: the
    # label-reading entity of the event with the longest horizon. The longest of all always
    # does (-1); the others store a hidden 0/1 column saying whether they own the entry.
    owner_column: int


@dataclass(frozen=True)
class _Step:
    """One event of :meth:`OnlineEngine.process_many`: its time, id, and per entity touched,
    the plan, the state key and the values it stores."""

    t_us: int
    event_id: str
    tenant: str
    touched: list[tuple[_EntityPlan, str, list[Value]]]
    index_key: str


def _compile_entities(feature_set: FeatureSet, lateness_us: int) -> tuple[_EntityPlan, ...]:
    plans = []
    for index, entity in enumerate(feature_set.entities):
        columns: dict[str, int] = {}
        windows: dict[tuple[int, int], int] = {}
        specs = []
        for slot, spec in enumerate(feature_set.aggregations):
            if spec.entity != entity:
                continue
            effective = spec.effective
            window = windows.setdefault((effective.horizon_us, effective.lag_us), len(windows))
            column, scale = -1, 1
            code: Any
            if spec.column is not None:
                source = _AMOUNT_CENTS if spec.column == _AMOUNT else spec.column
                scale = 100 if spec.column == _AMOUNT else 1
                column = columns.setdefault(source, len(columns))
            if spec.op is Op.COUNT:
                code = _COUNT_EVENTS if spec.column is None else _COUNT_VALUES
            elif spec.op is Op.TIME_SINCE_PREVIOUS:
                code = _TSP
            elif spec.op is Op.FRAUD_COUNT:
                code = _FRAUD_COUNT
            elif spec.op is Op.FRAUD_RATIO:
                code = _FRAUD_RATIO
            else:
                code = _COLUMN_FUNCS[spec.op]
            specs.append((slot, code, column, scale, window, spec.includes_current))
        horizon = max(back for back, _ in windows)
        reads_labels = any(s.op.reads_labels for s in feature_set.aggregations
                           if s.entity == entity)
        plans.append(_EntityPlan(
            index, entity.name, entity.keys, tuple(columns), tuple(windows), tuple(specs),
            horizon + lateness_us, reads_labels, -1))
    readers = [p for p in plans if p.reads_labels]
    if readers:
        top = max(readers, key=lambda p: p.keep_us)  # the first on a tie
        for i, p in enumerate(plans):
            if p.reads_labels and p is not top:
                plans[i] = replace(p, columns=(*p.columns, _OWNER), owner_column=len(p.columns))
    return tuple(plans)


class OnlineEngine:
    """Feature vectors for one event at a time, with state in a :class:`StateStore`.

    Parameters
    ----------
    feature_set : FeatureSet
        The definitions; validated and compiled into a plan here, once.
    store : StateStore
        Where entity state lives (:class:`MemoryStore`, :class:`SQLiteStore`,
        :class:`RedisStore`). The engine does not close it.
    max_lateness : timedelta
        How much older than an entity's newest event an event may be and still be scored
        exactly (see the module docstring); state is kept this much longer than the longest
        window needs.
    namespace : str or None
        Prefix of every state key; by default the feature set's name and definition hash, so
        a changed definition never reads the state of another.
    idle_ttl : timedelta, "horizon" or None
        Wall-clock time after its last write at which the store drops a key (see "Idle
        entities" in the module docstring). ``"horizon"`` (default): the longest window
        plus lag plus ``max_lateness``, the shortest that changes no feature; a shorter
        timedelta is refused. ``None``: keys stay until overwritten.

    Examples
    --------
    >>> from fraudops.features import Aggregation, Entity, FeatureGroup, FeatureSet, Op, days
    >>> from fraudops.features._stores import MemoryStore
    >>> card = Entity("card", keys=("card_id",))
    >>> fs = FeatureSet("demo", groups=[FeatureGroup(card, [
    ...     Aggregation("amount", Op.SUM, windows=[days(1)])])])
    >>> engine = OnlineEngine(fs, MemoryStore())
    >>> event = {"event_id": "e1", "event_time": 1_000_000, "tenant": "acme",
    ...          "amount_cents": 1250, "card_id": "K1"}
    >>> engine.process_one(event)
    {'amount_sum_1d_by_card': 12.5}
    >>> engine.process_one({**event, "event_id": "e2", "event_time": 2_000_000})
    {'amount_sum_1d_by_card': 25.0}
    """

    def __init__(self, feature_set: FeatureSet, store: StateStore, *,
                 max_lateness: timedelta = timedelta(hours=1),
                 namespace: str | None = None,
                 idle_ttl: timedelta | Literal["horizon"] | None = "horizon") -> None:
        feature_set.validate()
        if max_lateness < timedelta(0):
            raise ValueError("The 'max_lateness' parameter of OnlineEngine must be a timedelta"
                             f" >= 0; got {max_lateness!r}")
        self.feature_set = feature_set
        self.store = store
        self.max_lateness = max_lateness
        self.namespace = namespace or f"{feature_set.name}:{feature_set.definition_hash()}"
        self._lateness_us = max_lateness // _ONE_US
        self._entities = _compile_entities(feature_set, self._lateness_us)
        self._by_name = {plan.name: plan for plan in self._entities}
        self._aggregation_names = tuple(spec.name for spec in feature_set.aggregations)
        self._transforms = _compile_transforms(feature_set)
        self._labelled = any(plan.reads_labels for plan in self._entities)
        self.idle_ttl = _idle_ttl(idle_ttl, max(plan.keep_us for plan in self._entities))
        self._ttl_ms = None if self.idle_ttl is None else -(-self.idle_ttl // timedelta(
            milliseconds=1))

    @property
    def names(self) -> list[str]:
        """The output feature names, in order."""
        return self.feature_set.names

    # -- keys ------------------------------------------------------------------------------
    def state_key(self, entity: str, tenant: str, values: Sequence[Any]) -> str:
        """The store key of one entity's state (``values``: its key columns, in order)."""
        return f"{self.namespace}|s|{entity}|" + _json_list([tenant, *values])

    def _index_key(self, tenant: str, event_id: str) -> str:
        return f"{self.namespace}|i|" + _json_list([tenant, event_id])

    def read_state(self, entity: str, tenant: str, values: Sequence[Any]) -> EntityState | None:
        """The stored state of one entity, or None (for inspection and tests)."""
        key = self.state_key(entity, tenant, values)
        [data] = self.store.get_many([key])
        plan = self._by_name[entity]
        return None if data is None else EntityState.decode(data, len(plan.columns), key=key)

    # -- events ----------------------------------------------------------------------------
    def process_one(self, event: Mapping[str, Any]) -> Features:
        """The feature vector of ``event`` as of that event; then ``event`` enters the state.

        ``event`` holds the canonical transaction columns: ``event_id``, ``event_time``
        (timezone-aware ``datetime`` or integer microseconds since the epoch, UTC),
        ``tenant``, ``amount_cents``, entity keys and attributes. Raises
        :class:`InputError` for an event too late to be scored exactly (module docstring).
        """
        [result] = self.process_many([event])
        if isinstance(result, InputError):
            raise result
        return result

    def process_many(self, events: Sequence[Mapping[str, Any]]) -> list[Features | InputError]:
        """:meth:`process_one` for each event in order, in one read-modify-write of the store.

        Each event sees the state its predecessors in ``events`` left, exactly as if they had
        been processed one by one; the store is read and committed once for all of them
        (what a server's micro-batch of concurrent requests saves). An event that cannot be
        processed gets its :class:`InputError` in its place and changes nothing; the others
        go on. A store failure raises for the whole batch, which then changed nothing.
        """
        steps: list[_Step | InputError] = []
        keys: dict[str, None] = {}
        for event in events:
            try:
                step = self._prepare(event)
            except InputError as exc:
                steps.append(exc)
                continue
            steps.append(step)
            keys.update(dict.fromkeys(key for _, key, _ in step.touched))
        if keys:
            values = self.store.update(list(keys), lambda raw: self._apply(steps, keys, raw),
                                       ttl_ms=self._ttl_ms)
        else:
            values = [None if isinstance(s, InputError) else [None] * len(self._aggregation_names)
                      for s in steps]
        results: list[Features | InputError] = []
        for event, prepared, aggregates in zip(events, steps, values, strict=True):
            if isinstance(prepared, InputError) or isinstance(aggregates, InputError):
                results.append(prepared if isinstance(prepared, InputError) else aggregates)
                continue
            features: Features = dict(zip(self._aggregation_names, aggregates, strict=True))
            for name, transform in self._transforms:
                features[name] = transform(event, prepared.t_us, features)
            results.append(features)
        return results

    def _prepare(self, event: Mapping[str, Any]) -> _Step:
        """What one event reads and writes, checked before anything is read."""
        t_us = _time_us(event.get("event_time"), "event_time")
        event_id = event["event_id"]
        tenant = event["tenant"]
        touched = []
        for plan in self._entities:
            key_values = [event.get(column) for column in plan.keys]
            if None in key_values:
                continue
            touched.append((plan, self.state_key(plan.name, tenant, key_values),
                            [_value(event, column) for column in plan.columns]))
        index_key = ""
        if touched and self._labelled:
            index_key = self._index_key(tenant, event_id)
            _mark_owner(touched)
        return _Step(t_us, event_id, tenant, touched, index_key)

    def _apply(self, steps: Sequence[_Step | InputError], keys: Mapping[str, None],
               raw: list[bytes | None]) -> tuple[dict[str, bytes | None], list[Any]]:
        """The ``modify`` of :meth:`process_many`: every step on states decoded once, each
        state encoded once. Pure in ``raw`` (the store may call it again after a conflict)."""
        stored = dict(zip(keys, raw, strict=True))
        states: dict[str, EntityState] = {}
        changed: dict[str, EntityState | bytes | None] = {}
        out: list[Any] = []
        for step in steps:
            if isinstance(step, InputError):
                out.append(None)
                continue
            try:
                out.append(self._step(step, states, stored, changed))
            except InputError as exc:
                out.append(exc)
        writes = {key: (value.encode() if value.times else None)
                  if isinstance(value, EntityState) else value for key, value in changed.items()}
        return writes, out

    def _step(self, step: _Step, states: dict[str, EntityState], stored: Mapping[str, bytes | None],
              changed: dict[str, EntityState | bytes | None]) -> list[Any]:
        """One event on the batch's states: checked against every entity first (an event
        refused changes nothing), then scored, inserted and expired."""
        t_us, event_id, tenant = step.t_us, step.event_id, step.tenant
        current = []
        for plan, key, _ in step.touched:
            state = states.get(key)
            if state is None:
                data = stored[key]
                state = states[key] = (EntityState.empty(len(plan.columns)) if data is None else
                                       EntityState.decode(data, len(plan.columns), key=key))
            if state.times and t_us < state.times[-1] - self._lateness_us:
                raise InputError(
                    f"event {event_id!r} at {_iso(t_us)}: {plan.name} {key.rsplit('|', 1)[-1]}"
                    f" has already processed an event at {_iso(state.times[-1])}, more than"
                    f" max_lateness={self.max_lateness} later; the event cannot be scored"
                    " exactly and was not processed")
            current.append(state)
        out: list[Any] = [None] * len(self._aggregation_names)
        holders: list[list[str]] = []
        is_new = False
        for (plan, key, values), state in zip(step.touched, current, strict=True):
            position, seen = state.position(t_us, event_id)
            _compute(plan, state, position, t_us, values, out)
            if not seen:
                state.insert(position, t_us, event_id, values)
                is_new = True
            limit = state.times[-1] - plan.keep_us
            if plan.reads_labels:
                holders.append([plan.name, key])
                cut = bisect_right(state.times, limit)
                owned = plan.owner_column
                for i in range(cut):
                    if owned < 0 or state.columns[owned][i]:
                        changed[self._index_key(tenant, state.ids[i])] = None
            state.expire(limit)
            changed[key] = state
        if holders and is_new:
            changed[step.index_key] = json.dumps([t_us, holders]).encode()
        return out

    # -- labels ----------------------------------------------------------------------------
    def label_one(self, label: Mapping[str, Any]) -> int:
        """Apply one label event ``(tenant, event_id, is_fraud, label_time)``.

        The label is stored with its ``label_time`` in every entity state that holds the
        event, and read as known at each scored event's time. Returns the number of entity
        states updated: 0 when the event was never processed or has left every window.
        """
        if not self._labelled:
            return 0
        tenant, event_id = label["tenant"], label["event_id"]
        label_time_us = _time_us(label.get("label_time"), "label_time")
        is_fraud = bool(label["is_fraud"])
        [index] = self.store.get_many([self._index_key(tenant, event_id)])
        if index is None:
            return 0
        t_us, holders = json.loads(index)
        keys = [key for _, key in holders]
        plans = [self._by_name[name] for name, _ in holders]

        def modify(raw: list[bytes | None]) -> tuple[dict[str, bytes | None], int]:
            writes: dict[str, bytes | None] = {}
            for plan, key, data in zip(plans, keys, raw, strict=True):
                if data is None:
                    continue
                state = EntityState.decode(data, len(plan.columns), key=key)
                if state.add_label(t_us, event_id, label_time_us, is_fraud):
                    writes[key] = state.encode()
            return writes, len(writes)

        return self.store.update(keys, modify, ttl_ms=self._ttl_ms)


def _idle_ttl(value: timedelta | Literal["horizon"] | None, keep_us: int) -> timedelta | None:
    needed = timedelta(microseconds=keep_us)
    if value == "horizon":
        return needed
    if value is None:
        return None
    if not isinstance(value, timedelta) or value < needed:
        raise ValueError(f"The 'idle_ttl' parameter of OnlineEngine must be 'horizon', None or a"
                         f" timedelta of at least the longest window + lag + max_lateness"
                         f" ({needed}), so that no feature changes; got {value!r}")
    return value


def _mark_owner(touched: list[tuple[_EntityPlan, str, list[Value]]]) -> None:
    """Flag, in the entities that store the flag, which one owns the event's label index
    entry: the label-reading entity of this event with the longest horizon."""
    owner = None
    for plan, _, _ in touched:
        if plan.reads_labels and (owner is None or plan.keep_us > owner.keep_us):
            owner = plan
    for plan, _, values in touched:
        if plan.owner_column >= 0:
            values[plan.owner_column] = 1 if plan is owner else 0


def _compute(plan: _EntityPlan, state: EntityState, position: int, t_us: int,
             values: list[Value], out: list[Any]) -> None:
    """Fill ``out`` with ``plan``'s features for an event at ``t_us`` that comes after the
    first ``position`` buffered events."""
    times = state.times
    bounds = []
    for back, lag in plan.windows:
        high = position if lag == 0 else bisect_right(times, t_us - lag)
        bounds.append((bisect_right(times, t_us - back, 0, high), high))
    for slot, code, column, scale, window, include in plan.specs:
        low, high = bounds[window]
        if code is _COUNT_EVENTS:
            out[slot] = float(high - low + include)
        elif code is _TSP:
            out[slot] = (t_us - times[high - 1]) / 1e6 if high > low else None
        elif code is _FRAUD_COUNT or code is _FRAUD_RATIO:
            frauds = 0
            for labelled_id, held in state.labels.items():
                if low <= state.position(held[0], labelled_id)[0] < high and known_fraud(held,
                                                                                          t_us):
                    frauds += 1
            if code is _FRAUD_COUNT:
                out[slot] = float(frauds)
            else:
                out[slot] = frauds / (high - low) if high > low else 0.0
        else:
            window_values = state.columns[column][low:high]
            if include:
                window_values.append(values[column])
            window_values = present(window_values)
            if code is _COUNT_VALUES:
                out[slot] = float(len(window_values))
            else:
                out[slot] = code(window_values, scale)


# -- transforms ------------------------------------------------------------------------------
Reader = Callable[[Mapping[str, Any], Features], float | None]
TransformFn = Callable[[Mapping[str, Any], int, Features], float | None]


def _reader(name: str, known: set[str]) -> Reader:
    if name in known:
        return lambda event, features: features[name]
    if name == _AMOUNT:
        return lambda event, features: event[_AMOUNT_CENTS] / 100
    return lambda event, features: _number(event.get(name), name)


def _compile_transforms(feature_set: FeatureSet) -> list[tuple[str, TransformFn]]:
    known = {spec.name for spec in feature_set.aggregations}
    out = []
    for transform in feature_set.transforms:
        out.append((transform.output, _transform(transform, known)))
        known.add(transform.output)
    return out


def _transform(transform: Transform, known: set[str]) -> TransformFn:
    if isinstance(transform, Column):
        read = _reader(transform.column, known)
        return lambda event, t_us, features: read(event, features)
    if isinstance(transform, IsWeekend):
        # 1970-01-01 was a Thursday: day 0 has weekday 3 (Monday = 0)
        return lambda event, t_us, features: 1.0 if (t_us // _DAY_US + 3) % 7 >= 5 else 0.0
    if isinstance(transform, IsNight):
        start, end = transform.start_hour, transform.end_hour
        return lambda event, t_us, features: (
            1.0 if start <= (t_us // _HOUR_US) % 24 <= end else 0.0)
    if isinstance(transform, HourOfDay):
        return lambda event, t_us, features: float((t_us // _HOUR_US) % 24)
    if isinstance(transform, Ratio):
        top, bottom = _reader(transform.numerator, known), _reader(transform.denominator, known)

        def ratio(event: Mapping[str, Any], t_us: int, features: Features) -> float | None:
            a, b = top(event, features), bottom(event, features)
            return None if a is None or not b else a / b

        return ratio
    if isinstance(transform, ZScore):
        value = _reader(transform.value, known)
        mean, std = _reader(transform.mean, known), _reader(transform.std, known)

        def zscore(event: Mapping[str, Any], t_us: int, features: Features) -> float | None:
            v, m, s = value(event, features), mean(event, features), std(event, features)
            return None if v is None or m is None or not s else (v - m) / s

        return zscore
    raise TypeError(f"transform {transform!r} is not supported")  # validate() prevents this


# -- event values ----------------------------------------------------------------------------
def _time_us(value: Any, field: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError(f"field {field!r} = {value!r}: a naive datetime; times must be"
                             " timezone-aware UTC")
        return (value - _EPOCH) // _ONE_US
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise InputError(f"field {field!r} = {value!r}: not a datetime nor integer microseconds")


def _value(event: Mapping[str, Any], column: str) -> Value:
    """An event column as stored in state: numbers, text, None; bool as 0/1, times as µs."""
    value = event.get(column)
    kind = type(value)
    if value is None or kind is int or kind is str or kind is float:
        return value
    if kind is bool:
        return int(value)
    if isinstance(value, datetime):
        return _time_us(value, column)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise InputError(f"event {event.get('event_id')!r}: column {column!r} = {value!r}: not a"
                     " number, text, boolean or timestamp")


def _number(value: Any, column: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | numbers.Real):
        return float(value)
    raise InputError(f"column {column!r} = {value!r}: a feature must be a number")


def _json_list(values: list[Any]) -> str:
    """``json.dumps(values)``, the form of every stored key; text-only lists (the usual keys)
    go straight to the json module's C string encoder, 3x faster on the hot path."""
    if all(type(v) is str for v in values):
        return "[" + ", ".join(map(encode_basestring_ascii, values)) + "]"
    return json.dumps(values)


def _iso(t_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=t_us)).isoformat()
