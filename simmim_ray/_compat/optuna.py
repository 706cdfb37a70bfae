"""Optuna 4 and 5 behind one API: trial constraints, intermediate values, and storage-level updates of trials by
their frozen record.

Constraints are stored as the trial system attr `constraints` (a list of values, feasible when all are <= 0) on both
Optunas: it is the one place optuna-dashboard (0.21) reads them (its feasible / infeasible plots and filters), and
both Optunas' samplers read it. Optuna 5's own `Trial.set_constraint(name, value)` stores `constraints:<name>`
instead, which the dashboard does not read; Optuna 5 still reads the list (as constraint "0"), so the list is
written directly there. Optuna 4 has no `set_constraint`: its TPE / NSGA-II samplers take a `constraints_func(trial)`,
called inside `tell` before the trial's state is stored, which stores the list itself. There the value goes on the
trial as a user attr before `tell`, where `constraints_func` reads it.
"""
from __future__ import annotations

import math
import warnings

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

HAS_SET_CONSTRAINT = hasattr(Trial, "set_constraint")
CONSTRAINTS_SYSTEM_ATTR = "constraints"  # the list optuna-dashboard reads, and Optuna 4's constraints_func writes
CONSTRAINT_ATTR = "constraint:"  # Optuna 4: user attr prefix our constraints_func reads
# user attrs of a PRUNED trial that was never measured: skipped before training, or stopped before its end. Such a
# trial has no constraint value: it is neither feasible nor infeasible, and both Optunas must see it so
SKIPPED_ATTR, STOPPED_ATTR = "skipped", "stopped"


def set_constraint(trial: Trial, name: str, value: float) -> None:
    """Feasible when <= 0; call before `tell`. `name` is kept only where Optuna 4 needs it (the list has none)."""
    if HAS_SET_CONSTRAINT:  # Optuna 5: the list, not `constraints:<name>`, so that the dashboard sees it
        if math.isnan(value):
            raise ValueError(f"constraint {name!r} of trial {trial.number} is NaN; a constraint must be a number")
        storage, tid = trial.storage, trial._trial_id
        have = storage.get_trial_system_attrs(tid).get(CONSTRAINTS_SYSTEM_ATTR) or []
        storage.set_trial_system_attr(tid, CONSTRAINTS_SYSTEM_ATTR, [*have, float(value)])
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


def report_intermediate(study: optuna.Study, frozen: FrozenTrial, step: int, value: float) -> bool:
    """Stores `value` as the RUNNING trial's intermediate value at `step` (what optuna-dashboard draws as its
    learning curve), once per step: a resumed trial reports its epochs again, and Optuna warns on a repeat. Only a
    single-objective study has intermediate values (Optuna refuses them otherwise). True when stored."""
    if len(study.directions) != 1 or frozen.state != TrialState.RUNNING or not math.isfinite(value):
        return False
    if step in frozen.intermediate_values:
        return False
    study._storage.set_trial_intermediate_value(frozen._trial_id, step, float(value))
    return True


def tell_pruned(study: optuna.Study, trial: Trial) -> None:
    """`study.tell(trial, state=PRUNED)` without the value Optuna's tell gives a pruned trial: its last intermediate
    value as its objective value. Our intermediate values are the proxy's error, not the objective (the size): a
    stopped trial would show as "params = 0.8". The same two steps as Optuna's tell (4.0 to 5.1): the sampler's
    `after_trial`, then the state, with no values."""
    frozen = study._storage.get_trial(trial._trial_id)
    try:
        study.sampler.after_trial(study, frozen, TrialState.PRUNED, None)
    finally:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.PRUNED, None)


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
    return [float(v) for v in attrs.get(CONSTRAINTS_SYSTEM_ATTR, []) or []]


def trial_of(study: optuna.Study, frozen: FrozenTrial) -> Trial:
    """A live `Trial` of a stored (e.g. RUNNING) trial, to set attrs and constraints on before `tell`."""
    return Trial(study, frozen._trial_id)


def fail_with_attr(study: optuna.Study, frozen: FrozenTrial, key: str, value) -> None:
    """Marks a RUNNING trial FAIL with a user attr, directly in the storage: no `tell`, so the sampler's
    `after_trial` does not run for a trial that never ran."""
    study._storage.set_trial_user_attr(frozen._trial_id, key, value)
    study._storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
