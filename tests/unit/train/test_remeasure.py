"""A borderline final accuracy is measured again with more fine-tune seeds (train/loop_config.Remeasure,
train/worker.final_eval); one far from the target is not."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from simmim_ray.metrics import VAL_ACCURACY, VAL_ACCURACY_SEEDS, VAL_COUNT
from simmim_ray.train.loop_config import LoopConfig, Remeasure


@pytest.mark.parametrize("acc, n, needed", [
    (0.92, 359, True), (0.948, 359, True), (0.893, 359, True),  # 2 SE at p=0.92, n=359: 0.0286
    (0.95, 359, False), (0.889, 359, False), (0.50, 359, False),
    (0.95, 10_000, False),  # many images: 3 points is far
    (float("nan"), 359, False), (0.92, 0, False),
])
def test_borderline_is_two_standard_errors_of_the_target(acc, n, needed):
    assert Remeasure(0.92).needed(acc, n) is needed


def test_no_seeds_means_never():
    assert not Remeasure(0.92, seeds=0).needed(0.92, 359)


class FakeRun:
    """final_eval(seed=s) -> the accuracy scripted for seed s; records the calls."""

    def __init__(self, accs: dict[int, float]) -> None:
        self.accs, self.calls = accs, []
        self.cfg = SimpleNamespace(seed=0)

    def final_eval(self, splits=("val",), seed=None):
        seed = 1 if seed is None else seed  # the config seed 0 fine-tunes with 0 * 7 + 1
        self.calls.append((tuple(splits), seed))
        return {VAL_ACCURACY: self.accs[seed], VAL_COUNT: 359, "params": 7}


def test_a_borderline_trial_reports_the_mean_over_its_seeds_and_each_seed():
    from simmim_ray.train.trial_loop import final_eval

    run = FakeRun({1: 0.925, 2: 0.90, 3: 0.905})
    m = final_eval(run, LoopConfig(config={}, remeasure=Remeasure(0.92, seeds=2)))
    assert m[VAL_ACCURACY] == pytest.approx((0.925 + 0.90 + 0.905) / 3) and m[VAL_ACCURACY] < 0.92
    assert m[VAL_ACCURACY_SEEDS] == [0.925, 0.90, 0.905] and m["params"] == 7
    assert [s for _, s in run.calls] == [1, 2, 3] and all(sp == ("val",) for sp, _ in run.calls)


def test_a_clear_trial_is_measured_once():
    from simmim_ray.train.trial_loop import final_eval

    for acc in (0.99, 0.5):
        run = FakeRun({1: acc})
        m = final_eval(run, LoopConfig(config={}, remeasure=Remeasure(0.92, seeds=2)))
        assert m[VAL_ACCURACY] == acc and VAL_ACCURACY_SEEDS not in m and len(run.calls) == 1
    run = FakeRun({1: 0.92})
    assert final_eval(run, LoopConfig(config={}))[VAL_ACCURACY] == 0.92 and len(run.calls) == 1
    assert math.isclose(0.0286, 2 * math.sqrt(0.92 * 0.08 / 359), abs_tol=1e-4)
