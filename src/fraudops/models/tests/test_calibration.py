"""Calibrator: isotonic and sigmoid maps, JSON round trip, refusal without fraud."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.models._calibration import Calibrator, fit_calibrator
from fraudops.models._metrics import expected_calibration_error


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that rank well but over-state the probability (score = true_p ** 0.3)."""
    rng = np.random.default_rng(seed)
    true_p = rng.beta(0.3, 20.0, size=n)
    y = (rng.random(n) < true_p).astype(np.int8)
    return true_p**0.3, y


def slow_interpolate(x: list[float], y: list[float], p: float) -> float:
    """The obvious piecewise-linear map: clamp outside, find the segment by a linear scan."""
    if p <= x[0]:
        return y[0]
    if p >= x[-1]:
        return y[-1]
    for i in range(1, len(x)):
        if p <= x[i]:
            t = (p - x[i - 1]) / (x[i] - x[i - 1])
            return y[i - 1] + t * (y[i] - y[i - 1])
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind", ["isotonic", "sigmoid"])
def test_calibration_lowers_the_calibration_error_on_new_data(kind):
    scores, y = miscalibrated(20_000, seed=0)
    calibrator = fit_calibrator(kind, scores, y)
    test_scores, test_y = miscalibrated(20_000, seed=1)
    before = expected_calibration_error(test_y, test_scores)
    after = expected_calibration_error(test_y, calibrator.apply(test_scores))
    assert after < before / 3


def test_isotonic_apply_matches_the_slow_reference():
    scores, y = miscalibrated(5_000, seed=2)
    calibrator = fit_calibrator("isotonic", scores, y)
    probe = np.concatenate([np.linspace(-0.1, 1.1, 301), scores[:200], np.array(calibrator.x)])
    expected = [slow_interpolate(list(calibrator.x), list(calibrator.y), float(p)) for p in probe]
    np.testing.assert_allclose(calibrator.apply(probe), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([calibrator.apply(float(p)) for p in probe], expected, rtol=1e-12, atol=1e-15)


def test_isotonic_map_is_monotone_and_within_unit_interval():
    scores, y = miscalibrated(5_000, seed=3)
    calibrator = fit_calibrator("isotonic", scores, y)
    out = calibrator.apply(np.linspace(0, 1, 1001))
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0
    assert out.max() <= 1


def test_sigmoid_scalar_and_vector_paths_agree():
    scores, y = miscalibrated(5_000, seed=4)
    calibrator = fit_calibrator("sigmoid", scores, y)
    probe = np.array([0.0, 1e-9, 0.01, 0.3, 0.999, 1.0])
    np.testing.assert_allclose([calibrator.apply_one(float(p)) for p in probe], calibrator.apply(probe),
                               rtol=1e-12)


@pytest.mark.parametrize("kind", ["isotonic", "sigmoid"])
def test_json_round_trip_is_exact(kind):
    import json

    scores, y = miscalibrated(3_000, seed=5)
    calibrator = fit_calibrator(kind, scores, y)
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert again == calibrator
    np.testing.assert_array_equal(again.apply(scores), calibrator.apply(scores))


def test_window_without_fraud_is_refused():
    with pytest.raises(ValueError, match="validation window has no fraud"):
        fit_calibrator("isotonic", [0.1, 0.2, 0.3], [0, 0, 0])


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'calibration' parameter must be one of"):
        fit_calibrator("beta", [0.1, 0.2], [0, 1])
