"""What the searcher learns from the study's own trials, training nothing: the incumbent (the smallest size of a
trial that finished feasible), whether a sample can still beat it (one that cannot is told PRUNED with the reason,
`skipped`, and never trained), and a sample that repeats an earlier trial (answered from that trial, Optuna's
recipe for repeated samples). search/searcher.py asks these before it hands a sample to Tune."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from simmim_ray._compat.optuna import SKIPPED_ATTR, STOPPED_ATTR, constraint_values, set_constraint

REPEAT_ATTR = "repeat_of"  # a sample that repeated this earlier study trial's params, answered without running
# SKIPPED_ATTR (_compat/optuna.py): a sample that could not beat the incumbent, never trained (why)


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    """Every constraint of the trial is met (`target - accuracy <= 0`)."""
    vals = constraint_values(t)
    return bool(vals) and all(v <= 0 for v in vals)


def incumbent(study: optuna.Study) -> float | None:
    """The smallest size of a trial that finished feasible (in this study), or None."""
    sizes = [t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if t.values and feasible(t)]
    return min(sizes, default=None)


def skip_if_cannot_win(study: optuna.Study, trial: optuna.trial.Trial, size: float | None, size_metric: str) -> bool:
    """A sample not strictly smaller than the incumbent cannot change the answer: told PRUNED with the reason
    (True). A sample of unknown size, or before any trial is feasible, runs (False)."""
    best = incumbent(study)
    if size is None or best is None or size < best:
        return False
    trial.set_user_attr(SKIPPED_ATTR, f"{size_metric} {size:,.0f} >= the smallest feasible {best:,.0f}")
    study.tell(trial, state=TrialState.PRUNED)
    return True


def twin_of(study: optuna.Study, trial: optuna.trial.Trial, mine: set[int]) -> optuna.trial.FrozenTrial | None:
    """An earlier study trial with the same params (`mine`: numbers of the trials this searcher runs now).

    A RUNNING study trial this searcher does not run was asked before a driver kill and never ran (an orphan): a
    resumed sampler proposes its params again, and they must run. A skipped sample is no twin: once the incumbent
    changes, the same params are judged again."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return next((t for t in study.get_trials(deepcopy=False, states=states)
                 if t.number != trial.number and t.params == trial.params and SKIPPED_ATTR not in t.user_attrs
                 and (t.state != TrialState.RUNNING or t.number in mine)), None)


def answer_repeat(study: optuna.Study, trial: optuna.trial.Trial, twin: optuna.trial.FrozenTrial,
                  constraint_key: str) -> None:
    """The twin's answer, so the sampler learns as if the repeat had run: its values and constraint when it
    completed, pruned (with the twin's reason) when it was pruned; FAIL (which samplers ignore) while it runs."""
    trial.set_user_attr(REPEAT_ATTR, twin.number)
    if twin.state == TrialState.COMPLETE:
        for v in constraint_values(twin)[:1]:
            set_constraint(trial, constraint_key, v)
        study.tell(trial, twin.values)
    elif twin.state == TrialState.PRUNED:
        trial.set_user_attr(STOPPED_ATTR, twin.user_attrs.get(STOPPED_ATTR, "pruned"))
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
