"""ProtectingASHA: the warm-start points run to the end; every other trial is stopped exactly as ASHA would."""
from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from simmim_ray.search.schedulers import ProtectingASHA, same_point


def trial(tid: str, **config):
    return SimpleNamespace(trial_id=tid, config=config)


def asha(protect):
    return ProtectingASHA(protect=protect, time_attr="epoch", metric="proxy_knn", mode="max", max_t=6,
                          grace_period=2, reduction_factor=3)


def test_a_protected_trial_is_not_stopped_where_asha_would_stop_it():
    ladder = [{"model.depth": 1, "mask.ratio": 0.6}]
    s = asha(ladder)
    first, small, other = trial("a", **{"model.depth": 4, "mask.ratio": 0.5}), \
        trial("b", **{"model.depth": 1, "mask.ratio": 0.6 + 1e-15}), trial("c", **{"model.depth": 2, "mask.ratio": 0.5})
    for t in (first, small, other):
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, first, {"epoch": 2, "proxy_knn": 0.9}) == TrialScheduler.CONTINUE
    # both trail the first at the grace rung: plain ASHA stops both, the ladder point goes on
    assert s.on_trial_result(None, other, {"epoch": 2, "proxy_knn": 0.1}) == TrialScheduler.STOP
    assert s.on_trial_result(None, small, {"epoch": 2, "proxy_knn": 0.1}) == TrialScheduler.CONTINUE
    assert asha([]).is_protected(small) is False
    # at its last epoch it stops like any trial
    assert s.on_trial_result(None, small, {"epoch": 6, "proxy_knn": 0.1, "done": True}) == TrialScheduler.STOP


def test_same_point_compares_floats_to_rounding_and_the_rest_exactly():
    assert same_point({"a": 0.1 + 0.2, "b": "[2, 2]", "c": 3}, {"a": 0.3, "b": "[2, 2]", "c": 3})
    assert not same_point({"a": 0.31, "b": "[2, 2]"}, {"a": 0.3, "b": "[2, 2]"})
    assert not same_point({"a": 0.3, "b": "[2, 4]"}, {"a": 0.3, "b": "[2, 2]"})
    assert not same_point({}, {"a": 0.3})
