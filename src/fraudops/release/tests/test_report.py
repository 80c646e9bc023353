"""The gate report's files (HTML, JSON, CSV) and the registry wiring of a verdict."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from fraudops.core import Workspace
from fraudops.models import ModelRegistry, RegistryError
from fraudops.models._registry_store import make_client
from fraudops.models.tests.test_registry import install_template, log, make_template, write_artifact
from fraudops.release import CheckResult, GateReport
from fraudops.release._report_html import MAX_HTML_ROWS, render_gate_html
from fraudops.release._report_io import gate_json, read_gate_report, write_gate_report
from fraudops.release._wiring import GATE_TAG_PREFIX, gate_and_record

EVIL = '<script>alert("x")</script>'
ROWS = MAX_HTML_ROWS + 500


# -- a report built by hand ----------------------------------------------------------------------
def score_diffs(n: int = ROWS) -> pa.Table:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    actions = ("ALLOW", "REVIEW", "PREVENT")
    cand = [float((i * 37) % 101) for i in range(n)]
    live = [float((i * 53) % 101) for i in range(n)]
    rows = sorted(range(n), key=lambda i: -abs(cand[i] - live[i]))
    return pa.table({
        "tenant": pa.array(["acme"] * n),
        "event_id": pa.array([EVIL if j == 0 else f"e{i:05d}" for j, i in enumerate(rows)]),
        "event_time": pa.array([start + timedelta(minutes=i) for i in rows],
                               pa.timestamp("us", tz="UTC")),
        "card_id": pa.array([f"00{i % 97}" for i in rows]),
        "amount": pa.array([12.5 + i for i in rows]),
        "is_fraud": pa.array([i % 11 == 0 for i in rows]),
        "candidate_score": pa.array([cand[i] for i in rows]),
        "live_score": pa.array([live[i] for i in rows]),
        "abs_diff": pa.array([abs(cand[i] - live[i]) for i in rows]),
        "candidate_action": pa.array([actions[int(cand[i]) // 34] for i in rows]),
        "live_action": pa.array([actions[int(live[i]) // 34] for i in rows]),
    })


def checks(*, pass_ap: bool = True) -> tuple[CheckResult, ...]:
    weeks = [{"start": f"2024-04-{d:02d}T00:00:00", "end": "", "n_events": 5000, "n_frauds": 20,
              "candidate_ap": 0.40 + d / 100, "live_ap": 0.38 if d != 15 else None}
             for d in (1, 8, 15, 22)]
    return (
        CheckResult("average_precision", "PR-AUC not worse than live beyond noise", pass_ap,
                    0.021 if pass_ap else -0.08, -0.01,
                    "candidate AP 0.412 vs live 0.391; 95% CI of the difference [0.004, 0.038].",
                    {"candidate_ap": 0.412, "live_ap": 0.391, "bootstrap": {
                        "estimate": 0.021, "mean": 0.02, "low": 0.004, "high": 0.038,
                        "confidence": 0.95, "n_bootstrap": 200, "n_valid": 200, "n_blocks": 28}}),
        CheckResult("backtest", "Not worse than live in most of the last 4 weeks", True, 3.0, 3.0,
                    "candidate AP within 0.02 of live in 3 of 3 weeks.", {"weeks": weeks}),
        CheckResult("score_psi", "Score drift between training and the latest week", False, 0.31,
                    0.25, f"PSI 0.31 above 0.25 on tenant {EVIL}.", {"psi": math.nan},
                    blocking=False),
        CheckResult("latency", "Single-event p99 within budget", True, 0.41, 1.0,
                    "p99 0.41 ms for a budget of 1 ms.", {"p50_ms": 0.2, "p99_ms": 0.41,
                                                          "when": datetime(2024, 5, 1, tzinfo=UTC)}),
    )


def make_report(*, passed: bool = True, rows: int = ROWS) -> GateReport:
    return GateReport(candidate="fraud-acme v2", baseline="fraud-acme v1 (live)", tenant="acme",
                      window=("2024-04-01T00:00:00+00:00", "2024-04-29T00:00:00+00:00"),
                      labels_as_of="2024-05-06T00:00:00+00:00", checks=checks(pass_ap=passed),
                      score_diffs=score_diffs(rows), created_at="2024-05-06T10:00:00+00:00")


class Page(HTMLParser):
    """Tags, attributes and text of a page; the body rows of each table with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: dict[str, int] = {}
        self.checks: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.attrs.append((tag, found))
        if tag == "table":
            self._table = found.get("id")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1
            if found.get("data-check"):
                self.checks.append(str(found["data-check"]))
        if tag in ("html", "head", "body", "main", "section", "table", "tbody", "script", "style"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        if tag in ("html", "head", "body", "main", "section", "table", "tbody", "script", "style"):
            assert self.open[-1:] == [tag], (tag, self.open[-3:])
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    return parser


# -- HTML ----------------------------------------------------------------------------------------
def test_html_loads_nothing_from_anywhere() -> None:
    page = render_gate_html(make_report())
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';',
                     page)
    for tag, attrs in parse(page).attrs:
        assert "src" not in attrs, tag  # no image, script or frame from a file or a server
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
        assert "action" not in attrs, tag
    assert not re.search(r"https?:|//[a-z]|url\(|@import", page.replace(
        "http-equiv", "")), "an external reference"


def test_html_escapes_data() -> None:
    page = render_gate_html(make_report())
    assert EVIL not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own script
    assert EVIL in "".join(parse(page).text)  # a reader sees the id as it is


def test_html_has_verdict_every_check_and_capped_diff_table() -> None:
    report = make_report(passed=False)
    page = render_gate_html(report)
    parsed = parse(page)
    text = " ".join(parsed.text)
    assert "✗ FAIL" in text
    assert "PASS" not in text.split("How to read")[0].replace(
        "passed", "")
    assert "PR-AUC not worse than live beyond noise" in text
    assert parsed.checks == [c.name for c in report.checks]
    for check in report.checks:
        assert check.title in text
    assert "warning only" in text
    assert parsed.rows["diffs"] == MAX_HTML_ROWS
    assert f"The {MAX_HTML_ROWS:,} largest of {ROWS:,} rows are shown" in text
    assert "score_diffs.csv" in text
    assert 'id="diff-filter"' in page
    assert 'class="sortable" id="diffs"' in page
    # charts from the figures: the weekly backtest lines and the bootstrap interval
    assert page.count('<path class="cand"') == 1
    assert page.count('<path class="live"') == 1
    assert "Bootstrap confidence intervals" in text


def test_html_passing_report_and_empty_diffs() -> None:
    report = make_report(rows=0)
    page = render_gate_html(report)
    text = " ".join(parse(page).text)
    assert report.passed
    assert "✓ PASS" in text
    assert "✗ FAIL" not in text
    assert "No event in the compared window" in text
    assert "PSI 0.31 above 0.25" in text  # a failed warning-only check is still shown


# -- files ---------------------------------------------------------------------------------------
def test_files_csv_holds_every_row_and_json_round_trips(tmp_path: Path) -> None:
    report = make_report(passed=False)
    files = write_gate_report(report, tmp_path / "out")
    assert [p.name for p in (files.json, files.html, files.csv)] == [
        "gate.json", "gate.html", "score_diffs.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["gate.json", "gate.html", "score_diffs.csv"])  # no temporary file left
    data = json.loads(files.json.read_text())
    assert data["passed"] is False
    assert data["failures"] == ["average_precision"]
    assert data["checks"][2]["figures"]["psi"] is None  # NaN is not JSON
    assert data["checks"][3]["figures"]["when"] == "2024-05-01T00:00:00+00:00"
    assert data["score_diffs"]["rows"] == ROWS
    assert data["score_diffs"]["top"][0]["event_id"] == EVIL
    assert files.html.read_text() == render_gate_html(report)

    back = read_gate_report(files.json.parent)
    assert back.score_diffs.num_rows == ROWS
    assert back.score_diffs.column("event_id").to_pylist() == \
        report.score_diffs.column("event_id").to_pylist()
    assert back.score_diffs.column("card_id").to_pylist()[:3] == \
        report.score_diffs.column("card_id").to_pylist()[:3]  # "0012" stays text
    assert back.score_diffs.to_pylist() == report.score_diffs.to_pylist()
    assert (back.passed, [c.name for c in back.failures]) == (False, ["average_precision"])
    assert json.loads(gate_json(back)) == data  # JSON → report → the same JSON (3 == 3.0)
    assert replace(back, score_diffs=report.score_diffs, checks=report.checks) == replace(
        report)


def test_rewriting_replaces_the_files(tmp_path: Path) -> None:
    write_gate_report(make_report(passed=False), tmp_path)
    files = write_gate_report(make_report(passed=True, rows=3), tmp_path)
    assert json.loads(files.json.read_text())["passed"] is True
    assert read_gate_report(tmp_path).score_diffs.num_rows == 3


# -- a real browser ------------------------------------------------------------------------------
def _browser() -> str | None:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser on PATH (chromium-headless-shell, chromium,"
                    " chromium-browser or google-chrome); the HTML is still checked by html.parser")
    files = write_gate_report(make_report(passed=False), tmp_path / "report")
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", files.html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert '<table class="sortable" id="diffs">' in dom
    assert "✗ FAIL" in dom
    assert "average_precision" in dom
    assert dom.count('data-changed="') == MAX_HTML_ROWS
    assert EVIL not in dom  # still text, never an element
    assert "<svg" in dom


# -- wiring --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def registry(tmp_path: Path, template: Path) -> ModelRegistry:
    """Model 'fraud-acme' with v1 live and v2 candidate."""
    ws = Workspace.init(tmp_path / "ws")
    install_template(template, ws)
    registry = ModelRegistry(workspace=ws, model_name="fraud-acme")
    for i in range(2):
        registry.register(log(registry, write_artifact(tmp_path / f"a{i}", seed=i)).run_id)
    registry.set_role(1, "live")
    registry.set_role(2, "candidate")
    return registry


def version_tags(registry: ModelRegistry, version: int) -> dict[str, str]:
    mv = make_client(registry.tracking_uri).get_model_version("fraud-acme", str(version))
    return {k.removeprefix(GATE_TAG_PREFIX): v for k, v in mv.tags.items()
            if k.startswith(GATE_TAG_PREFIX)}


def test_passed_gate_promotes_and_records(registry: ModelRegistry) -> None:
    decision = gate_and_record(registry, candidate_version=2, model_name="fraud-acme",
                               report=make_report(passed=True), report_uri="reports/gate-x")
    assert (decision.passed, decision.role, decision.previous) == (True, "shadow", None)
    assert decision.warnings == ("score_psi",)
    assert decision.failures == ()
    assert registry.role("shadow") == 2
    assert registry.role("live") == 1
    assert registry.role("candidate") is None  # candidate → shadow
    tags = version_tags(registry, 2)
    assert tags["verdict"] == "passed"
    assert tags["promoted_to"] == "shadow"
    assert tags["failed_checks"] == ""
    assert tags["warnings"] == "score_psi"
    assert tags["report"] == "reports/gate-x"
    assert tags["against"] == "fraud-acme v1 (live)"
    assert version_tags(registry, 1) == {}


def test_failed_gate_changes_no_role_and_says_why(registry: ModelRegistry) -> None:
    decision = gate_and_record(registry, candidate_version=2, model_name="fraud-acme",
                               report=make_report(passed=False))
    assert (decision.passed, decision.role, decision.failures) == (
        False, None, ("average_precision",))
    assert (registry.role("live"), registry.role("candidate"), registry.role("shadow")) == (
        1, 2, None)
    tags = version_tags(registry, 2)
    assert tags["verdict"] == "failed"
    assert tags["failed_checks"] == "average_precision"
    assert tags["reasons"].startswith("average_precision: candidate AP 0.412")
    assert tags["promoted_to"] == ""


def test_a_later_pass_replaces_the_failure_and_none_promotes_nothing(
        registry: ModelRegistry) -> None:
    gate_and_record(registry, candidate_version=2, model_name="fraud-acme",
                    report=make_report(passed=False))
    decision = gate_and_record(registry, candidate_version=2, model_name="fraud-acme",
                               report=make_report(passed=True), promote_to=None)
    assert (decision.passed, decision.role) == (True, None)
    assert registry.role("candidate") == 2
    assert registry.role("shadow") is None
    tags = version_tags(registry, 2)
    assert (tags["verdict"], tags["failed_checks"], tags["reasons"]) == ("passed", "", "")


def test_wiring_refuses_unknown_roles_and_versions(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="'promote_to' parameter of gate_and_record"):
        gate_and_record(registry, candidate_version=2, model_name="fraud-acme",
                        report=make_report(), promote_to="champion")
    with pytest.raises(RegistryError, match="has no version 9"):
        gate_and_record(registry, candidate_version=9, model_name="fraud-acme",
                        report=make_report())
    assert version_tags(registry, 2) == {}
