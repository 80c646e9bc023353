"""The profile as one self-contained HTML page, and :func:`write_profile` for both files.

The page loads nothing: CSS, SVG charts and a few lines of script (sorting tables) are inline,
and a Content-Security-Policy forbids any request, so the report can be mailed or archived and
opened offline. Every string that comes from the data is escaped.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime
from pathlib import Path

from ._profile_assets import CSS, SCRIPT
from ._profile_model import (
    CategoryCount,
    CategorySummary,
    ColumnProfile,
    Correlations,
    EntitySummary,
    NumericSummary,
    Profile,
    Quantiles,
    TimeSummary,
)
from ._profile_stats import iv_strength
from ._profile_svg import (
    daily_chart,
    esc,
    fmt_int,
    fmt_num,
    fmt_pct,
    heatmap,
    histogram_chart,
)

#: Tenants drawn with their own daily chart; more would make the page long, not clearer.
MAX_TENANT_CHARTS = 12
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline';"
        " img-src data:")


def render_profile_html(profile: Profile) -> str:
    """Render a :class:`Profile` as a self-contained HTML page (no network, no external file)."""
    scope = "all tenants" if profile.tenant is None else f"tenant {profile.tenant}"
    body = [_header(profile, scope), _nav(), "<main>", _notes(profile), _tenants(profile),
            _daily(profile, scope), _labels(profile), _overview(profile),
            _correlations(profile.correlations),
            '<section id="details"><h2>Columns in detail</h2>',
            *(_column(c, rank, profile.totals.fraud_rate)
              for rank, c in enumerate(profile.ranked_columns(), start=1)),
            "</section></main>",
            f'<footer>fraudops data profile, format {profile.format_version}. The same numbers'
            ' are in profile.json next to this file.</footer>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Event profile · {esc(scope)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + f"<script>{SCRIPT}</script></body></html>\n")


def write_profile(profile: Profile, out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``profile.json`` and ``profile.html`` into ``out_dir`` (created if missing).

    Each file is written under a temporary name and renamed into place, so a reader never sees
    half a report. Returns the two paths, JSON first.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "profile.json", folder / "profile.html"
    for path, text in zip(paths, (profile.to_json(), render_profile_html(profile)), strict=True):
        temporary = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    return paths


def _when(value: datetime | None) -> str:
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def _card(key: str, value: str, sub: str = "") -> str:
    return (f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div>'
            f'<div class="muted">{sub}</div></div>')


def _stats(items: list[tuple[str, str]]) -> str:
    cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{v}</dd></div>" for k, v in items)
    return f'<dl class="stats">{cells}</dl>'


def _header(profile: Profile, scope: str) -> str:
    t = profile.totals
    cards = [
        _card("transactions", fmt_int(t.transactions), esc(scope)),
        _card("frauds", fmt_int(t.frauds), f"{fmt_pct(t.fraud_rate, 3)} of transactions"),
        _card("labelled", fmt_pct(t.labelled / t.transactions, 1),
              f"{fmt_int(t.unlabelled)} unlabelled count as not fraud"),
        _card("tenants", fmt_int(len(profile.tenants)), f"{t.tenants} in this profile"),
        _card("period", f"{t.first_event:%Y-%m-%d}", f"to {t.last_event:%Y-%m-%d},"
              f" {t.days_with_events} days with events"),
        _card("columns", fmt_int(t.columns), f"computed in {profile.elapsed_seconds:.1f} s"),
    ]
    return (f"<header><h1>Event profile <span class=\"muted\">· {esc(scope)}</span></h1>"
            f'<p class="sub">store <code>{esc(profile.store)}</code> · generated'
            f" {_when(profile.generated_at)}</p>"
            f'<div class="cards">{"".join(cards)}</div></header>')


def _nav() -> str:
    links = [("notes", "How to read"), ("tenants", "Tenants"), ("daily", "Per day"),
             ("labels", "Labels"), ("columns", "Columns"), ("correlations", "Correlations"),
             ("details", "Column details")]
    return "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


def _notes(profile: Profile) -> str:
    items = "".join(f"<li>{esc(note)}</li>" for note in profile.notes)
    return (f'<section id="notes"><h2>How to read this report</h2><div class="box"><ul>{items}'
            "<li>Univariate power: <b>IV</b> (information value, numeric columns over deciles)"
            " reads &lt; 0.02 none, 0.02–0.1 weak, 0.1–0.3 medium, 0.3–0.5 strong, &gt; 0.5"
            " suspicious (often a leak of the label). <b>AUC</b> is max(A, 1 − A) where A is the"
            " chance that a fraud has a higher value than a non-fraud; 0.5 means no signal.</li>"
            "<li>Click a table header to sort. Hover a bar for its numbers.</li></ul></div>"
            "</section>")


def _tenants(profile: Profile) -> str:
    total = sum(t.transactions for t in profile.tenants)
    rows = "".join(
        f"<tr><td>{esc(t.tenant)}{' <b>(profiled)</b>' if t.tenant == profile.tenant else ''}"
        f'</td><td class="n" data-v="{t.transactions}">{fmt_int(t.transactions)}</td>'
        f'<td class="n">{fmt_pct(t.transactions / total, 1)}</td>'
        f'<td class="n" data-v="{t.frauds}">{fmt_int(t.frauds)}</td>'
        f'<td class="n" data-v="{t.fraud_rate}">{fmt_pct(t.fraud_rate, 3)}</td>'
        f'<td class="n">{fmt_pct(t.labelled / t.transactions, 1)}</td>'
        f"<td>{_when(t.first_event)}</td><td>{_when(t.last_event)}</td></tr>"
        for t in profile.tenants)
    return ('<section id="tenants"><h2>Tenants</h2><p class="muted">Every tenant of the store,'
            ' whatever the profiled scope.</p><table class="sortable"><thead><tr><th>tenant</th>'
            '<th class="n">transactions</th><th class="n">share</th><th class="n">frauds</th>'
            '<th class="n">fraud rate</th><th class="n">labelled</th><th>first event</th>'
            f"<th>last event</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _daily(profile: Profile, scope: str) -> str:
    parts = ['<section id="daily"><h2>Events and frauds per day (UTC)</h2><div class="box">',
             daily_chart(profile.daily, label=scope), "</div>"]
    if len(profile.daily_by_tenant) > 1:
        ranked = sorted(profile.daily_by_tenant, key=lambda t: -sum(d.events for d in t.days))
        for tenant in ranked[:MAX_TENANT_CHARTS]:
            parts.append(f"<details><summary>tenant {esc(tenant.tenant)}</summary>"
                         f'<div class="box">{daily_chart(tenant.days, label=tenant.tenant)}'
                         "</div></details>")
        if len(ranked) > MAX_TENANT_CHARTS:
            parts.append(f'<p class="muted">Charts of the {MAX_TENANT_CHARTS} largest tenants;'
                         " profile one tenant with --tenant to see any other.</p>")
    return "".join(parts) + "</section>"


def _quantiles(q: Quantiles, unit: str = "") -> list[tuple[str, str]]:
    """Quantile cells; with a unit (days) one decimal is enough."""
    def cell(value: float) -> str:
        return f"{value:,.1f}{unit}" if unit else fmt_num(value)
    return [(f"p{name[1:].lstrip('0') or '0'}", cell(getattr(q, name)))
            for name in ("p01", "p05", "p25", "p50", "p75", "p95", "p99")]


def _labels(profile: Profile) -> str:
    lab, t = profile.labels, profile.totals
    items = [("label events", fmt_int(lab.label_events)),
             ("labelled transactions",
              f"{fmt_int(t.labelled)} ({fmt_pct(t.labelled / t.transactions, 1)})"),
             ("fraud / genuine", f"{fmt_int(t.frauds)} / {fmt_int(t.labelled_genuine)}"),
             ("relabelled events", fmt_int(lab.relabelled)),
             ("labels without a transaction", fmt_int(lab.orphans)),
             ("labels dated before their event", fmt_int(lab.before_event))]
    delay = ""
    if lab.fraud_delay_days is not None:
        delay = ("<h3>Days from transaction to fraud label</h3>"
                 + _stats(_quantiles(lab.fraud_delay_days, unit=" d")))
    groups = "".join(
        f"<div><h3>By label {title}</h3>{_group_table(title, rows)}</div>"
        for title, rows in (("source", lab.sources), ("fraud type", lab.fraud_types)) if rows)
    return (f'<section id="labels"><h2>Labels</h2><div class="box">{_stats(items)}{delay}'
            f'<div class="pair">{groups}</div></div></section>')


def _group_table(title: str, rows: tuple[CategoryCount, ...]) -> str:
    body = "".join(
        f"<tr><td>{'<em>none</em>' if g.value is None else esc(g.value)}</td>"
        f'<td class="n">{fmt_int(g.count)}</td><td class="n">{fmt_int(g.frauds)}</td></tr>'
        for g in rows)
    return (f"<table><thead><tr><th>{esc(title)}</th><th class=\"n\">labelled</th>"
            f'<th class="n">fraud</th></tr></thead><tbody>{body}</tbody></table>')


def _overview(profile: Profile) -> str:
    rows = []
    for rank, c in enumerate(profile.ranked_columns(), start=1):
        flags = "".join(f'<span class="flag">{esc(f)}</span>' for f in c.flags)
        rows.append(
            f'<tr><td class="n" data-v="{rank}">{rank}</td><td data-v="{esc(c.name)}">'
            f'<a href="#{_anchor(c.name)}">{esc(c.name)}</a></td><td>{esc(c.role)}</td>'
            f"<td>{esc(c.kind)}</td><td>{esc(c.dtype)}</td>"
            f'<td class="n" data-v="{c.missing_rate}">{fmt_pct(c.missing_rate, 1)}'
            f'<div class="bar mini" style="width:{c.missing_rate * 100:.1f}%"></div></td>'
            f'<td class="n" data-v="{c.distinct}">{fmt_int(c.distinct)}</td>'
            f'<td class="n" data-v="{_v(c.iv)}">{_f3(c.iv)}</td><td>{iv_strength(c.iv)}</td>'
            f'<td class="n" data-v="{_v(c.auc)}">{_f3(c.auc)}</td>'
            f"<td>{esc(c.auc_direction or '')}</td><td>{flags}</td></tr>")
    return ('<section id="columns"><h2>Columns by univariate power</h2><table class="sortable">'
            '<thead><tr><th class="n">#</th><th>column</th><th>role</th><th>kind</th>'
            '<th>type</th><th class="n">missing</th><th class="n">distinct</th>'
            '<th class="n">IV</th><th>strength</th><th class="n">AUC</th><th>riskier</th>'
            f"<th>flags</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _v(value: float | None) -> str:
    return "" if value is None else repr(value)


def _f3(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _anchor(name: str) -> str:
    return "col-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _correlations(corr: Correlations | None) -> str:
    head = '<section id="correlations"><h2>Correlations (Spearman)</h2>'
    if corr is None:
        return head + '<p class="muted">No numeric column with two values.</p></section>'
    names = [*corr.columns, "is_fraud"]
    matrix = [[*row, corr.with_fraud[i]] for i, row in enumerate(corr.matrix)]
    matrix.append([*corr.with_fraud, 1.0])
    how = (f"a seeded sample of {corr.rows:,} rows (seed {corr.seed})" if corr.sampled
           else f"all {corr.rows:,} rows")
    order = sorted(range(len(corr.columns)), key=lambda i: -abs(corr.with_fraud[i] or 0.0))
    rows = "".join(
        f"<tr><td>{esc(corr.columns[i])}</td><td class=\"n\">{_f3(corr.with_fraud[i])}</td>"
        f'<td class="barcell">{_signed_bar(corr.with_fraud[i])}</td></tr>' for i in order)
    return (head + f'<p class="muted">Rank correlation over rows where both columns are present,'
            f" on {how}. Booleans count as 0/1.</p>"
            f'<div class="box scroll">{heatmap(names, matrix)}</div>'
            "<h3>Correlation with is_fraud</h3><table><thead><tr><th>column</th>"
            f'<th class="n">ρ</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>')


def _signed_bar(value: float | None) -> str:
    if value is None:
        return ""
    width = min(abs(value), 1.0) * 50
    side = f"left:50%;width:{width:.1f}%" if value >= 0 else \
        f"left:{50 - width:.1f}%;width:{width:.1f}%"
    return (f'<div class="signed"><div class="bar {"fr" if value >= 0 else "neg"}" '
            f'style="{side}"></div></div>')


def _column(c: ColumnProfile, rank: int, overall: float) -> str:
    badges = "".join(f'<span class="badge">{esc(b)}</span>' for b in (c.kind, c.dtype, c.role))
    flags = "".join(f'<span class="flag">{esc(f)}</span>' for f in c.flags)
    items = [("present", fmt_int(c.count)), ("missing", f"{fmt_int(c.missing)} "
                                                      f"({fmt_pct(c.missing_rate, 1)})"),
             ("fraud rate when missing", fmt_pct(c.missing_fraud_rate)),
             ("distinct", fmt_int(c.distinct))]
    if c.iv is not None:
        items.append(("information value", f"{c.iv:.3f} ({iv_strength(c.iv)})"))
    if c.auc is not None:
        items.append(("AUC", f"{c.auc:.3f} ({esc(c.auc_direction)} values riskier)"))
    body = ""
    if c.numeric is not None:
        body = _numeric(c.numeric)
    elif c.categories is not None:
        body = _category_table(c.categories, overall)
    elif c.entity is not None:
        body = _entity(c.entity)
    elif c.time is not None:
        body = _time(c.time)
    return (f'<article class="col" id="{_anchor(c.name)}"><h3><span class="muted">#{rank}'
            f"</span> {esc(c.name)} {badges} {flags}</h3>{_stats(items)}{body}</article>")


def _numeric(n: NumericSummary) -> str:
    items = [("min", fmt_num(n.min)), ("mean", fmt_num(n.mean)), ("std", fmt_num(n.std)),
             *_quantiles(n.quantiles), ("max", fmt_num(n.max)), ("zeros", fmt_int(n.zeros)),
             ("NaN or infinite", fmt_int(n.non_finite))]
    note = {"log": "Bins of about equal width in ln(1 + x), edges rounded to two significant"
                   " digits: the column is heavy-tailed.",
            "integer": "One bin per value.", "linear": "Bins of equal width."}
    return (_stats(items) + histogram_chart(n.histogram)
            + f'<p class="muted">{note[n.histogram.scale]}</p>')


def _category_table(cats: CategorySummary, overall: float) -> str:
    groups: list[tuple[str, CategoryCount]] = [(esc(g.value), g) for g in cats.top]
    if cats.other is not None:
        groups.append((f"<em>other ({cats.other_categories:,} values)</em>", cats.other))
    if cats.missing is not None:
        groups.append(("<em>missing</em>", cats.missing))
    total = sum(g.count for _, g in groups)
    largest = max(g.count for _, g in groups) or 1
    top_rate = max([g.fraud_rate for _, g in groups] + [overall]) or 1.0
    rows = "".join(
        f"<tr><td>{label}</td><td class=\"n\">{fmt_int(g.count)}</td>"
        f'<td class="n">{fmt_pct(g.count / total, 1)}</td><td class="barcell"><div class="bar" '
        f'style="width:{g.count / largest * 100:.1f}%">'
        f'</div></td><td class="n">{fmt_int(g.frauds)}</td><td class="n">'
        f'{fmt_pct(g.fraud_rate, 3)}</td><td class="barcell"><div class="rbar"><div class="bar fr"'
        f' style="width:{g.fraud_rate / top_rate * 100:.1f}%"></div><span class="mark" '
        f'style="left:{overall / top_rate * 100:.1f}%"></span></div></td></tr>'
        for label, g in groups)
    return ('<table class="sortable"><thead><tr><th>value</th><th class="n">rows</th>'
            '<th class="n">share</th><th></th><th class="n">frauds</th><th class="n">fraud rate'
            '</th><th>fraud rate (mark: overall)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _entity(e: EntitySummary) -> str:
    items = [("entities (tenant, value)", fmt_int(e.entities)),
             ("with at least one fraud", f"{fmt_int(e.entities_with_fraud)} "
                                         f"({fmt_pct(e.share_with_fraud)})"),
             ("events per entity, mean", fmt_num(e.mean_events)),
             *_quantiles(e.events_per_entity), ("max", fmt_int(e.max_events))]
    rows = "".join(
        f"<tr><td>{esc(g.tenant)}</td><td>{esc(g.value)}</td><td class=\"n\">{fmt_int(g.count)}"
        f'</td><td class="n">{fmt_int(g.frauds)}</td><td class="n">{fmt_pct(g.fraud_rate)}</td>'
        "</tr>" for g in e.top_by_frauds)
    top = ("<h4>Entities with the most frauds</h4><table><thead><tr><th>tenant</th><th>value</th>"
           '<th class="n">events</th><th class="n">frauds</th><th class="n">fraud rate</th></tr>'
           f"</thead><tbody>{rows}</tbody></table>") if rows else ""
    return (_stats(items) + histogram_chart(e.histogram, rows="entities",
                                            rate="share with a fraud")
            + '<p class="muted">Entities by their number of events.</p>' + top)


def _time(t: TimeSummary) -> str:
    items = [("first", _when(t.first)), ("last", _when(t.last))]
    if t.first is not None and t.last is not None:
        items.append(("span", f"{(t.last - t.first).total_seconds() / 86400:,.1f} days"))
    chart = ""
    if t.hour_of_day is not None:
        chart = ("<h4>Events per hour of day (UTC)</h4>"
                 + histogram_chart(t.hour_of_day, rows="events"))
    return _stats(items) + chart
