"""Constraint-aware Optuna search through Ray Tune.

Ray's `OptunaSearch` tells Optuna only objective values, and tells a trial that ASHA stopped as COMPLETE with its
truncated metrics. This subclass (a) sets `target - accuracy` as an Optuna constraint before `tell`, which
TPE / NSGA-II read (feasible when <= 0), and (b) tells early-stopped trials as PRUNED so their truncated accuracy
never reaches the sampler or the Pareto front. Objectives: size (minimise), accuracy (maximise).
"""
from __future__ import annotations

import logging
import math

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)

FINAL_KEY = "accuracy"  # present only in a trial's final report (after the fine-tune / probe)


def is_final(result: dict | None) -> bool:
    return bool(result) and FINAL_KEY in result and result.get("done", True)


class ConstrainedOptunaSearch(OptunaSearch):
    def __init__(self, space: dict, size_metric: str, target_accuracy: float, storage=None, study_name=None,
                 seed: int = 0, points_to_evaluate=None, sampler: str = "tpe") -> None:
        self.target_accuracy = float(target_accuracy)
        self.size_metric = size_metric
        if sampler == "random":
            s = optuna.samplers.RandomSampler(seed=seed)
        else:
            # multivariate TPE models the width/depth/heads interactions jointly; constraints come from the trial
            s = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4)
        super().__init__(space=space, metric=[size_metric, FINAL_KEY], mode=["min", "max"], sampler=s,
                         storage=storage, study_name=study_name, points_to_evaluate=points_to_evaluate)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
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
            ot_trial.set_constraint("accuracy", self.target_accuracy - accuracy)
        super().on_trial_complete(trial_id, result, error)


def is_feasible(t: optuna.trial.FrozenTrial) -> bool:
    """Optuna's rule: feasible when every constraint value is <= 0 (`set_constraint` stores them here)."""
    vals = [v for k, v in t.system_attrs.items() if k.startswith("constraints:")]
    return bool(vals) and all(float(v) <= 0 for v in vals)
