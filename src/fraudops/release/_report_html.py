"""The gate report as one self-contained HTML page: verdict, checks, charts and score diffs.

The page loads nothing: CSS, SVG charts and a few lines of script (sorting and filtering tables)
are inline, and a Content-Security-Policy forbids every request, so the report can be attached to
a CI run or mailed and opened offline. It has the data profile's look (the same style sheet).
Every string that comes from the data (event ids, tenants, check details) is escaped.

Charts are drawn from a check's ``figures`` when they have a recognisable shape:

- a list of mappings that share a text key (``week``, ``start``, ...) and numeric keys, e.g.
  ``{"weeks": [{"week": "2024-05-06", "candidate_ap": 0.41, "live_ap": 0.38}, ...]}``, or
  parallel lists next to a list of labels (``{"weeks": [...], "candidate_ap": [...]}``) → one
  line per numeric series;
- ``<name>_ci`` pairs ``[low, high]``, with the estimate under ``<name>`` when present →
  interval bars.

Other figures are shown as numbers, or as JSON in a collapsed block.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from fraudops.events._profile_assets import CSS as _PROFILE_CSS
from fraudops.events._profile_assets import SCRIPT as _SORT_SCRIPT
from fraudops.events._profile_svg import esc, fmt_int, fmt_num

from ._report_types import CheckResult, GateReport

__all__ = ["MAX_HTML_ROWS", "SCORE_DIFF_CSV", "render_gate_html"]

#: Score-diff rows written into the page; the CSV beside it holds all of them.
MAX_HTML_ROWS = 2_000
#: The file name of the full score-diff table, written next to the page.
SCORE_DIFF_CSV = "score_diffs.csv"
#: Lines drawn in one chart; more would be unreadable.
_MAX_SERIES = 4
_LABEL_KEYS = ("week", "start", "day", "date", "label", "name", "period")
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';"
        " img-src data:; form-action 'none'; base-uri 'none'")
_ACTIONS = ("ALLOW", "REVIEW", "PREVENT")

_CSS = _PROFILE_CSS + """
:root{--ok:#1e7a3c;--okbg:#e3f4e8;--bad:#b3261e;--badbg:#fbe4e2}
.wrap{padding:0 32px;max-width:1240px}
article .stats{grid-template-columns:repeat(auto-fill,minmax(200px,1fr))}
tr.fraudrow td:first-child{box-shadow:inset 3px 0 0 var(--fr)}
.verdict{margin:14px 0 6px;padding:14px 18px;border-radius:8px;border:1px solid var(--line)}
.verdict.pass{background:var(--okbg);color:var(--ok);border-color:var(--ok)}
.verdict.fail{background:var(--badbg);color:var(--bad);border-color:var(--bad)}
.verdict .big{font-size:26px;font-weight:750;letter-spacing:.04em;margin-right:12px}
.verdict ul{margin:6px 0 0;padding-left:20px;color:var(--fg)}
.ok{color:var(--ok);font-weight:700}.bad{color:var(--bad);font-weight:700}
.warnmark{color:var(--warn);font-weight:700}
td.detail{max-width:520px}tr.failed td{background:var(--badbg)}
tr.warned td{background:var(--warnbg)}
.act{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;font-weight:600;
background:var(--badge);color:var(--muted)}
.act.REVIEW{background:var(--warnbg);color:var(--warn)}
.act.PREVENT{background:var(--badbg);color:var(--bad)}
.tools{display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center;margin:8px 0}
.tools input[type=search]{font:inherit;padding:4px 8px;min-width:280px;border:1px solid var(--line);
border-radius:6px;background:var(--card);color:var(--fg)}
.chart .cand{fill:none;stroke:var(--fr);stroke-width:2}
.chart .live{fill:none;stroke:var(--lab);stroke-width:2}
.chart .s2{fill:none;stroke:var(--warn);stroke-width:2}.chart .s3{fill:none;stroke:var(--ok);stroke-width:2}
.chart .pt{stroke:none}.chart .cand.pt{fill:var(--fr)}.chart .live.pt{fill:var(--lab)}
.chart .s2.pt{fill:var(--warn)}.chart .s3.pt{fill:var(--ok)}
.chart .ci{stroke-width:6;stroke-linecap:round;opacity:.55}
.legend{display:flex;gap:14px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
pre{font-size:12px;overflow-x:auto;background:var(--bg);padding:8px;border-radius:6px}
@media (prefers-color-scheme:dark){:root{--ok:#7bd88f;--okbg:#16301f;--bad:#ff8a80;--badbg:#3a1b19}}
"""
_LEGEND_COLOURS = ("var(--fr)", "var(--lab)", "var(--warn)", "var(--ok)")

_FILTER_SCRIPT = """
(function () {
  var box = document.getElementById("diff-filter"), only = document.getElementById("diff-changed");
  var table = document.getElementById("diffs"), count = document.getElementById("diff-count");
  if (!box || !table) { return; }
  function apply() {
    var q = box.value.trim().toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var hit = (!q || row.textContent.toLowerCase().indexOf(q) >= 0) &&
                (!only.checked || row.dataset.changed === "1");
      row.style.display = hit ? "" : "none";
      if (hit) { shown++; }
    }
    count.textContent = shown.toLocaleString();
  }
  box.addEventListener("input", apply);
  only.addEventListener("change", apply);
})();
"""


def render_gate_html(report: GateReport) -> str:
    """Render a :class:`GateReport` as a self-contained HTML page (no network, no external file).

    The score-diff table shows the first :data:`MAX_HTML_ROWS` rows (the largest disagreements:
    the table arrives sorted); ``score_diffs.csv`` next to the page holds every row.
    """
    verdict = "PASS" if report.passed else "FAIL"
    body = [_header(report), _verdict(report), _nav(), "<main>", _checks(report),
            _charts(report.checks), _diffs(report.score_diffs), _notes(), "</main>",
            "<footer>fraudops release gate. The same verdict and figures are in gate.json, every"
            f" score difference in {SCORE_DIFF_CSV}, next to this file.</footer>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Gate {verdict} · {esc(report.candidate)}</title><style>{_CSS}</style>"
            "</head><body>" + "\n".join(body)
            + f"<script>{_SORT_SCRIPT}{_FILTER_SCRIPT}</script></body></html>\n")


# -- header and verdict ----------------------------------------------------------------------
def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div>'
            f'<div class="muted">{sub}</div></div>')


def _header(report: GateReport) -> str:
    blocking = [c for c in report.checks if c.blocking]
    passed = sum(c.passed for c in blocking)
    start, end = report.window
    cards = [
        _card("candidate", esc(report.candidate)),
        _card("compared with", esc(report.baseline)),
        _card("tenant", esc(report.tenant or "all tenants")),
        _card("window", esc(_day(start)), f"to {esc(_day(end))}"),
        _card("labels as of", esc(_day(report.labels_as_of)), "younger labels not trusted"),
        _card("checks passed", f"{passed} / {len(blocking)}",
              f"{len(report.checks) - len(blocking)} warning-only"),
    ]
    return (f"<header><h1>Release gate <span class=\"muted\">· {esc(report.candidate)}</span>"
            f'</h1><p class="sub">against {esc(report.baseline)} · generated'
            f" {esc(report.created_at)}</p><div class=\"cards\">{''.join(cards)}</div></header>")


def _day(value: str) -> str:
    return value[:10] if len(value) >= 10 else value


def _verdict(report: GateReport) -> str:
    warnings = [c for c in report.checks if not c.blocking and not c.passed]
    if report.passed:
        head = ('<div class="verdict pass" id="verdict"><span class="big">✓ PASS</span>'
                f"every blocking check passed ({sum(c.blocking for c in report.checks)}).")
        items = ""
    else:
        failures = report.failures
        head = ('<div class="verdict fail" id="verdict"><span class="big">✗ FAIL</span>'
                f"{len(failures)} blocking check{'s' if len(failures) != 1 else ''} failed:")
        items = "".join(f"<li><b>{esc(c.title)}</b> <code>{esc(c.name)}</code>: {esc(c.detail)}"
                        "</li>" for c in failures)
    items += "".join(f'<li><span class="warnmark">⚠ warning</span> <b>{esc(c.title)}</b>'
                     f" <code>{esc(c.name)}</code>: {esc(c.detail)}</li>" for c in warnings)
    return f"<div class=\"wrap\">{head}{f'<ul>{items}</ul>' if items else ''}</div></div>"


def _nav() -> str:
    links = [("checks", "Checks"), ("charts", "Charts"), ("diffs", "Score differences"),
             ("notes", "How to read")]
    return "<nav>" + "".join(f'<a href="#{a}-section">{t}</a>' for a, t in links) + "</nav>"


# -- checks ----------------------------------------------------------------------------------
def _mark(check: CheckResult) -> tuple[str, str, str]:
    """(symbol html, sort key, row class) of a check's status."""
    if check.passed:
        return '<span class="ok" title="passed">✓</span>', "2", ""
    if check.blocking:
        return '<span class="bad" title="failed">✗</span>', "0", "failed"
    return '<span class="warnmark" title="failed, warning only">⚠</span>', "1", "warned"


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt_num(float(value))


def _checks(report: GateReport) -> str:
    rows = []
    for check in report.checks:
        mark, key, cls = _mark(check)
        kind = "blocking" if check.blocking else '<span class="flag">warning only</span>'
        rows.append(
            f'<tr class="{cls}" data-check="{esc(check.name)}"><td data-v="{key}">{mark}</td>'
            f"<td>{esc(check.title)}<br><code class=\"muted\">{esc(check.name)}</code></td>"
            f'<td class="n" data-v="{_sortable(check.value)}">{_number(check.value)}</td>'
            f'<td class="n" data-v="{_sortable(check.threshold)}">{_number(check.threshold)}</td>'
            f'<td class="detail">{esc(check.detail)}</td><td>{kind}</td></tr>')
    return ('<section id="checks-section"><h2>Checks</h2><table class="sortable" id="checks">'
            '<thead><tr><th></th><th>check</th><th class="n">value</th>'
            '<th class="n">threshold</th><th>detail</th><th>kind</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _sortable(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


# -- charts from figures ---------------------------------------------------------------------
def _charts(checks: Sequence[CheckResult]) -> str:
    parts = []
    for check in checks:
        drawn, rest = _figure_charts(check.figures)
        if not drawn and not rest:
            continue
        mark, _, _ = _mark(check)
        extra = ""
        if rest:
            scalars = {k: v for k, v in rest.items() if _is_scalar(v)}
            other = {k: v for k, v in rest.items() if k not in scalars}
            if scalars:
                extra += ('<dl class="stats">' + "".join(
                    f"<div><dt>{esc(k)}</dt><dd>{_scalar(v)}</dd></div>"
                    for k, v in scalars.items()) + "</dl>")
            if other:
                text = json.dumps(other, indent=1, default=str, sort_keys=True)
                extra += f"<details><summary>more figures</summary><pre>{esc(text)}</pre></details>"
        parts.append(f'<article class="col"><h3>{mark} {esc(check.title)} '
                     f'<code class="muted">{esc(check.name)}</code></h3>{"".join(drawn)}{extra}'
                     "</article>")
    if not parts:
        return ""
    return '<section id="charts-section"><h2>Charts and figures</h2>' + "".join(parts) + "</section>"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


def _scalar(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, int | float):
        return _number(float(value))
    return esc(value)


def _figure_charts(figures: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Charts for the figures that have a chartable shape, and the figures left over."""
    rest = dict(figures)
    drawn: list[str] = []
    for key, value in figures.items():
        series = _records_series(value)
        if series is not None:
            drawn.append(_line_chart(key, *series))
            rest.pop(key)
    labels_key = next((k for k in rest if k in {"weeks", "week", "days", "labels", "periods"}
                       and isinstance(rest[k], list | tuple) and len(rest[k]) >= 2
                       and all(isinstance(v, str | date) for v in rest[k])), None)
    if labels_key is not None:
        labels = [str(v) for v in rest[labels_key]]
        lines = {k: [float(x) for x in v] for k, v in rest.items()
                 if k != labels_key and isinstance(v, list | tuple) and len(v) == len(labels)
                 and all(_is_number(x) for x in v)}
        if lines:
            drawn.append(_line_chart(labels_key, labels, lines))
            for k in (labels_key, *lines):
                rest.pop(k)
    intervals, points, used = _intervals(rest)
    if intervals:
        drawn.append(_interval_chart(intervals, points))
        for key in used:
            rest.pop(key, None)
    return drawn, rest


def _intervals(figures: Mapping[str, Any]) -> tuple[
        dict[str, tuple[float, float]], dict[str, float], set[str]]:
    """Confidence intervals among the figures: ``x_ci: [lo, hi]``, ``x_low``/``x_high`` or
    ``x: {"low": .., "high": .., "estimate": ..}``; their estimates; the keys they used."""
    intervals: dict[str, tuple[float, float]] = {}
    points: dict[str, float] = {}
    used: set[str] = set()
    for key, value in figures.items():
        if key.endswith("_ci") and isinstance(value, list | tuple) and len(value) == 2 \
                and all(_is_number(v) for v in value):
            name = key[:-3]
            intervals[name] = (float(value[0]), float(value[1]))
            used.add(key)
            if _is_number(figures.get(name)):
                points[name] = float(figures[name])
                used.add(name)
        elif key.endswith("_low") and _is_number(value) \
                and _is_number(figures.get(f"{key[:-4]}_high")):
            name = key[:-4]
            intervals[name] = (float(value), float(figures[f"{name}_high"]))
            used.update((key, f"{name}_high"))
            if _is_number(figures.get(name)):
                points[name] = float(figures[name])
                used.add(name)
        elif isinstance(value, Mapping) and _is_number(value.get("low")) \
                and _is_number(value.get("high")):
            name = "candidate − live" if key == "bootstrap" else key
            intervals[name] = (float(value["low"]), float(value["high"]))
            if _is_number(value.get("estimate")):
                points[name] = float(value["estimate"])
            used.add(key)
    return intervals, points, used


def _records_series(value: object) -> tuple[list[str], dict[str, list[float]]] | None:
    """(labels, {series: values}) of a list of mappings with a text key, else None."""
    if not isinstance(value, list | tuple) or len(value) < 2 or \
            not all(isinstance(v, Mapping) for v in value):
        return None
    first = value[0]
    label = next((k for k in _LABEL_KEYS if k in first), None) or next(
        (k for k, v in first.items() if isinstance(v, str | date)), None)
    if label is None:
        return None
    names = [k for k in first if k != label and any(_is_number(row.get(k)) for row in value)]
    measures = [k for k in names if not _is_count(k)]
    names = measures or names  # counts (n_events) would flatten the rates they sit next to
    lines = {k: [float(row[k]) if _is_number(row.get(k)) else math.nan for row in value]
             for k in names}
    if not lines:
        return None
    return [str(row.get(label, "")) for row in value], lines


def _is_count(name: str) -> bool:
    low = name.lower()
    return low.startswith("n_") or low.endswith(("_count", "count", "_events", "_frauds"))


def _series_class(name: str, index: int) -> str:
    low = name.lower()
    if low.startswith("cand") or "candidate" in low:
        return "cand"
    if low.startswith("live") or "live" in low or "baseline" in low:
        return "live"
    return f"s{2 + index % 2}"


def _line_chart(title: str, labels: Sequence[str], lines: Mapping[str, Sequence[float]], *,
                width: int = 760, height: int = 240) -> str:
    names = list(lines)[:_MAX_SERIES]
    values = [x for n in names for x in lines[n] if math.isfinite(x)]
    low, high = min(values), max(values)
    if low >= 0 and high <= 1:
        low, high = 0.0, max(high * 1.1, 1e-9) if high < 0.5 else 1.0
    elif high == low:
        low, high = low - 1, high + 1
    left, right, top, bottom = 52, 48, 18, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(title)}">']
    for k in range(5):
        v = low + (high - low) * k / 4
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" '
                   f'y2="{y(v):.1f}"/><text class="tick end" x="{left - 6}" y="{y(v) + 4:.1f}">'
                   f"{esc(f'{v:.3g}')}</text>")
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        out.append(f'<text class="tick mid" x="{x(i):.1f}" y="{height - 14}">'
                   f"{esc(_day(labels[i]))}</text>")
    legend = []
    for index, name in enumerate(names):
        cls = _series_class(name, index)
        points = [(x(i), y(v), v, labels[i]) for i, v in enumerate(lines[name]) if math.isfinite(v)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}"
                        for j, (px, py, _, _) in enumerate(points))
        out.append(f'<path class="{cls}" d="{path}"/>')
        out.extend(f'<g><circle class="{cls} pt" cx="{px:.1f}" cy="{py:.1f}" r="3.5"><title>'
                   f"{esc(name)} {esc(label)}: {esc(f'{v:.4g}')}</title></circle></g>"
                   for px, py, v, label in points)
        colour = {"cand": "var(--fr)", "live": "var(--lab)"}.get(cls, _LEGEND_COLOURS[2 + index % 2])
        legend.append(f'<span><i style="background:{colour}"></i>{esc(name)}</span>')
    out.append("</svg>")
    return (f'<h4>{esc(title)}</h4><div class="legend">{"".join(legend)}</div>' + "".join(out))


def _interval_chart(intervals: Mapping[str, tuple[float, float]], points: Mapping[str, float], *,
                    width: int = 760) -> str:
    names = list(intervals)
    row_h, left, right, top = 30, 170, 20, 10
    height = top + row_h * len(names) + 30
    values = [v for lo_hi in intervals.values() for v in lo_hi] + list(points.values())
    low, high = min(*values, 0.0), max(*values, 0.0)  # zero: "no difference" is on the axis
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * plot_w

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="confidence intervals">']
    bottom = top + row_h * len(names)
    for k in range(5):
        v = low + (high - low) * k / 4
        out.append(f'<line class="grid" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top}" y2="{bottom}"/>'
                   f'<text class="tick mid" x="{x(v):.1f}" y="{bottom + 16}">{esc(f"{v:.3g}")}'
                   "</text>")
    if low < 0 < high:
        out.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top}" y2="{bottom}" '
                   'stroke="currentColor" stroke-dasharray="3 3" opacity=".6"/>')
    for i, name in enumerate(names):
        lo, hi = intervals[name]
        cy = top + row_h * i + row_h / 2
        cls = _series_class(name, i)
        point = points.get(name)
        tip = f"{name}: [{lo:.4g}, {hi:.4g}]" + ("" if point is None else f", estimate {point:.4g}")
        out.append(f'<g><text class="tick end" x="{left - 8}" y="{cy + 4:.1f}">{esc(name)}</text>'
                   f'<line class="{cls} ci" x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{cy:.1f}" '
                   f'y2="{cy:.1f}"/>'
                   + ("" if point is None else
                      f'<circle class="{cls} pt" cx="{x(point):.1f}" cy="{cy:.1f}" r="5"/>')
                   + f"<title>{esc(tip)}</title></g>")
    out.append("</svg>")
    return "<h4>Bootstrap confidence intervals</h4>" + "".join(out)


# -- score differences -----------------------------------------------------------------------
_DIFF_COLUMNS = (("event_time", "event time", False), ("tenant", "tenant", False),
                 ("event_id", "event", False), ("card_id", "card", False),
                 ("amount", "amount", True), ("is_fraud", "fraud", False),
                 ("candidate_score", "candidate", True), ("live_score", "live", True),
                 ("abs_diff", "|diff|", True), ("candidate_action", "candidate action", False),
                 ("live_action", "live action", False))


def _diffs(table: pa.Table) -> str:
    head = '<section id="diffs-section"><h2>Score differences, largest first</h2>'
    total = table.num_rows
    if total == 0:
        return head + '<p class="muted">No event in the compared window.</p></section>'
    summary = _diff_summary(table)
    shown = table.slice(0, MAX_HTML_ROWS)
    columns = [c for c in _DIFF_COLUMNS if c[0] in table.column_names]
    data = {name: shown.column(name).to_pylist() for name, _, _ in columns}
    rows = []
    for i in range(shown.num_rows):
        cells = "".join(_diff_cell(name, data[name][i], numeric) for name, _, numeric in columns)
        changed = ("candidate_action" in data and "live_action" in data
                   and data["candidate_action"][i] != data["live_action"][i])
        fraud = "is_fraud" in data and bool(data["is_fraud"][i])
        cls = ' class="fraudrow"' if fraud else ""
        rows.append(f'<tr data-changed="{int(changed)}"{cls}>{cells}</tr>')
    headers = "".join(
        "<th" + (' class="n"' if numeric else "") + (' data-dir="desc"' if name == "abs_diff"
                                                     else "") + f">{esc(label)}</th>"
        for name, label, numeric in columns)
    capped = (f"The {fmt_int(MAX_HTML_ROWS)} largest of {fmt_int(total)} rows are shown;"
              if total > MAX_HTML_ROWS else f"All {fmt_int(total)} rows are shown;")
    return (head + summary
            + f'<p class="muted">{capped} download the full table as CSV:'
            f' <code>{SCORE_DIFF_CSV}</code> in the same folder as this page. Scores are 0–100.'
            " Click a header to sort; type to filter (any cell, e.g. a card id or PREVENT).</p>"
            '<div class="tools"><input type="search" id="diff-filter" placeholder="filter rows…"'
            ' aria-label="filter score differences"><label><input type="checkbox"'
            ' id="diff-changed"> only rows whose action changes</label>'
            f'<span class="muted"><span id="diff-count">{fmt_int(shown.num_rows)}</span> rows'
            "</span></div>"
            f'<div class="scroll"><table class="sortable" id="diffs"><thead><tr>{headers}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div></section>")


def _diff_cell(name: str, value: object, numeric: bool) -> str:
    if value is None:
        return '<td class="n" data-v="">–</td>' if numeric else "<td>–</td>"
    if name == "event_time":
        text = (f"{value:%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else str(value))
        return f"<td data-v=\"{esc(value.isoformat() if isinstance(value, datetime) else value)}\">" \
               f"{esc(text)}</td>"
    if name == "is_fraud":
        mark = '<span class="bad">fraud</span>' if value else ""
        return f'<td data-v="{int(bool(value))}">{mark}</td>'
    if name.endswith("_action"):
        return f'<td><span class="act {esc(value)}">{esc(value)}</span></td>'
    if numeric and isinstance(value, int | float) and not isinstance(value, bool):
        shown = fmt_num(float(value)) if name == "amount" else f"{float(value):.4g}"
        return f'<td class="n" data-v="{float(value)!r}">{esc(shown)}</td>'
    return f"<td>{esc(value)}</td>"


def _diff_summary(table: pa.Table) -> str:
    """Counts over the whole table: how many actions change, and the live → candidate matrix."""
    names = table.column_names
    items: list[tuple[str, str]] = [("events compared", fmt_int(table.num_rows))]
    matrix = ""
    if "candidate_action" in names and "live_action" in names:
        cand, live = table.column("candidate_action"), table.column("live_action")
        differs = pc.fill_null(pc.not_equal(cand, live), pc.xor(pc.is_null(cand), pc.is_null(live)))
        changed = pc.sum(pc.cast(differs, pa.int64())).as_py() or 0
        items.append(("action changes", f"{fmt_int(changed)} "
                                        f"({changed / table.num_rows * 100:.2f}%)"))
        counts = table.group_by(["live_action", "candidate_action"]).aggregate(
            [([], "count_all")]).to_pylist()
        found = {(_label(r["live_action"]), _label(r["candidate_action"])): int(r["count_all"])
                 for r in counts}
        live_values = _ordered({k[0] for k in found})
        cand_values = _ordered({k[1] for k in found})
        head = "".join(f'<th class="n">candidate {esc(a)}</th>' for a in cand_values)
        body = "".join(
            f"<tr><td>live {esc(lv)}</td>" + "".join(
                f'<td class="n">{_bold(fmt_int(found.get((lv, cv), 0)), lv != cv)}</td>'
                for cv in cand_values) + "</tr>"
            for lv in live_values)
        matrix = ("<h3>Actions: live (rows) → candidate (columns)</h3><table><thead><tr><th></th>"
                  f"{head}</tr></thead><tbody>{body}</tbody></table>")
    if "abs_diff" in names:
        diff = table.column("abs_diff")
        mean = pc.mean(diff).as_py()
        top = pc.max(diff).as_py()
        items.append(("mean |diff|", _number(mean)))
        items.append(("largest |diff|", _number(top)))
    if "is_fraud" in names:
        items.append(("frauds", fmt_int(int(pc.sum(pc.cast(table.column("is_fraud"),
                                                            pa.int64())).as_py() or 0))))
    stats = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    return f'<div class="box"><dl class="stats">{stats}</dl>{matrix}</div>'


def _label(value: object) -> str:
    return "–" if value is None else str(value)


def _ordered(values: set[str]) -> list[str]:
    return [a for a in _ACTIONS if a in values] + sorted(values - set(_ACTIONS))


def _bold(text: str, bold: bool) -> str:
    return f"<b>{text}</b>" if bold else text


def _notes() -> str:
    return ('<section id="notes-section"><h2>How to read this report</h2><div class="box"><ul>'
            "<li>The verdict is FAIL when any <b>blocking</b> check fails; a failed check marked"
            " <span class=\"flag\">warning only</span> is shown but does not block.</li>"
            "<li><b>value</b> is the figure each check compares with its <b>threshold</b>; the"
            " detail says which way the comparison goes and why the check passed or failed.</li>"
            "<li>Both models are scored on the same label-matured, out-of-time window; a label"
            " younger than the label delay is not trusted, so those events are left out.</li>"
            "<li>Score differences compare the calibrated scores (0–100) event by event: the"
            " largest disagreements are where to look first, especially frauds the live model"
            " stopped and the candidate would allow.</li></ul></div></section>")
