"""Optuna 4 and 5 behind one API: trial constraints, and storage-level updates of trials by their frozen record.

Optuna 5 stores a constraint with `Trial.set_constraint(name, value)` (system attr `constraints:<name>`) and its
samplers read it. Optuna 4 has no `set_constraint`: its TPE / NSGA-II samplers take a `constraints_func(trial)`,
called inside `tell` before the trial's state is stored, which stores the values as the system attr `constraints`
(a list). There the value goes on the trial as a user attr before `tell`, where `constraints_func` reads it.
"""
from __future__ import annotations

import math
import warnings

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

HAS_SET_CONSTRAINT = hasattr(Trial, "set_constraint")
CONSTRAINT_ATTR = "constraint:"  # Optuna 4: user attr prefix our constraints_func reads
# user attrs of a PRUNED trial that was never measured: skipped before training, or stopped before its end. Such a
# trial has no constraint value: it is neither feasible nor infeasible, and both Optunas must see it so
SKIPPED_ATTR, STOPPED_ATTR = "skipped", "stopped"


def set_constraint(trial: Trial, name: str, value: float) -> None:
    """Feasible when <= 0; call before `tell`."""
    if HAS_SET_CONSTRAINT:
        trial.set_constraint(name, value)
    else:
        trial.set_user_attr(CONSTRAINT_ATTR + name, float(value))


def constraints_func(trial: FrozenTrial) -> list[float]:
    """Optuna 4: the constraint values stored by `set_constraint`; none for a trial that was never measured (as
    Optuna 5 stores none), infeasible (inf) for a measured one without a value (a non-finite accuracy)."""
    vals = [float(v) for k, v in sorted(trial.user_attrs.items()) if k.startswith(CONSTRAINT_ATTR)]
    if vals or SKIPPED_ATTR in trial.user_attrs or STOPPED_ATTR in trial.user_attrs:
        return vals
    return [math.inf]


def describe_study(study: optuna.Study, metric_names: list[str], attrs: dict) -> None:
    """Names the objectives and stores the search's target and size metric on the study, where dashboards read
    them (set_metric_names exists from Optuna 3.2)."""
    if getattr(study, "metric_names", None) != metric_names:
        with warnings.catch_warnings():  # experimental in name only since 3.2; dashboards read it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names)
    for k, v in attrs.items():
        if study.user_attrs.get(k) != v:
            study.set_user_attr(k, v)


def tpe_sampler(**kwargs) -> optuna.samplers.TPESampler:
    """A TPE sampler that reads the constraints `set_constraint` stores, on this Optuna."""
    if HAS_SET_CONSTRAINT:
        return optuna.samplers.TPESampler(**kwargs)
    with warnings.catch_warnings():  # Optuna 4 calls constraints_func experimental; it is what its TPE reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(constraints_func=constraints_func, **kwargs)


def constraint_values(trial: FrozenTrial) -> list[float]:
    """The constraint values Optuna stored for `trial` (empty: none)."""
    got = getattr(trial, "constraints", None)  # Optuna 5: a dict, reading both storage formats
    if isinstance(got, dict):
        return [float(v) for v in got.values()]
    attrs = trial.system_attrs  # Optuna 4: the list constraints_func returned
    return [float(v) for v in attrs.get("constraints", []) or []]


def trial_of(study: optuna.Study, frozen: FrozenTrial) -> Trial:
    """A live `Trial` of a stored (e.g. RUNNING) trial, to set attrs and constraints on before `tell`."""
    return Trial(study, frozen._trial_id)


def fail_with_attr(study: optuna.Study, frozen: FrozenTrial, key: str, value) -> None:
    """Marks a RUNNING trial FAIL with a user attr, directly in the storage: no `tell`, so the sampler's
    `after_trial` does not run for a trial that never ran."""
    study._storage.set_trial_user_attr(frozen._trial_id, key, value)
    study._storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
