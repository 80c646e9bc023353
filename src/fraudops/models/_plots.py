"""Small, self-contained SVG plots logged with every training run (no plotting dependency).

Three views a fraud data scientist opens first: the precision-recall curve (rare positives make
ROC curves flattering), the reliability diagram (is the probability a probability?) and the
feature importances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

import numpy as np

_W, _H, _PAD = 420, 320, 44


def _frame(title: str, x_label: str, y_label: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
            f' viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="11">'
            f'<rect width="{_W}" height="{_H}" fill="white"/>'
            f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 12}" y2="{_H - _PAD}" stroke="#333"/>'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_PAD}" y2="28" stroke="#333"/>'
            f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle">{escape(x_label)}</text>'
            f'<text x="12" y="{_H / 2}" transform="rotate(-90 12 {_H / 2})"'
            f' text-anchor="middle">{escape(y_label)}</text>{body}</svg>')


def _xy(x: float, y: float) -> str:
    px = _PAD + x * (_W - 12 - _PAD)
    py = (_H - _PAD) - y * (_H - _PAD - 28)
    return f"{px:.1f},{py:.1f}"


def precision_recall_svg(y: np.ndarray, probability: np.ndarray) -> str:
    """The precision-recall curve, one point per distinct threshold."""
    order = np.argsort(-probability, kind="stable")
    hits = np.cumsum(np.asarray(y)[order] == 1)
    total = max(int(hits[-1]) if len(hits) else 0, 1)
    ranks = np.arange(1, len(order) + 1)
    last = np.r_[np.diff(probability[order]) != 0, True]  # one point per threshold
    recall, precision = hits[last] / total, hits[last] / ranks[last]
    step = max(1, len(recall) // 400)
    points = " ".join(_xy(r, p) for r, p in zip(recall[::step], precision[::step], strict=True))
    body = f'<polyline points="{points}" fill="none" stroke="#c0392b" stroke-width="1.5"/>'
    return _frame("precision-recall (validation window)", "recall", "precision", body)


def reliability_svg(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> str:
    """Mean predicted probability against the observed fraud rate, per probability decile."""
    edges = np.quantile(probability, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, bins - 1)
    top = max(float(probability.max()), 1e-9)
    points = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            points.append((float(probability[inside].mean()) / top,
                           float(np.asarray(y)[inside].mean()) / top))
    body = (f'<line x1="{_xy(0, 0).split(",")[0]}" y1="{_xy(0, 0).split(",")[1]}"'
            f' x2="{_xy(1, 1).split(",")[0]}" y2="{_xy(1, 1).split(",")[1]}" stroke="#aaa"'
            ' stroke-dasharray="4"/>'
            + "".join(f'<circle cx="{_xy(px, py).split(",")[0]}" cy="{_xy(px, py).split(",")[1]}"'
                      ' r="3.5" fill="#2c7fb8"/>' for px, py in points)
            + f'<text x="{_W - 14}" y="40" text-anchor="end">axes scaled to {top:.3g}</text>')
    return _frame("reliability by probability decile", "mean predicted probability",
                  "observed fraud rate", body)


def importances_svg(importances: Mapping[str, float], top: int = 20) -> str:
    """The largest gain importances, as bars."""
    items: Sequence[tuple[str, float]] = sorted(importances.items(), key=lambda kv: -kv[1])[:top]
    largest = max((v for _, v in items), default=1.0) or 1.0
    row = (_H - 40) / max(len(items), 1)
    bars = "".join(
        f'<text x="190" y="{32 + i * row + row * 0.7:.1f}" text-anchor="end">'
        f"{escape(name[:32])}</text>"
        f'<rect x="196" y="{32 + i * row:.1f}" width="{200 * value / largest:.1f}"'
        f' height="{row * 0.8:.1f}" fill="#27ae60"/>' for i, (name, value) in enumerate(items))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
            f' font-family="sans-serif" font-size="10"><rect width="{_W}" height="{_H}"'
            f' fill="white"/><text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">'
            f"feature importance (gain)</text>{bars}</svg>")


def write_training_plots(folder: Path, y: np.ndarray, probability: np.ndarray,
                         importances: Mapping[str, float]) -> dict[str, Path]:
    """Write the three plots into ``folder``; returns their paths by name (no extension), as
    the registry logs them."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = {"precision_recall": precision_recall_svg(y, probability),
             "reliability": reliability_svg(y, probability)}
    if importances:
        plots["importances"] = importances_svg(importances)
    paths = {}
    for name, svg in plots.items():
        path = folder / f"{name}.svg"
        path.write_text(svg)
        paths[name] = path
    return paths
