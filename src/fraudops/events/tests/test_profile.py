"""The data profile: every figure equals a plain-Python recount of a small synthetic store."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from fraudops.core import InputError

# Re-exported by fraudops.events when the package wires the profile in; until then the tests
# import the modules that define it.
from fraudops.events import (
    LABEL_SCHEMA,
    UTC_TIME,
    EventStore,
    Profile,
    profile_events,
    render_profile_html,
    write_profile,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
N_ACME, N_GLOBEX, N_FRAUD = 300, 100, 40
SCRIPT = "<script>alert('x')</script>"
SCHEMA = pa.schema([
    ("event_id", pa.string()), ("event_time", UTC_TIME), ("tenant", pa.string()),
    ("amount_cents", pa.int64()), ("card_id", pa.string()), ("channel", pa.string()),
    ("color", pa.string()), ("note", pa.string()), ("score", pa.float64()),
    ("neg_score", pa.float64()), ("noise", pa.int64()), ("constant", pa.int64()),
    ("distance", pa.float64()), ("is_new", pa.bool_()),
])


def _rows() -> list[dict[str, Any]]:
    """400 transactions over 2 tenants and 4 of 5 days; exactly 40 frauds by current label.

    ``color`` and ``noise`` are assigned by rank *within* the fraud and the genuine class, so
    both classes have exactly the same distribution of them: independent of fraud by design.
    """
    rng = np.random.default_rng(3)
    n = N_ACME + N_GLOBEX
    fraud = np.zeros(n, bool)
    fraud[rng.choice(n, N_FRAUD, replace=False)] = True
    rank = np.zeros(n, int)
    for cls in (True, False):
        rank[fraud == cls] = np.arange(int((fraud == cls).sum()))
    rows = []
    for i in range(n):
        tenant, local = ("acme", i) if i < N_ACME else ("globex", i - N_ACME)
        day = [0, 1, 2, 4][i % 4]  # day 3 has no events
        missing_distance = i % 7 == 0
        rows.append({
            "event_id": f"e{local}",  # ids repeat across tenants: labels must join on both
            "event_time": T0 + timedelta(days=day, minutes=i),
            "tenant": tenant,
            "amount_cents": int(rng.lognormal(8, 1.5)) + 1,
            "card_id": f"c{i % 37}",
            "channel": ("ecom" if i % 3 else "pos") if fraud[i] else ("pos" if i % 4 else "ecom"),
            "color": ["red", "green", "blue", "gold"][rank[i] % 4],
            "note": None if i % 5 == 0 else (SCRIPT if i % 5 == 1 else f"n{i % 3} & \"q\""),
            "score": 100.0 + rank[i] if fraud[i] else float(rank[i] % 50),
            "neg_score": -(100.0 + rank[i]) if fraud[i] else -float(rank[i] % 50),
            "noise": int(rank[i] % 5),
            "constant": 7,
            "distance": None if missing_distance else (math.nan if i % 11 == 0 else i * 0.5),
            "is_new": bool(i % 2),
            "_fraud": bool(fraud[i]),
        })
    return rows


def _labels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fraud labels for frauds (some after a genuine label), genuine labels for some others,
    reversed fraud labels, one orphan and one label dated before its event."""
    labels = []
    for i, row in enumerate(rows):
        key = {"event_id": row["event_id"], "tenant": row["tenant"]}
        at = row["event_time"]
        if row["_fraud"]:
            if i % 2:
                labels.append({**key, "is_fraud": False, "label_time": at + timedelta(hours=1),
                               "source": "review"})
            labels.append({**key, "is_fraud": True, "label_time": at + timedelta(days=3),
                           "source": "chargeback", "fraud_type": f"s{i % 3}"})
        elif i % 10 == 0:
            labels.append({**key, "is_fraud": False, "label_time": at + timedelta(days=1)})
        elif i % 10 == 3:  # a chargeback later withdrawn: not fraud
            labels.append({**key, "is_fraud": True, "label_time": at + timedelta(days=1)})
            labels.append({**key, "is_fraud": False, "label_time": at + timedelta(days=4)})
        elif i == 9:  # dated before its transaction
            labels.append({**key, "is_fraud": False, "label_time": at - timedelta(days=1)})
    labels.append({"event_id": "ghost", "tenant": "acme", "is_fraud": True, "label_time": T0})
    return labels


def _build(root: Path, rows: list[dict[str, Any]], labels: list[dict[str, Any]]) -> EventStore:
    store = EventStore(root)
    columns = {f.name: [r[f.name] for r in rows] for f in SCHEMA}
    store.append_transactions(pa.table(columns, schema=SCHEMA), batch_id="t1")
    if labels:
        store.append_labels(pa.Table.from_pylist(labels, schema=LABEL_SCHEMA), batch_id="l1")
    return store


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return _rows()


@pytest.fixture(scope="module")
def labels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _labels(rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]],
          labels: list[dict[str, Any]]) -> EventStore:
    return _build(tmp_path_factory.mktemp("profile"), rows, labels)


@pytest.fixture(scope="module")
def profile(store: EventStore) -> Profile:
    return profile_events(store)


@pytest.fixture(scope="module")
def page(profile: Profile) -> str:
    return render_profile_html(profile)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def test_counts_missing_and_distinct_equal_a_python_recount(
        profile: Profile, rows: list[dict[str, Any]]) -> None:
    for field in SCHEMA:
        values = [r[field.name] for r in rows]
        present = [v for v in values if _present(v)]
        column = profile.column(field.name)
        assert (column.count, column.missing) == (len(present), len(rows) - len(present)), field
        assert column.missing_rate == pytest.approx(1 - len(present) / len(rows))
        if field.name == "event_id":  # an event is identified by (tenant, event_id)
            present = [(r["tenant"], r["event_id"]) for r in rows]
        assert column.distinct == len(set(present)), field.name


def test_nan_counts_as_missing_and_is_reported(profile: Profile,
                                               rows: list[dict[str, Any]]) -> None:
    numeric = profile.column("distance").numeric
    assert numeric is not None
    nans = sum(1 for r in rows if isinstance(r["distance"], float) and math.isnan(r["distance"]))
    assert nans > 0
    assert numeric.non_finite == nans


def test_unlabelled_and_withdrawn_fraud_count_as_not_fraud(
        profile: Profile, rows: list[dict[str, Any]]) -> None:
    assert profile.totals.frauds == N_FRAUD == sum(r["_fraud"] for r in rows)
    assert profile.totals.transactions == len(rows)
    assert profile.totals.unlabelled > 0
    assert any("count as not fraud" in note for note in profile.notes)


def test_fraud_rate_per_category_equals_a_python_recount(
        profile: Profile, rows: list[dict[str, Any]]) -> None:
    for name in ("channel", "note", "is_new"):
        seen: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            value = r[name]
            key = None if value is None else str(value).lower()
            seen[key][0] += 1
            seen[key][1] += r["_fraud"]
        cats = profile.column(name).categories
        assert cats is not None
        got = {c.value: (c.count, c.frauds, c.fraud_rate) for c in cats.top}
        if cats.missing is not None:
            got[None] = (cats.missing.count, cats.missing.frauds, cats.missing.fraud_rate)
        assert got == {k: (n, f, f / n) for k, (n, f) in seen.items()}


def test_rare_categories_beyond_the_cap_are_grouped_as_other(store: EventStore) -> None:
    cats = profile_events(store, max_categories=1).column("color").categories
    assert cats is not None
    assert [c.count for c in cats.top] == [100]
    assert cats.other is not None
    assert (cats.other.count, cats.other_categories) == (300, 3)


def test_auc_of_a_perfectly_separating_column_is_one(profile: Profile) -> None:
    assert (profile.column("score").auc, profile.column("score").auc_direction) == (1.0, "higher")
    neg = profile.column("neg_score")
    assert (neg.auc, neg.auc_direction) == (1.0, "lower")


def test_auc_of_a_constant_column_is_one_half(profile: Profile) -> None:
    constant = profile.column("constant")
    assert constant.auc == 0.5
    assert "constant" in constant.flags


def test_auc_of_a_column_independent_of_fraud_is_one_half(profile: Profile) -> None:
    assert profile.column("noise").auc == pytest.approx(0.5)


def test_auc_equals_the_pairwise_definition(profile: Profile,
                                            rows: list[dict[str, Any]]) -> None:
    """P(fraud value > genuine value) + P(tie) / 2, by comparing every pair."""
    frauds = [r["amount_cents"] for r in rows if r["_fraud"]]
    genuine = [r["amount_cents"] for r in rows if not r["_fraud"]]
    wins = sum((f > g) + 0.5 * (f == g) for f in frauds for g in genuine)
    a = wins / (len(frauds) * len(genuine))
    assert profile.column("amount_cents").auc == pytest.approx(max(a, 1 - a))


def test_information_value_is_zero_for_a_category_independent_of_fraud(
        profile: Profile) -> None:
    assert profile.column("color").iv == pytest.approx(0.0, abs=1e-12)


def test_information_value_is_larger_for_a_predictive_category(profile: Profile) -> None:
    channel, color = profile.column("channel").iv, profile.column("color").iv
    assert channel is not None
    assert color is not None
    assert channel > 0.1 > color


def test_a_perfectly_separating_column_is_flagged_as_suspicious(profile: Profile) -> None:
    assert any("leakage" in flag for flag in profile.column("score").flags)
    assert not any("leakage" in flag for flag in profile.column("noise").flags)


def test_columns_are_ranked_by_information_value(profile: Profile) -> None:
    ivs = [c.iv for c in profile.ranked_columns() if c.iv is not None]
    assert ivs == sorted(ivs, reverse=True)
    assert profile.ranked_columns()[-1].iv is None


def test_events_and_frauds_per_day_equal_a_python_recount(
        profile: Profile, rows: list[dict[str, Any]]) -> None:
    per_day: Counter[date] = Counter(r["event_time"].date() for r in rows)
    frauds: Counter[date] = Counter(r["event_time"].date() for r in rows if r["_fraud"])
    got = {d.day: (d.events, d.frauds) for d in profile.daily}
    assert got == {T0.date() + timedelta(days=k): (per_day[T0.date() + timedelta(days=k)],
                                                   frauds[T0.date() + timedelta(days=k)])
                   for k in range(5)}
    assert got[T0.date() + timedelta(days=3)] == (0, 0)  # the empty day is shown, as zero


def test_per_tenant_days_add_up_to_the_total(profile: Profile) -> None:
    assert [t.tenant for t in profile.daily_by_tenant] == ["acme", "globex"]
    for k, day in enumerate(profile.daily):
        assert day.events == sum(t.days[k].events for t in profile.daily_by_tenant)
        assert day.frauds == sum(t.days[k].frauds for t in profile.daily_by_tenant)


def test_entity_keys_are_summarised_per_tenant_and_value(
        profile: Profile, rows: list[dict[str, Any]]) -> None:
    column = profile.column("card_id")
    assert column.kind == "entity"
    assert column.categories is None
    entity = column.entity
    assert entity is not None
    events: Counter[tuple[str, str]] = Counter((r["tenant"], r["card_id"]) for r in rows)
    fraudulent = {(r["tenant"], r["card_id"]) for r in rows if r["_fraud"]}
    assert entity.entities == len(events)
    assert entity.entities_with_fraud == len(fraudulent)
    assert entity.max_events == max(events.values())
    assert sum(entity.histogram.counts) == len(events)


def test_histogram_counts_add_up_to_present_values(profile: Profile) -> None:
    for column in profile.columns:
        if column.numeric is not None:
            assert sum(column.numeric.histogram.counts) == column.count, column.name


def test_heavy_tailed_amounts_get_log_bins(profile: Profile) -> None:
    numeric = profile.column("amount_cents").numeric
    assert numeric is not None
    assert numeric.histogram.scale == "log"


def test_label_summary_counts_relabels_orphans_and_early_labels(
        profile: Profile, labels: list[dict[str, Any]]) -> None:
    per_event = Counter((lab["tenant"], lab["event_id"]) for lab in labels)
    assert profile.labels.label_events == len(labels)
    assert profile.labels.relabelled == sum(1 for n in per_event.values() if n > 1)
    assert profile.labels.orphans == 1
    assert profile.labels.before_event == 1
    assert profile.labels.fraud_delay_days is not None
    assert profile.labels.fraud_delay_days.p50 == pytest.approx(3.0)


def test_labels_are_counted_per_source_and_fraud_type_of_the_current_label(
        profile: Profile, rows: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for lab in sorted(labels, key=lambda lab: (lab["label_time"], lab["is_fraud"])):
        current[(lab["tenant"], lab["event_id"])] = lab
    in_scope = [current[(r["tenant"], r["event_id"])] for r in rows
                if (r["tenant"], r["event_id"]) in current]
    for field, got in (("source", profile.labels.sources),
                       ("fraud_type", profile.labels.fraud_types)):
        expected = Counter(lab.get(field) for lab in in_scope)
        assert {g.value: g.count for g in got} == expected, field
    assert sum(g.frauds for g in profile.labels.sources) == N_FRAUD


def test_spearman_correlations_match_scipy_on_pairwise_complete_rows(
        store: EventStore, rows: list[dict[str, Any]]) -> None:
    corr = profile_events(store).correlations
    assert corr is not None
    values = {name: np.array([np.nan if not _present(r[name]) else float(r[name])
                              for r in rows]) for name in corr.columns}
    fraud = np.array([float(r["_fraud"]) for r in rows])
    for i, a in enumerate(corr.columns):
        mask = ~np.isnan(values[a])
        assert corr.with_fraud[i] == pytest.approx(stats.spearmanr(values[a][mask],
                                                                   fraud[mask])[0])
        for j, b in enumerate(corr.columns):
            both = ~np.isnan(values[a]) & ~np.isnan(values[b])
            assert corr.matrix[i][j] == pytest.approx(
                stats.spearmanr(values[a][both], values[b][both])[0]), (a, b)
    assert "constant" not in corr.columns


def test_correlations_use_a_seeded_sample_when_the_scope_is_larger(store: EventStore) -> None:
    first = profile_events(store, sample_rows=120, seed=1).correlations
    again = profile_events(store, sample_rows=120, seed=1).correlations
    assert first is not None
    assert (first.sampled, first.rows) == (True, 120)
    assert first == again
    assert any("seeded sample of 120" in note
               for note in profile_events(store, sample_rows=120).notes)


def test_one_tenant_is_profiled_but_every_tenant_is_listed(store: EventStore) -> None:
    profile = profile_events(store, tenant="globex")
    assert profile.totals.transactions == N_GLOBEX
    assert [(t.tenant, t.transactions) for t in profile.tenants] == [("acme", N_ACME),
                                                                     ("globex", N_GLOBEX)]
    assert profile.column("tenant").distinct == 1


def test_an_unknown_tenant_is_refused_naming_the_tenants(store: EventStore) -> None:
    with pytest.raises(InputError, match=r"tenant = 'nope'.*\['acme', 'globex'\]"):
        profile_events(store, tenant="nope")


def test_an_empty_store_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"holds no transactions.*fraudops ingest"):
        profile_events(EventStore(tmp_path / "empty"))


def test_a_bad_parameter_is_named(store: EventStore) -> None:
    with pytest.raises(ValueError, match="'sample_rows' parameter of profile_events"):
        profile_events(store, sample_rows=0)


def test_progress_is_reported_to_the_end(store: EventStore) -> None:
    calls: list[tuple[str, int, int | None]] = []
    profile_events(store, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls[-1][1] == calls[-1][2]
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


def test_json_round_trips_with_sorted_keys(profile: Profile, tmp_path: Path) -> None:
    json_path, html_path = write_profile(profile, tmp_path / "reports")
    text = json_path.read_text(encoding="utf-8")
    loaded = json.loads(text)
    assert loaded == profile.to_dict()
    assert text == json.dumps(loaded, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert html_path.read_text(encoding="utf-8") == render_profile_html(profile)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["profile.html",
                                                                        "profile.json"]


def test_html_makes_no_external_reference(page: str) -> None:
    targets = re.findall(r"""(?:src|href|action)\s*=\s*["']?([^"' >]*)""", page, re.I)
    assert all(t.startswith("#") for t in targets), targets
    assert not re.search(r"https?://|<link|<img|<iframe|@import|url\(", page, re.I)


def test_html_escapes_a_script_value_from_the_data(page: str) -> None:
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own sorting script, nothing else
    assert "&amp; &quot;q&quot;" in page


class _StrictParser(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def test_html_parses_with_every_element_closed(page: str) -> None:
    parser = _StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    assert page.startswith("<!DOCTYPE html>")


def test_html_shows_every_column_and_the_totals(profile: Profile, page: str) -> None:
    for column in profile.columns:
        assert f'id="col-{column.name}"' in page
    assert f"{profile.totals.transactions:,}" in page


def test_a_store_without_labels_or_frauds_is_profiled_and_rendered(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    store.append_transactions(pa.table({
        "event_id": ["a"], "event_time": pa.array([T0], UTC_TIME), "tenant": ["t"],
        "amount_cents": [5], "empty": pa.array([None], pa.float64())}), batch_id="1")
    profile = profile_events(store)
    assert (profile.totals.frauds, profile.correlations) == (0, None)
    assert profile.column("empty").flags == ("all missing",)
    assert profile.column("amount_cents").auc is None
    assert any("No transaction is labelled fraud" in note for note in profile.notes)
    parser = _StrictParser()
    parser.feed(render_profile_html(profile))
    assert parser.stack == []


def test_a_repeated_event_id_of_one_tenant_is_flagged(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    for batch in ("1", "2"):  # the store itself does not de-duplicate; ingestion does
        store.append_transactions(pa.table({
            "event_id": ["a", "b"], "event_time": pa.array([T0, T0], UTC_TIME),
            "tenant": ["t", "u"], "amount_cents": [5, 6]}), batch_id=batch)
    event_id = profile_events(store).column("event_id")
    assert (event_id.count, event_id.distinct) == (4, 2)
    assert "2 duplicate ids" in event_id.flags


def test_events_per_hour_of_day_add_up_to_all_events(profile: Profile) -> None:
    time = profile.column("event_time").time
    assert time is not None
    assert time.hour_of_day is not None
    assert sum(time.hour_of_day.counts) == profile.totals.transactions
    assert sum(time.hour_of_day.frauds) == profile.totals.frauds
