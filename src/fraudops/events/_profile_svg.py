"""Inline SVG charts for the profile report, drawn by hand so the report needs no network.

Each function returns one ``<svg>`` element as text. Colours come from CSS classes that the page
defines (so a dark theme restyles them); every text from the data passes through :func:`esc`.
Hovering a bar shows its numbers (an SVG ``<title>``), with no script.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ._profile_model import DayCounts, Histogram

#: Bins with fewer rows get no point on the fraud-rate line.
MIN_RATE_ROWS = 20


def esc(value: object) -> str:
    """Escape any value for HTML text and attributes (data may hold ``<script>``)."""
    return html.escape(str(value), quote=True)


def fmt_int(value: int) -> str:
    """``1750000`` → ``'1,750,000'``."""
    return f"{value:,}"


def fmt_pct(rate: float | None, digits: int = 2) -> str:
    """A rate as a percentage; ``'–'`` when undefined."""
    return "–" if rate is None else f"{rate * 100:.{digits}f}%"


def fmt_num(value: float | None) -> str:
    """A measurement, short but exact enough: integers with separators, else 4 digits."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def fmt_axis(value: float) -> str:
    """A tick label: ``1.2k``, ``3M``, ``0.5``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _axis(x0: float, x1: float, y0: float, height: float, ticks: Sequence[float], *,
          right: bool = False, fmt: str = "n") -> list[str]:
    """Horizontal grid lines and labels of a value axis (left, or right for rates)."""
    out = []
    for t in ticks:
        y = y0 + height - t / ticks[-1] * height
        label = f"{t * 100:.3g}%" if fmt == "pct" else fmt_axis(t)
        if right:
            out.append(f'<text class="tick" x="{x1 + 6:.1f}" y="{y + 4:.1f}">{label}</text>')
        else:
            out.append(f'<line class="grid" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" '
                       f'y2="{y:.1f}"/><text class="tick end" x="{x0 - 6:.1f}" '
                       f'y="{y + 4:.1f}">{label}</text>')
    return out


def daily_chart(days: Sequence[DayCounts], *, width: int = 960, label: str = "all tenants"
                ) -> str:
    """Events per day (labelled part darker) above frauds per day with the fraud-rate line."""
    if not days:
        return ""
    left, right, pad, h1, gap, h2 = 64, 60, 12, 140, 26, 100
    height = pad + h1 + gap + h2 + 28
    plot = width - left - right
    step = plot / len(days)
    bar = max(step - (1 if step > 3 else 0), 0.5)
    events = _ticks(max(d.events for d in days))
    frauds = _ticks(max(max(d.frauds for d in days), 1))
    rates = _ticks(max((d.fraud_rate or 0.0 for d in days), default=0.0) or 0.01)
    y2 = pad + h1 + gap
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="events and frauds per day, {esc(label)}">',
           *_axis(left, left + plot, pad, h1, events),
           *_axis(left, left + plot, y2, h2, frauds),
           *_axis(left, left + plot, y2, h2, rates, right=True, fmt="pct"),
           f'<text class="panel" x="{left}" y="{pad - 2}">events per day (darker: labelled)'
           f'</text><text class="panel" x="{left}" y="{y2 - 8}">frauds per day, and the'
           ' fraud rate (line, right axis)</text>']
    points = []
    for i, d in enumerate(days):
        x = left + i * step
        he, hl = d.events / events[-1] * h1, d.labelled / events[-1] * h1
        hf = d.frauds / frauds[-1] * h2
        tip = (f"{d.day}: {d.events:,} events, {d.frauds:,} frauds ({fmt_pct(d.fraud_rate)}),"
               f" {d.labelled:,} labelled")
        out.append(f'<g><title>{esc(tip)}</title>'
                   f'<rect class="ev" x="{x:.2f}" y="{pad + h1 - he:.2f}" width="{bar:.2f}" '
                   f'height="{he:.2f}"/><rect class="lab" x="{x:.2f}" y="{pad + h1 - hl:.2f}" '
                   f'width="{bar:.2f}" height="{hl:.2f}"/><rect class="fr" x="{x:.2f}" '
                   f'y="{y2 + h2 - hf:.2f}" width="{bar:.2f}" height="{hf:.2f}"/></g>')
        if d.fraud_rate is not None:
            points.append(f"{x + bar / 2:.2f},{y2 + h2 - d.fraud_rate / rates[-1] * h2:.2f}")
    out.append(f'<polyline class="rate" points="{" ".join(points)}"/>')
    for i in _spread(len(days), max(2, plot // 110)):
        x = left + i * step + bar / 2
        out.append(f'<text class="tick mid" x="{x:.1f}" y="{height - 8}">{days[i].day}</text>')
    out.append("</svg>")
    return "".join(out)


def _spread(n: int, count: int) -> list[int]:
    """About ``count`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= count:
        return list(range(n))
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def histogram_chart(hist: Histogram, *, width: int = 760, rows: str = "rows",
                    rate: str = "fraud rate") -> str:
    """Bars of counts per bin, and the fraud rate per bin as a line on the right axis.

    Bars stand at their true place on the axis (in ``ln(1 + x)`` for log bins); a bin wider
    than the standard width (integer bins rounded at the low end) is drawn lower in proportion,
    so that a bar's area, not its height, is its count and no bump appears only because bins
    differ in width. The rate is drawn only for bins of at least :data:`MIN_RATE_ROWS` rows:
    the rate of a bin of two rows is noise that would set the scale of the whole axis.
    """
    left, right, pad, h = 60, 60, 18, 150
    height = pad + h + 30
    plot = width - left - right
    n = len(hist.counts)
    where = [math.log1p(e) if hist.scale == "log" else e for e in hist.edges]
    span = (where[-1] - where[0]) or 1.0
    xs = [left + (w - where[0]) / span * plot for w in where] if where[-1] > where[0] else \
        [left + i * plot / n for i in range(n + 1)]
    widths = [xs[i + 1] - xs[i] for i in range(n)]
    heights = [c * (plot / n) / w if w > 0 else float(c) for c, w in zip(hist.counts, widths,
                                                                          strict=True)]
    uneven = any(abs(w - plot / n) > 0.1 * plot / n for w in widths)
    counts = _ticks(max(heights))
    rates = [f / c if c >= MIN_RATE_ROWS else None
             for c, f in zip(hist.counts, hist.frauds, strict=True)]
    rate_ticks = _ticks(max((r for r in rates if r is not None), default=0.0) or 0.01)
    what = f"{rows} per standard-width bin" if uneven else f"{rows} per bin"
    out = [f'<svg class="chart hist" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="histogram">', *_axis(left, left + plot, pad, h, counts),
           *_axis(left, left + plot, pad, h, rate_ticks, right=True, fmt="pct"),
           f'<text class="panel" x="{left}" y="{pad - 6}">{esc(what)}; line: '
           f'{esc(rate)} (right axis, bins of {MIN_RATE_ROWS}+)</text>']
    points = []
    for i, (c, f) in enumerate(zip(hist.counts, hist.frauds, strict=True)):
        gap = 1.0 if widths[i] > 4 else 0.0
        hb = heights[i] / counts[-1] * h
        tip = (f"{_bin_label(hist, i)}: {c:,} {rows}, {f:,} with fraud"
               f" ({fmt_pct(f / c if c else None)})")
        out.append(f'<g><title>{esc(tip)}</title><rect class="ev" x="{xs[i] + gap / 2:.2f}" '
                   f'y="{pad + h - hb:.2f}" width="{max(widths[i] - gap, 0.5):.2f}" '
                   f'height="{hb:.2f}"/></g>')
        r = rates[i]
        if r is not None:
            cx, cy = (xs[i] + xs[i + 1]) / 2, pad + h - r / rate_ticks[-1] * h
            points.append((cx, cy))
    out.append('<polyline class="rate" points="'
               + " ".join(f"{x:.2f},{y:.2f}" for x, y in points) + '"/>')
    out.extend(f'<circle class="dot" cx="{x:.2f}" cy="{y:.2f}" r="2"/>' for x, y in points)
    if hist.scale == "integer" and n <= 31:
        labels = [((xs[i] + xs[i + 1]) / 2, hist.edges[i]) for i in range(n)]
    else:
        labels = [(xs[i], hist.edges[i]) for i in _spread(n + 1, 7)]
    out.extend(f'<text class="tick mid" x="{x:.1f}" y="{height - 10}">{fmt_axis(v)}</text>'
               for x, v in labels)
    out.append("</svg>")
    return "".join(out)


def _bin_label(hist: Histogram, i: int) -> str:
    lo, hi = hist.edges[i], hist.edges[i + 1]
    if hist.scale == "integer":
        return fmt_num(lo)
    closing = "]" if i == len(hist.counts) - 1 else ")"
    return f"[{fmt_num(lo)}, {fmt_num(hi)}{closing}"


def heatmap(names: Sequence[str], matrix: Sequence[Sequence[float | None]], *,
            cell: int = 38) -> str:
    """A correlation matrix as coloured cells: red positive, blue negative, grey undefined."""
    n = len(names)
    label_w = 8 + 7 * max(len(name) for name in names)
    top = 10 + int(5 * max(len(name) for name in names))
    width, height = label_w + n * cell + 10, top + n * cell + 10
    out = [f'<svg class="chart heat" viewBox="0 0 {width} {height}" width="{width}" '
           f'role="img" aria-label="correlation heatmap">']
    for i, name in enumerate(names):
        y = top + i * cell + cell / 2 + 4
        x = label_w + i * cell + cell / 2
        out.append(f'<text class="tick end" x="{label_w - 6}" y="{y:.1f}">{esc(name)}</text>'
                   f'<text class="tick" transform="translate({x:.1f},{top - 6}) rotate(-45)">'
                   f'{esc(name)}</text>')
        for j, value in enumerate(matrix[i]):
            fill = _diverging(value)
            tip = f"{names[i]} × {names[j]}: {'undefined' if value is None else f'{value:.3f}'}"
            dark = value is not None and abs(value) > 0.55
            text = "" if value is None or n > 16 else (
                f'<text class="cell{" light" if dark else ""}" '
                f'x="{label_w + j * cell + cell / 2:.1f}" '
                f'y="{top + i * cell + cell / 2 + 4:.1f}">{value:.2f}</text>')
            out.append(f'<g><title>{esc(tip)}</title><rect x="{label_w + j * cell}" '
                       f'y="{top + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill="{fill}"/>{text}</g>')
    out.append("</svg>")
    return "".join(out)


def _diverging(value: float | None) -> str:
    if value is None:
        return "#9aa0a6"
    strength = min(abs(value), 1.0)
    end = (192, 57, 43) if value > 0 else (41, 98, 170)
    r, g, b = (round(255 + (e - 255) * strength) for e in end)
    return f"rgb({r},{g},{b})"
