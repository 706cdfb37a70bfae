"""Intervals for the answer: a Wilson interval on one accuracy (how many images it rests on) and a t-interval over
seeds (how much it moves between runs). Pure Python (scipy for the t quantile)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from simmim_ray.search.settings import FEASIBILITY

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(accuracy: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion measured on `n` images; (nan, nan) without images. Unlike the
    normal approximation it stays inside [0, 1] and is not degenerate at 0 or 1 correct."""
    if not n or n <= 0 or accuracy is None or not math.isfinite(accuracy):
        return (math.nan, math.nan)
    p = min(max(float(accuracy), 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class SeedSummary:
    """Accuracy over independent seeds: mean, sample std (ddof 1; 0 for one seed) and the 95% t-interval of the
    mean, clipped to [0, 1] (the mean itself at both ends for one seed: nothing to estimate a spread from)."""

    per_seed: tuple[float, ...]
    mean: float
    std: float
    low: float
    high: float

    def bound(self, feasibility: str) -> float:
        """What is held against the target: the mean, or the lower end of the 95% interval."""
        if feasibility not in FEASIBILITY:
            raise ValueError(f"feasibility must be one of {', '.join(FEASIBILITY)}, but got {feasibility!r}")
        return self.mean if feasibility == "mean" else self.low


def seed_summary(values) -> SeedSummary:
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("seed_summary: `len(values) >= 1` must hold, but got no values")
    n = len(vals)
    mean = sum(vals) / n
    if n == 1:
        return SeedSummary(vals, mean, 0.0, mean, mean)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    from scipy.stats import t  # SciPy only for an interval: `report` imports this module

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    # accuracies: an interval reaching past 0 or 1 says nothing more than one that stops there
    return SeedSummary(vals, mean, std, max(0.0, mean - half), min(1.0, mean + half))
