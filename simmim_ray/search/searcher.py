"""Constraint-aware Optuna search through Ray Tune.

Ray's `OptunaSearch` tells Optuna only objective values, and tells a trial that ASHA stopped as COMPLETE with its
truncated metrics. This subclass (a) sets `target - accuracy` as an Optuna constraint before `tell`, which
TPE / NSGA-II read (feasible when <= 0), and (b) tells early-stopped trials as PRUNED so their truncated accuracy
never reaches the sampler or the Pareto front. Objectives: size (minimise), accuracy (maximise).
"""
from __future__ import annotations

import logging
import math
import pickle
import uuid

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from simmim_ray.metrics import VAL_ACCURACY

log = logging.getLogger(__name__)

TUNE_ID_ATTR = "tune_trial_id"
SEARCH_ATTR = "search_id"
ORPHAN_ATTR = "orphaned"  # a study trial asked just before a driver kill, never run
FINAL_KEY = VAL_ACCURACY  # present only in a trial's final report (after the fine-tune / probe)


def is_final(result: dict | None) -> bool:
    return bool(result) and FINAL_KEY in result and result.get("done", True)


class ConstrainedOptunaSearch(OptunaSearch):
    def __init__(self, space: dict, size_metric: str, target_accuracy: float, storage=None, study_name=None,
                 seed: int = 0, points_to_evaluate=None, sampler: str = "tpe", budget: int = 0) -> None:
        self.target_accuracy = float(target_accuracy)
        self.size_metric = size_metric
        self.budget = budget  # trials this search may start in all (0: Tune's num_samples alone decides)
        if sampler == "random":
            s = optuna.samplers.RandomSampler(seed=seed)
        else:
            # multivariate TPE models the width/depth/heads interactions jointly; constraints come from the trial
            s = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4)
        super().__init__(space=space, metric=[size_metric, FINAL_KEY], mode=["min", "max"], sampler=s,
                         storage=storage, study_name=study_name, points_to_evaluate=points_to_evaluate)
        # marks this search's study trials: a database and study name may be shared with earlier searches
        self._search_id = uuid.uuid4().hex

    # The study a restored searcher continues, set by the search driver before Tuner.restore. Tune pickles the
    # searcher into the experiment (tuner.pkl, searcher-state-*.pkl); pickled with it, the study's database
    # would be the one where the experiment was then (unpickling even connects to it): for a copied or moved
    # experiment, the original's study.db. So the pickles carry no database, and a restored searcher continues
    # the study in `restore_storage`. One search per driver process.
    restore_storage = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_storage"] = state["_ot_study"] = None
        state["_ot_trials"] = {tid: getattr(t, "_trial_id", t) for tid, t in self._ot_trials.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))
        self._rebind()

    def _rebind(self) -> None:
        """Continue the study in `restore_storage` (a restored searcher, or one whose storage is not that one)."""
        want = ConstrainedOptunaSearch.restore_storage
        if self._ot_study is not None and (want is None or self._storage is want):
            return
        if want is None:
            raise RuntimeError("a restored ConstrainedOptunaSearch needs ConstrainedOptunaSearch.restore_storage")
        self._storage = want
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=want, sampler=self._sampler)
        self._ot_trials = {tid: optuna.trial.Trial(self._ot_study, getattr(t, "_trial_id", t))
                           for tid, t in self._ot_trials.items()}

    def started(self) -> set[str]:
        """Tune ids of this search's trials that finished (per the study) or are running (per this searcher).

        Counted from the study, not from Tune's restored state: a trial that ended after Tune's last state save
        before a driver kill is unknown to the restored Tune, which would otherwise start one trial too many."""
        done = {t.user_attrs[TUNE_ID_ATTR] for t in self._ot_study.get_trials(deepcopy=False)
                if t.user_attrs.get(SEARCH_ATTR) == self._search_id and t.state.is_finished()
                and ORPHAN_ATTR not in t.user_attrs}
        return done | (set(self._ot_trials) - self._completed_trials)

    def suggest(self, trial_id: str):
        self._rebind()
        if self.budget and trial_id not in self._ot_trials and len(self.started()) >= self.budget:
            return Searcher.FINISHED
        params = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            # recorded in the database at once, unlike the searcher's pickled state, which Tune saves now and then
            self._ot_trials[trial_id].set_user_attr(TUNE_ID_ATTR, trial_id)
            self._ot_trials[trial_id].set_user_attr(SEARCH_ATTR, self._search_id)
        return params

    def _lookup(self, trial_id: str):
        """The study trial of a Tune trial this (restored) searcher does not know: Tune saved the trial after the
        searcher's last save, then the driver was killed."""
        for t in self._ot_study.get_trials(deepcopy=False):
            if t.user_attrs.get(TUNE_ID_ATTR) == trial_id:
                return optuna.trial.Trial(self._ot_study, t._trial_id)
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._rebind()
        if trial_id in self._completed_trials:
            return
        if trial_id not in self._ot_trials:
            found = self._lookup(trial_id)
            if found is None:
                return
            self._ot_trials[trial_id] = found
        ot_trial = self._ot_trials[trial_id]
        stored = self._ot_study._storage.get_trial(ot_trial._trial_id)
        if stored.state.is_finished():  # told before a driver restart: keep the first answer
            self._completed_trials.add(trial_id)
            return
        if error or not is_final(result):
            # errored, or stopped early (ASHA): never tell the truncated metrics as a finished result
            state = TrialState.FAIL if error else TrialState.PRUNED
            try:
                self._ot_study.tell(ot_trial, state=state)
            except Exception as exc:  # noqa: BLE001 - e.g. already told before a driver restart
                log.warning("optuna tell(%s) for %s: %s", state.name, trial_id, exc)
            self._completed_trials.add(trial_id)
            return
        accuracy = float(result[FINAL_KEY])
        if math.isfinite(accuracy):
            ot_trial.set_constraint(FINAL_KEY, self.target_accuracy - accuracy)
        super().on_trial_complete(trial_id, result, error)


def fail_orphans(study: optuna.Study) -> int:
    """After a search, RUNNING study trials are orphans (asked just before a driver kill, never run by Tune):
    mark them FAIL so the study holds no phantom running trials. Returns how many."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, ORPHAN_ATTR, "asked before the driver was killed; never run")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n
