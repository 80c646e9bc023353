"""Population stability index (PSI) of a score between a reference and a recent period.

``PSI = Σ_b (a_b − e_b) · ln(a_b / e_b)`` over bins ``b``, with ``e_b`` the reference
(expected) share and ``a_b`` the recent (actual) share of values in bin ``b``.

- **Bins** are quantiles of the reference: ``bins`` bins of (about) equal reference mass, so
  that every bin is populated where the reference has data. Duplicate edges (a score with
  heavy ties, such as a calibrated fraud score that sits at its floor for most events) are
  merged, so there may be fewer bins than asked. The outer bins are open: values below the
  reference minimum or above its maximum fall into the first or last bin.
- **Smoothing**: an empty bin would make the logarithm infinite, so every share is computed
  as ``(count + ε) / (n + ε · B)`` with ``ε = epsilon`` (default 0.5, a half count, the usual
  Laplace-style smoothing). Identical samples give exactly 0.
- Rule of thumb used by credit-risk and fraud teams: < 0.1 stable, 0.1–0.25 moderate shift,
  > 0.25 a significant shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def quantile_edges(reference: Any, bins: int = 10,
                   tail: tuple[float, ...] = (0.95, 0.99)) -> np.ndarray:
    """The inner bin edges: the reference's ``1/bins … (bins−1)/bins`` quantiles and its
    ``tail`` quantiles, deduplicated.

    The tail edges matter for fraud scores: what changes the actions is the top percent of
    scores, which ten equal-mass bins lump with the rest of the top decile (a shift of the top
    1 % from 1 % to 2 % of events moved decile PSI by only 0.03).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"The 'bins' parameter of population_stability_index must be an integer"
                         f" >= 2; got {bins!r}")
    ref = np.asarray(reference, dtype=np.float64)
    levels = np.unique(np.r_[np.arange(1, bins) / bins, [q for q in tail if 0 < q < 1]])
    return np.unique(np.quantile(ref, levels))


def population_stability_index(reference: Any, recent: Any, *, bins: int = 10,
                               epsilon: float = 0.5) -> float:
    """PSI of ``recent`` against ``reference`` with quantile bins of the reference.

    Parameters
    ----------
    reference, recent : array of float
        The values (e.g. calibrated probabilities) of the two periods; NaN is not allowed.
    bins : int
        Number of quantile bins of the reference (fewer when its quantiles tie).
    epsilon : float
        Pseudo-count added to every bin of both samples (> 0).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(0, 1, 1000)
    >>> population_stability_index(x, x)
    0.0
    >>> population_stability_index(x, x + 0.5) > 1
    True
    """
    if not epsilon > 0:
        raise ValueError(f"The 'epsilon' parameter of population_stability_index must be > 0; "
                         f"got {epsilon!r}")
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(recent, dtype=np.float64)
    for name, values in (("reference", ref), ("recent", new)):
        if values.ndim != 1 or not values.size:
            raise ValueError(f"population_stability_index: {name!r} must be a non-empty 1-d array;"
                             f" got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"population_stability_index: {name!r} holds NaN or infinite values")
    edges = quantile_edges(ref, bins)
    n_bins = len(edges) + 1
    # side="right": a value equal to an edge goes to the bin above it, in both samples alike
    expected = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n_bins)
    actual = np.bincount(np.searchsorted(edges, new, side="right"), minlength=n_bins)
    e = (expected + epsilon) / (ref.size + epsilon * n_bins)
    a = (actual + epsilon) / (new.size + epsilon * n_bins)
    return float(np.sum((a - e) * np.log(a / e)))
