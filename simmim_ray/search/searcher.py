"""Constraint-aware Optuna search as a Ray Tune searcher, on Tune's public `Searcher` and Optuna's ask / tell.

Ray's `OptunaSearch` tells Optuna only objective values, and tells a trial that ASHA stopped as COMPLETE with its
truncated metrics. This searcher (a) sets `target - accuracy` as an Optuna constraint before `tell`, which
TPE / NSGA-II read (feasible when <= 0), (b) tells early-stopped trials as PRUNED, and infeasible, so their
truncated accuracy never reaches the sampler or the Pareto front and TPE never counts them among its good trials,
and (c) never runs a configuration twice: a sample that repeats an earlier trial is answered from that trial without
running (Optuna's recipe for repeated samples) and the sampler asked again. Objectives: size (minimise), accuracy
(maximise).
"""
from __future__ import annotations

import logging
import math
import pickle
import uuid

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from simmim_ray._compat import optuna as ot_compat

from simmim_ray.metrics import VAL_ACCURACY

log = logging.getLogger(__name__)

TUNE_ID_ATTR = "tune_trial_id"
SEARCH_ATTR = "search_id"
ORPHAN_ATTR = "orphaned"  # a study trial asked just before a driver kill, never run
REPEAT_ATTR = "repeat_of"  # a sample that repeated this earlier study trial's params, answered without running
# asks per suggestion before a repeat runs anyway: only a nearly exhausted space gets there
MAX_ASKS = 32
FINAL_KEY = VAL_ACCURACY  # present only in a trial's final report (after the fine-tune / probe)


def is_final(result: dict | None) -> bool:
    return bool(result) and FINAL_KEY in result and result.get("done", True)


def make_sampler(sampler: str, seed: int) -> optuna.samplers.BaseSampler:
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate TPE models the width/depth/heads interactions jointly; constraints come from the trial
    return ot_compat.tpe_sampler(seed=seed, multivariate=True, n_startup_trials=4)


class ConstrainedOptunaSearch(Searcher):
    def __init__(self, space: dict, size_metric: str, target_accuracy: float, storage=None, study_name=None,
                 seed: int = 0, points_to_evaluate=None, sampler: str = "tpe", budget: int = 0) -> None:
        super().__init__(metric=[size_metric, FINAL_KEY], mode=["min", "max"])
        self.space = dict(space)  # dotted config key -> Optuna distribution
        self.target_accuracy = float(target_accuracy)
        self.size_metric = size_metric
        self.budget = budget  # trials this search may start in all (0: Tune's num_samples alone decides)
        self.study = optuna.create_study(storage=storage, sampler=make_sampler(sampler, seed),
                                         pruner=optuna.pruners.NopPruner(), study_name=study_name or "optuna",
                                         directions=["minimize", "maximize"], load_if_exists=True)
        for point in points_to_evaluate or []:
            self.study.enqueue_trial(point)
        self.running: dict[str, optuna.trial.Trial] = {}  # Tune trial id -> its asked study trial
        self.completed: set[str] = set()
        # marks this search's study trials: a database and study name may be shared with earlier searches
        self.search_id = uuid.uuid4().hex

    # The study a restored searcher continues, set by the search driver before Tuner.restore. Tune pickles the
    # searcher into the experiment (tuner.pkl, searcher-state-*.pkl); pickled with it, the study's database
    # would be the one where the experiment was then (unpickling even connects to it): for a copied or moved
    # experiment, the original's study.db. So the pickles carry no database (the study's name, its sampler and the
    # asked trials' numbers), and a restored searcher continues the study in `restore_storage`. One search per
    # driver process.
    restore_storage = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        study = state.pop("study")
        state["optuna_study_name"], state["optuna_sampler"] = study.study_name, study.sampler
        state["running"] = {tid: t.number for tid, t in self.running.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        name, sampler = state.pop("optuna_study_name"), state.pop("optuna_sampler")
        if ConstrainedOptunaSearch.restore_storage is None:
            raise RuntimeError("a restored ConstrainedOptunaSearch needs ConstrainedOptunaSearch.restore_storage")
        study = optuna.load_study(study_name=name, storage=ConstrainedOptunaSearch.restore_storage, sampler=sampler)
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        state["running"] = {tid: ot_compat.trial_of(study, by_number[n]) for tid, n in state["running"].items()
                            if n in by_number}
        self.__dict__.update(state, study=study)

    def started(self) -> set[str]:
        """Tune ids of this search's trials that finished (per the study) or are running (per this searcher).

        Counted from the study, not from Tune's restored state: a trial that ended after Tune's last state save
        before a driver kill is unknown to the restored Tune, which would otherwise start one trial too many."""
        done = {t.user_attrs[TUNE_ID_ATTR] for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get(SEARCH_ATTR) == self.search_id and t.state.is_finished()
                and ORPHAN_ATTR not in t.user_attrs}
        return done | (set(self.running) - self.completed)

    def suggest(self, trial_id: str):
        if trial_id not in self.running:
            if self.budget and len(self.started()) >= self.budget:
                return Searcher.FINISHED
            trial = self._ask_unseen()
            # recorded in the database at once, unlike the searcher's pickled state, which Tune saves now and then
            trial.set_user_attr(TUNE_ID_ATTR, trial_id)
            trial.set_user_attr(SEARCH_ATTR, self.search_id)
            self.running[trial_id] = trial
        return dict(self.running[trial_id].params)

    def _ask_unseen(self) -> optuna.trial.Trial:
        """A study trial whose params no earlier trial has. Multivariate TPE on a few discrete keys re-proposes
        configurations (each rerun costs a full trial and, with the config's fixed seed, teaches nothing), so a
        repeat is answered from its twin and the sampler asked again; after MAX_ASKS repeats the repeat runs."""
        for attempt in range(MAX_ASKS):
            trial = self.study.ask(fixed_distributions=self.space)
            twin = self._twin(trial)
            if twin is None or attempt == MAX_ASKS - 1:
                return trial
            self._answer_repeat(trial, twin)
        raise AssertionError("unreachable")

    def _twin(self, trial: optuna.trial.Trial) -> optuna.trial.FrozenTrial | None:
        # a RUNNING study trial this searcher does not run was asked before a driver kill and never ran (an
        # orphan): a resumed sampler proposes its params again, and they must run
        mine = {t.number for tid, t in self.running.items() if tid not in self.completed}
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        return next((t for t in self.study.get_trials(deepcopy=False, states=states)
                     if t.number != trial.number and t.params == trial.params
                     and (t.state != TrialState.RUNNING or t.number in mine)), None)

    def _answer_repeat(self, trial: optuna.trial.Trial, twin: optuna.trial.FrozenTrial) -> None:
        """The twin's answer, so the sampler learns as if the repeat had run: its values and constraint when it
        completed, pruned and infeasible when it was pruned; FAIL (which samplers ignore) while it is running."""
        trial.set_user_attr(REPEAT_ATTR, twin.number)
        if twin.state == TrialState.COMPLETE:
            for v in ot_compat.constraint_values(twin)[:1]:
                ot_compat.set_constraint(trial, FINAL_KEY, v)
            self.study.tell(trial, twin.values)
        elif twin.state == TrialState.PRUNED:
            ot_compat.set_constraint(trial, FINAL_KEY, math.inf)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        """The study's record of a Tune trial: the one this searcher asked, else (a Tune trial it never asked) the
        one carrying its id in the user attr written at suggest time."""
        asked = self.running.get(trial_id)
        for t in self.study.get_trials(deepcopy=False):
            if (t.number == asked.number) if asked is not None else (t.user_attrs.get(TUNE_ID_ATTR) == trial_id):
                return t
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.completed:
            return
        stored = self._stored(trial_id)
        if stored is None:
            return
        if trial_id not in self.running:
            # Tune saved the trial after the searcher's last save, then the driver was killed: this (restored)
            # searcher never asked it
            self.running[trial_id] = ot_compat.trial_of(self.study, stored)
        self.completed.add(trial_id)
        if stored.state.is_finished():  # told before a driver restart: keep the first answer
            return
        trial = self.running[trial_id]
        if error or not is_final(result):
            # errored, or stopped early (ASHA): never tell the truncated metrics as a finished result
            state, values = (TrialState.FAIL if error else TrialState.PRUNED), None
            if not error:
                # infeasible, as Optuna 4's constraints_func already says: without a constraint Optuna 5's TPE takes
                # a pruned trial for a feasible one, and while few trials are feasible it ranks pruned ones among
                # its good trials and samples near them again
                ot_compat.set_constraint(trial, FINAL_KEY, math.inf)
        else:
            accuracy = float(result[FINAL_KEY])
            if math.isfinite(accuracy):
                ot_compat.set_constraint(trial, FINAL_KEY, self.target_accuracy - accuracy)
            state, values = TrialState.COMPLETE, [result.get(self.size_metric), result.get(FINAL_KEY)]
            if any(v is None for v in values):
                state, values = TrialState.PRUNED, None
        try:
            self.study.tell(trial, values, state=state)
        except Exception as exc:  # noqa: BLE001 - e.g. a NaN objective
            log.warning("optuna tell(%s) for %s: %s", state.name, trial_id, exc)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))


def fail_orphans(study: optuna.Study) -> int:
    """After a search, RUNNING study trials are orphans (asked just before a driver kill, never run by Tune):
    mark them FAIL so the study holds no phantom running trials. Returns how many."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ot_compat.fail_with_attr(study, t, ORPHAN_ATTR, "asked before the driver was killed; never run")
        n += 1
    return n
