"""Intervals of the answer: Wilson on one accuracy, t over seeds (published reference values)."""
from __future__ import annotations

import math

import pytest

from simmim_ray.search.answer.stats import seed_summary, wilson_interval


@pytest.mark.parametrize("acc, n, low, high", [
    (0.5, 100, 0.4038, 0.5962),  # the textbook example
    (0.0, 10, 0.0, 0.2775),  # no successes: the interval still has width (a normal interval would be [0, 0])
    (1.0, 10, 0.7225, 1.0),
])
def test_wilson_interval_matches_reference_values(acc, n, low, high):
    lo, hi = wilson_interval(acc, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_narrows_with_more_images_and_is_nan_without_any():
    small, large = wilson_interval(0.9, 50), wilson_interval(0.9, 5000)
    assert small[0] < large[0] < 0.9 < large[1] < small[1]
    assert all(math.isnan(v) for v in wilson_interval(0.9, 0))


def test_seed_summary_t_interval():
    s = seed_summary([0.90, 0.92, 0.94])
    assert s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    half = 4.3027 * 0.02 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) = 4.3027
    assert (s.low, s.high) == (pytest.approx(0.92 - half, abs=1e-4), pytest.approx(0.92 + half, abs=1e-4))
    assert s.bound("mean") == s.mean and s.bound("lower-bound") == s.low
    one = seed_summary([0.8])  # one seed: no spread to estimate
    assert (one.std, one.low, one.high) == (0.0, 0.8, 0.8)
    assert seed_summary([0.99, 0.999, 0.95]).high == 1.0  # an accuracy's interval stops at 1
    with pytest.raises(ValueError, match="lower-bound"):
        s.bound("median")
