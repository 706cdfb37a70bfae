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


def stopper(**kw):
    from simmim_ray.search.schedulers import ConstraintStopper

    return ConstraintStopper("params", 0.9, "proxy_knn", rungs=[20, 40], margin=kw.pop("margin", 0.05), **kw)


def finish(sch, trial, size, acc, proxies):
    for epoch, p in proxies.items():
        sch.on_trial_result(None, trial, {"epoch": epoch, "proxy_knn": p, "params": size})
    sch.on_trial_complete(None, trial, {"epoch": 60, "params": size, "val_accuracy": acc, "done": True})


def test_a_trial_that_cannot_beat_the_smallest_feasible_size_is_stopped_at_its_next_result():
    sch = stopper()
    big, small = trial("big"), trial("small")
    assert sch.on_trial_result(None, big, {"epoch": 1, "params": 500, "proxy_knn": 0.5}) == TrialScheduler.CONTINUE
    finish(sch, small, 300, 0.95, {20: 0.6})  # another trial became feasible while `big` ran
    assert sch.incumbent == 300
    assert sch.on_trial_result(None, big, {"epoch": 2, "params": 500, "proxy_knn": 0.5}) == TrialScheduler.STOP
    assert "cannot beat the smallest feasible 300" in sch.stopped["big"]
    # an infeasible or early-stopped end sets no incumbent
    sch2 = stopper()
    finish(sch2, trial("x"), 100, 0.5, {})
    sch2.on_trial_complete(None, trial("y"), {"epoch": 20, "params": 50, "proxy_knn": 0.9, "done": False})
    assert sch2.incumbent is None


def test_a_trial_whose_proxy_is_below_every_feasible_trials_at_a_rung_is_stopped():
    sch = stopper(margin=0.05)
    probe = trial("p")
    # nothing finished feasible yet: nothing to predict from
    assert sch.on_trial_result(None, probe, {"epoch": 20, "params": 100, "proxy_knn": 0.1}) == TrialScheduler.CONTINUE
    finish(sch, trial("f1"), 400, 0.93, {20: 0.70, 40: 0.80})
    finish(sch, trial("f2"), 300, 0.92, {20: 0.60, 40: 0.75})
    finish(sch, trial("bad"), 200, 0.80, {20: 0.20})  # infeasible: sets no floor
    assert sch.floor(20) == 0.60 and sch.floor(40) == 0.75
    ok, low = trial("ok"), trial("low")
    assert sch.on_trial_result(None, ok, {"epoch": 20, "params": 100, "proxy_knn": 0.56}) == TrialScheduler.CONTINUE
    assert sch.on_trial_result(None, low, {"epoch": 19, "params": 100, "proxy_knn": 0.1}) == TrialScheduler.CONTINUE
    assert sch.on_trial_result(None, low, {"epoch": 20, "params": 100, "proxy_knn": 0.54}) == TrialScheduler.STOP
    assert "below every trial that finished feasible (0.600)" in sch.stopped["low"]
    # a protected point (--points, the ladder) is stopped only when it cannot beat the incumbent
    sch._protect = [{"model.depth": 2}]
    kept = trial("kept", **{"model.depth": 2})
    assert sch.on_trial_result(None, kept, {"epoch": 20, "params": 100, "proxy_knn": 0.1}) == TrialScheduler.CONTINUE
    assert sch.on_trial_result(None, kept, {"epoch": 21, "params": 300, "proxy_knn": 0.9}) == TrialScheduler.STOP
