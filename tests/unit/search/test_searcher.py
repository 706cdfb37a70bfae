"""ConstrainedOptunaSearch without Ray's event loop: we call suggest / on_trial_complete as Tune would."""
from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from simmim_ray._compat.optuna import constraint_values
from simmim_ray.search.searcher import ConstrainedOptunaSearch
from simmim_ray.search.study import fail_orphans

optuna.logging.set_verbosity(optuna.logging.WARNING)
# the Optuna 4 / 5 difference lives here: the floor venv runs these too
pytestmark = pytest.mark.floor_smoke

SPACE = {
    "model.embed_dim": optuna.distributions.IntDistribution(8, 128, step=8),
    "model.depth": optuna.distributions.IntDistribution(1, 8),
    "mask.ratio": optuna.distributions.FloatDistribution(0.1, 0.9),
}


def synthetic(p: dict) -> dict:
    """Size grows with width^2 * depth; accuracy saturates with capacity and peaks at mask ratio 0.6.

    Feasible (accuracy >= 0.9) needs capacity; the smallest feasible point is known by enumeration.
    """
    w, d, r = p["model.embed_dim"], p["model.depth"], p["mask.ratio"]
    size = w * w * d
    acc = (1 - math.exp(-size / 6000)) - 0.5 * (r - 0.6) ** 2
    return {"params": size, "val_accuracy": acc, "done": True}


def smallest_feasible(target: float) -> int:
    return min(w * w * d for w in range(8, 129, 8) for d in range(1, 9)
               if synthetic({"model.embed_dim": w, "model.depth": d, "mask.ratio": 0.6})["val_accuracy"] >= target)


def run(sampler: str, seed: int, budget: int, target: float = 0.9) -> tuple[int | None, optuna.Study]:
    s = ConstrainedOptunaSearch(SPACE, "params", target, seed=seed, sampler=sampler, study_name=f"{sampler}{seed}")
    for i in range(budget):
        tid = f"t{i}"
        params = s.suggest(tid)
        s.on_trial_complete(tid, synthetic(params))
    feas = [t for t in s.study.trials if t.state == TrialState.COMPLETE and feasible(t)]
    return (min(t.values[0] for t in feas) if feas else None), s.study


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    """Optuna's rule: feasible when every constraint value is <= 0."""
    vals = constraint_values(t)
    return bool(vals) and all(v <= 0 for v in vals)


def test_one_objective_the_size_and_the_accuracy_a_constraint():
    best, study = run("tpe", 0, 10)
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["params"] and study.user_attrs["target_accuracy"] == 0.9
    for t in study.trials:
        got = synthetic(t.params)
        # a trial below the target is worse than any that meets it: +inf, so no dashboard calls it the best
        assert t.values == [got["params"] if got["val_accuracy"] >= 0.9 else math.inf]
        assert t.user_attrs["size"] == got["params"]  # the size the +inf objective does not show
        assert constraint_values(t) == [pytest.approx(0.9 - got["val_accuracy"])]
        assert feasible(t) == (got["val_accuracy"] >= 0.9)
    assert any(not feasible(t) for t in study.trials) and any(feasible(t) for t in study.trials)


def test_constrained_tpe_finds_the_smallest_feasible_point_and_beats_random():
    """Budget 60 trials, 3 seeds: TPE gets within 1.5x of the true optimum every time and is at least as good as
    random search on average."""
    target = 0.9
    optimum = smallest_feasible(target)
    tpe = [run("tpe", seed, 60, target)[0] for seed in range(3)]
    rnd = [run("random", seed, 60, target)[0] for seed in range(3)]
    assert all(v is not None and v <= 1.5 * optimum for v in tpe), (tpe, optimum)
    rnd_mean = sum(v if v is not None else 10 * optimum for v in rnd) / 3
    assert sum(tpe) / 3 <= rnd_mean, (tpe, rnd)


def test_early_stopped_trial_is_pruned_not_complete():
    s = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0)
    s.suggest("a")
    # ASHA stopped it: last result has the proxy but no final accuracy
    s.on_trial_complete("a", {"params": 100, "proxy_knn": 0.2, "epoch": 1, "done": False})
    s.suggest("b")
    s.on_trial_complete("b", None, error=True)
    states = [t.state for t in s.study.trials]
    assert states == [TrialState.PRUNED, TrialState.FAIL]
    assert s.study.trials[0].values is None  # nothing truncated is told as a measurement
    assert s.study.trials[0].user_attrs["stopped"] == "stopped early at epoch 1"


def test_restored_searcher_finds_its_trial_by_tune_id():
    """A searcher restored from an older pickle does not know a Tune trial saved later; it finds the study trial
    through the user attr written at suggest time and tells it, instead of dropping the result."""
    storage = optuna.storages.InMemoryStorage()
    s1 = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, storage=storage, study_name="x")
    params = s1.suggest("t_late")
    s2 = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, storage=storage, study_name="x")
    s2.on_trial_complete("t_late", synthetic(params))
    (t,) = s2.study.trials
    assert t.state == TrialState.COMPLETE and t.user_attrs["tune_trial_id"] == "t_late"
    # telling again after another restart keeps the first answer and does not raise
    s3 = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, storage=storage, study_name="x")
    s3.on_trial_complete("t_late", {"params": 1, "val_accuracy": 0.0, "done": True})
    assert s3.study.trials[0].values == t.values


def test_orphans_are_failed():
    storage = optuna.storages.InMemoryStorage()
    s = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, storage=storage, study_name="o")
    s.suggest("never_run")
    assert fail_orphans(s.study) == 1
    assert s.study.trials[0].state == TrialState.FAIL


def test_budget_counts_trials_from_the_study_after_a_restore(tmp_path, monkeypatch):
    """A trial that finished after the searcher's last save is unknown to the restored searcher (and to Tune's
    restored state); the budget still counts it, so a resumed search starts no trial too many."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/study.db")
    monkeypatch.setattr(ConstrainedOptunaSearch, "restore_storage", storage)  # as the search driver does

    def searcher(budget):
        return ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, storage=storage, study_name="b", budget=budget)

    s1 = searcher(3)
    s1.on_trial_complete("t0", synthetic(s1.suggest("t0")))
    s1.save(str(tmp_path / "searcher.pkl"))  # Tune's last save before the kill
    s1.on_trial_complete("t1", synthetic(s1.suggest("t1")))
    s1.suggest("orphan")  # asked just before the kill, never run
    fail_orphans(s1.study)  # as the resumed search's end would

    for budget, expect in ((3, 1), (0, 2)):  # budget 0: Tune's own count (which missed t1) would decide
        s2 = searcher(99)
        s2.restore(str(tmp_path / "searcher.pkl"))
        assert s2.budget == 3 and s2.started() == {"t0", "t1"}  # the orphan is not counted
        s2.budget = budget
        got = [s2.suggest(f"{budget}_{i}") for i in range(2)]
        assert sum(g is not None and g != "FINISHED" for g in got) == expect, got
    # a later search sharing the database and study name does not count this one's trials
    s3 = searcher(1)
    assert s3.started() == set() and s3.suggest("new") not in (None, "FINISHED")


def test_a_restored_searcher_continues_the_study_where_the_experiment_is_now(tmp_path, monkeypatch):
    """Tune pickles the searcher into the experiment. Restored from a copy of the experiment (the original moved
    away, or still there), it must neither open the original's study (unpickling an Optuna database connects to
    it) nor write to it: it continues the copy's study."""
    import pickle
    import shutil

    (tmp_path / "a").mkdir()
    s1 = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, study_name="q",
                                 storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/a/study.db"))
    s1.on_trial_complete("t0", synthetic(s1.suggest("t0")))
    s1.suggest("t1")  # running when Tune saved (tuner.pkl holds the searcher itself, the state file its dict)
    s1.save(str(tmp_path / "a" / "searcher.pkl"))
    tuner_pkl = pickle.dumps(s1)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # moved: the original path is gone
    copy = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/b/study.db")
    monkeypatch.setattr(ConstrainedOptunaSearch, "restore_storage", copy)
    for restored in (pickle.loads(tuner_pkl), pickle.loads(tuner_pkl)):
        restored.restore(str(tmp_path / "b" / "searcher.pkl"))
    restored.on_trial_complete("t1", synthetic(restored.running["t1"].params))
    assert not (tmp_path / "a").exists()  # nothing opened, nothing created where the experiment was
    states = [t.state for t in optuna.load_study(study_name="q", storage=copy).trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert restored.started() == {"t0", "t1"}


SMALL = {"model.depth": optuna.distributions.IntDistribution(1, 3),
         "model.num_heads": optuna.distributions.CategoricalDistribution([2, 4])}


def test_no_configuration_runs_twice_while_unseen_ones_remain():
    """6 configurations, 6 suggestions, some pruned and some completed: 6 different configurations run (TPE alone
    repeats here); each repeat it sampled is answered from its twin in the study without running."""
    s = ConstrainedOptunaSearch(SMALL, "params", 0.9, seed=0)
    ran = []
    for i in range(6):
        p = s.suggest(f"t{i}")
        ran.append(tuple(sorted(p.items())))
        if i % 2:
            s.on_trial_complete(f"t{i}", {"params": 10 * p["model.depth"], "proxy_knn": 0.3, "done": False})
        else:
            s.on_trial_complete(f"t{i}", {"params": 10 * p["model.depth"], "val_accuracy": 0.5 + 0.1 * i,
                                          "done": True})
    assert len(set(ran)) == 6
    by_number = {t.number: t for t in s.study.trials}
    repeats = [t for t in s.study.trials if "repeat_of" in t.user_attrs]
    assert repeats, "TPE sampled no repeat in 6 asks over 6 configurations: the test no longer tests the rule"
    for t in repeats:
        twin = by_number[t.user_attrs["repeat_of"]]
        assert t.params == twin.params and t.state == twin.state and "tune_trial_id" not in t.user_attrs
        if t.state == TrialState.COMPLETE:
            assert t.values == twin.values and constraint_values(t) == constraint_values(twin)


def test_a_stopped_trial_is_pruned_with_no_measured_constraint():
    """A trial stopped early was never measured: PRUNED with the reason, and no constraint value, on Optuna 4 (whose
    constraints_func stores what we return) as on 5; TPE ranks such trials below feasible and above infeasible
    ones. A measured trial without a finite accuracy stays infeasible."""
    from simmim_ray._compat.optuna import constraints_func

    s = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0)
    s.suggest("a")
    s.on_trial_complete("a", {"params": 100, "proxy_knn": 0.2, "epoch": 20, "done": False})
    (t,) = s.study.trials
    assert t.state == TrialState.PRUNED and constraint_values(t) == [] and "epoch 20" in t.user_attrs["stopped"]
    assert constraints_func(t) == []
    measured = optuna.trial.create_trial(params={}, distributions={}, values=[1.0])
    assert constraints_func(measured) == [math.inf]


def sized(p: dict) -> float:
    return p["model.embed_dim"] ** 2 * p["model.depth"]


def test_a_configuration_that_cannot_beat_the_incumbent_is_never_trained():
    """Once a trial is feasible, every suggestion is strictly smaller than the smallest feasible size; samples that
    are not are recorded as PRUNED ("skipped", with their size) and never handed to Tune."""
    s = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, size_of=sized)
    incumbent, handed = None, []
    for i in range(40):
        p = s.suggest(f"t{i}")
        if p == "FINISHED":
            break
        handed.append(p)
        if incumbent is not None:
            assert sized(p) < incumbent, (sized(p), incumbent)
        r = synthetic(p)
        s.on_trial_complete(f"t{i}", r)
        if r["val_accuracy"] >= 0.9:
            incumbent = min(incumbent or math.inf, r["params"])
    assert incumbent is not None and s.incumbent() == incumbent
    skipped = [t for t in s.study.trials if "skipped" in t.user_attrs]
    assert skipped, "no sample was skipped: the test no longer tests the rule"
    for t in skipped:
        assert t.state == TrialState.PRUNED and "tune_trial_id" not in t.user_attrs
        assert t.user_attrs["size"] >= min(u.values[0] for u in s.study.trials
                                           if u.state == TrialState.COMPLETE and u.number < t.number and feasible(u))
    assert len(handed) == len({tuple(sorted(p.items())) for p in handed})


TINY = {"model.embed_dim": optuna.distributions.IntDistribution(8, 32, step=8),
        "model.depth": optuna.distributions.IntDistribution(1, 2)}


def test_the_search_finishes_when_no_smaller_configuration_is_left():
    """8 configurations; the smallest is feasible: once it has run, nothing can beat it and the search says so
    (FINISHED, with the reason on the study), well before its trial budget."""
    s = ConstrainedOptunaSearch(TINY, "params", 0.0, seed=0, size_of=sized, budget=50)
    n = 0
    while (p := s.suggest(f"t{n}")) != "FINISHED":
        s.on_trial_complete(f"t{n}", {"params": sized(p), "val_accuracy": 1.0, "done": True})
        n += 1
        assert n <= 8
    assert s.incumbent() == 8 * 8 * 1
    assert "no untried configuration is smaller" in s.study.user_attrs["search_finished"]


def test_a_compute_budget_stops_starting_trials_once_spent():
    s = ConstrainedOptunaSearch(SPACE, "params", 0.9, seed=0, budget_epochs=25)
    for i, epochs in enumerate((10, 10, 10)):
        p = s.suggest(f"t{i}")
        assert p != "FINISHED", i
        for e in range(1, epochs + 1):
            s.on_trial_result(f"t{i}", {"epoch": e, "time_total_s": e})
        s.on_trial_complete(f"t{i}", {"params": 1, "proxy_knn": 0.1, "epoch": epochs, "done": False})
    assert s.spent_epochs() == 30 and s.suggest("t3") == "FINISHED"
    assert "25 trial-epochs" in s.study.user_attrs["search_finished"]


def test_an_orphans_params_run_again_after_a_restart():
    """A trial asked just before a driver kill stays RUNNING in the study and never ran; the restarted search's
    sampler proposes the same params: they run (not answered as a repeat of a trial nobody runs)."""
    storage = optuna.storages.InMemoryStorage()
    s1 = ConstrainedOptunaSearch(SMALL, "params", 0.9, seed=0, storage=storage, study_name="r")
    orphan = s1.suggest("killed")
    s2 = ConstrainedOptunaSearch(SMALL, "params", 0.9, seed=0, storage=storage, study_name="r")
    s2.study.enqueue_trial(orphan)
    assert s2.suggest("again") == orphan
    assert not [t for t in s2.study.trials if "repeat_of" in t.user_attrs]
    # while a trial this searcher runs is still running, its params are not started twice
    s2.study.enqueue_trial(orphan)
    assert s2.suggest("third") != orphan
    running = s2.running["again"].number
    reps = [t for t in s2.study.trials if t.user_attrs.get("repeat_of") == running]
    assert reps and all(t.state == TrialState.FAIL for t in reps)  # FAIL: the sampler learns nothing from it
