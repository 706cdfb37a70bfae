"""The search's goal as one Optuna objective, through Tune's public `Searcher` and Optuna's ask / tell.

The goal is lexicographic: meet the target, then be as small as possible. So the study has ONE objective, the size
(minimise), and the accuracy is a constraint, `target - accuracy <= 0`, set before `tell`, which TPE / GP samplers
read. Large accurate models are then no better than small ones that miss the target (a Pareto objective would count
them as good trials); the Pareto front stays in the report, computed from the ledger.

The size of a configuration is known before it trains (`size_of`, search/size.py). Once a trial is feasible, a
sample that is not strictly smaller than the smallest feasible size (the incumbent) cannot change the answer: it is
recorded as PRUNED with the reason (`skipped`), never trained, and the sampler asked again; when the sampler keeps
proposing such configurations, the next one comes from the configurations of the space that are smaller and untried,
and when there are none the search is finished: its answer cannot improve.

What optuna-dashboard shows of the study (checked against the dashboard itself,
tests/unit/search/test_dashboard.py): the objective's name (the size metric), the target and size metric as study
user attrs, each trial's constraint where the dashboard reads it (_compat/optuna.py), each epoch's proxy as an
intermediate value (its learning curves), and an infeasible trial's objective as +inf: the goal ranks any trial that
misses the target below every one that meets it, and the dashboard badges as "Best Trial" the smallest objective
value whatever the constraints say. Samplers read an infeasible trial by its constraint alone, so nothing they learn
changes; its size stays in the user attr `size`.

Also: a trial stopped early (by the scheduler) is told as PRUNED with the reason, never as a measured accuracy; a
sample that repeats an earlier trial is answered from that trial without running (Optuna's recipe for repeated
samples); and the search stops starting trials when its compute budget (trial-epochs or trial seconds) is spent.
"""
from __future__ import annotations

import logging
import math
import pickle
import uuid
from typing import Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from simmim_ray._compat.optuna import (SKIPPED_ATTR, STOPPED_ATTR, describe_study, report_intermediate, set_constraint,
                                       tell_pruned, trial_of)
from simmim_ray.metrics import EPOCH, PROXY_KNN
from simmim_ray.search.incumbent import answer_repeat, incumbent, skip_if_cannot_win, twin_of
from simmim_ray.search.study import (FINAL_KEY, FINISHED_ATTR, ORPHAN_ATTR, SEARCH_ATTR, SIZE_ATTR, TUNE_ID_ATTR,
                                     is_final, make_sampler)
from simmim_ray.search.untried import smaller_untried

log = logging.getLogger(__name__)

STOPPED_ATTR = STOPPED_ATTR  # a trial the scheduler stopped before its end (why)
# the per-epoch intermediate value: the proxy's error, so that lower is better as for the objective (TPE ranks a
# pruned trial by its last intermediate value in the study's direction: the raw accuracy would rank it backwards)
INTERMEDIATE = f"1 - {PROXY_KNN} (k-NN error on validation) per pre-training epoch; lower is better"
# samples per suggestion before an untried configuration smaller than the incumbent is taken instead of the
# sampler's proposals: only a nearly exhausted space, or a sampler fixed on the incumbent's region, gets there
MAX_ASKS = 32
TIME_KEY = "time_total_s"  # Tune's wall seconds of a trial so far, in every result


class ConstrainedOptunaSearch(Searcher):
    def __init__(self, space: dict, size_metric: str, target_accuracy: float, storage=None, study_name=None,
                 seed: int = 0, points_to_evaluate=None, sampler: str = "tpe", budget: int = 0,
                 size_of: Callable[[dict], float] | None = None, budget_epochs: int = 0,
                 budget_seconds: float = 0.0) -> None:
        """`budget`: trials this search may start in all (0: Tune's num_samples alone decides); `budget_epochs` /
        `budget_seconds`: compute, in pre-training epochs or wall seconds summed over trials, after which no trial
        starts (0: none). `size_of(params)`: a configuration's size before it trains (None: nothing is skipped)."""
        super().__init__(metric=size_metric, mode="min")
        self.space = dict(space)  # dotted config key -> Optuna distribution
        self.target_accuracy = float(target_accuracy)
        self.size_metric = size_metric
        self.budget = budget
        self.budget_epochs, self.budget_seconds = budget_epochs, float(budget_seconds)
        self.size_of = size_of
        self.seed = seed
        self.study = optuna.create_study(storage=storage, sampler=make_sampler(sampler, seed),
                                         pruner=optuna.pruners.NopPruner(), study_name=study_name or "optuna",
                                         directions=self.directions(), load_if_exists=True)
        describe_study(self.study, self.metric_names(), {"target_accuracy": self.target_accuracy,
                                                         "size_metric": size_metric,
                                                         "intermediate_values": INTERMEDIATE})
        for point in points_to_evaluate or []:
            self.study.enqueue_trial(point)
        self.running: dict[str, optuna.trial.Trial] = {}  # Tune trial id -> its asked study trial
        self.completed: set[str] = set()
        self.spent: dict[str, tuple[int, float]] = {}  # Tune trial id -> (epochs, seconds) it has run
        self._finished("")
        # marks this search's study trials: a database and study name may be shared with earlier searches
        self.search_id = uuid.uuid4().hex

    # ---- the objective (a benchmark of an earlier release overrides these two) ----------------------------------
    def directions(self) -> list[str]:
        return ["minimize"]

    def metric_names(self) -> list[str]:
        return [self.size_metric]

    def values(self, result: dict) -> list | None:
        """The objective values of a final result; None when it lacks one (told as PRUNED). +inf for a trial below
        the target (see the module's docstring: the goal ranks it below any feasible one)."""
        size = result.get(self.size_metric)
        if size is None:
            return None
        accuracy = float(result.get(FINAL_KEY, math.nan))
        return [size] if accuracy >= self.target_accuracy else [math.inf]

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
        state["running"] = {tid: trial_of(study, by_number[n]) for tid, n in state["running"].items()
                            if n in by_number}
        state.setdefault("spent", {})
        self.__dict__.update(state, study=study)
        self._finished("")  # a resumed search may get further

    def started(self) -> set[str]:
        """Tune ids of this search's trials that finished (per the study) or are running (per this searcher).

        Counted from the study, not from Tune's restored state: a trial that ended after Tune's last state save
        before a driver kill is unknown to the restored Tune, which would otherwise start one trial too many."""
        done = {t.user_attrs[TUNE_ID_ATTR] for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get(SEARCH_ATTR) == self.search_id and t.state.is_finished()
                and TUNE_ID_ATTR in t.user_attrs and ORPHAN_ATTR not in t.user_attrs}
        return done | (set(self.running) - self.completed)

    def spent_epochs(self) -> int:
        return sum(e for e, _ in self.spent.values())

    def spent_seconds(self) -> float:
        return sum(t for _, t in self.spent.values())

    def incumbent(self) -> float | None:
        """The smallest size of a trial that finished feasible (in this study), or None."""
        return incumbent(self.study)

    def _out_of_budget(self) -> str:
        if self.budget and len(self.started()) >= self.budget:
            return f"{self.budget} trials started"
        if self.budget_epochs and self.spent_epochs() >= self.budget_epochs:
            return f"budget of {self.budget_epochs} trial-epochs spent"
        if self.budget_seconds and self.spent_seconds() >= self.budget_seconds:
            return f"budget of {self.budget_seconds:g} trial-seconds spent"
        return ""

    def suggest(self, trial_id: str):
        if trial_id not in self.running:
            why = self._out_of_budget()
            trial = None if why else self._ask_next()
            if trial is None:
                best = self.incumbent()
                self._finished(why or ("every configuration of the space has been tried" if best is None else
                                       f"no untried configuration is smaller than the smallest feasible one "
                                       f"({best:,.0f} {self.size_metric})"))
                return Searcher.FINISHED
            # recorded in the database at once, unlike the searcher's pickled state, which Tune saves now and then
            trial.set_user_attr(TUNE_ID_ATTR, trial_id)
            trial.set_user_attr(SEARCH_ATTR, self.search_id)
            self.running[trial_id] = trial
        return dict(self.running[trial_id].params)

    def _finished(self, why: str) -> None:
        if self.study.user_attrs.get(FINISHED_ATTR, "") != why:
            self.study.set_user_attr(FINISHED_ATTR, why)

    def _ask_next(self) -> optuna.trial.Trial | None:
        """A study trial to run: unseen params (a repeat is answered from its twin), smaller than the incumbent
        (a larger sample is skipped). After MAX_ASKS samples that were neither, an untried configuration of the
        space smaller than the incumbent, at random; None when there is none."""
        for _ in range(MAX_ASKS):
            trial = self.study.ask(fixed_distributions=self.space)
            mine = {t.number for tid, t in self.running.items() if tid not in self.completed}
            twin = twin_of(self.study, trial, mine)
            if twin is not None:
                answer_repeat(self.study, trial, twin, FINAL_KEY)
            elif not skip_if_cannot_win(self.study, trial, self._record_size(trial), self.size_metric):
                return trial
        tried = [t.params for t in self.study.get_trials(deepcopy=False) if SKIPPED_ATTR not in t.user_attrs]
        pick = smaller_untried(self.space, tried, self.size_of, self.incumbent(), seed=self.seed + len(tried))
        if pick is None:
            return None
        self.study.enqueue_trial(pick)
        trial = self.study.ask(fixed_distributions=self.space)
        self._record_size(trial)
        return trial

    def _record_size(self, trial: optuna.trial.Trial) -> float | None:
        if self.size_of is None:
            return None
        try:
            size = float(self.size_of(trial.params))
        except Exception as exc:  # noqa: BLE001 - an invalid config fails its trial, which reports it
            log.warning("size of %s: %s", trial.params, exc)
            return None
        trial.set_user_attr(SIZE_ATTR, size)
        return size

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        """The study's record of a Tune trial: the one this searcher asked, else (a Tune trial it never asked) the
        one carrying its id in the user attr written at suggest time."""
        asked = self.running.get(trial_id)
        for t in self.study.get_trials(deepcopy=False):
            if (t.number == asked.number) if asked is not None else (t.user_attrs.get(TUNE_ID_ATTR) == trial_id):
                return t
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        epochs, seconds = self.spent.get(trial_id, (0, 0.0))
        self.spent[trial_id] = (max(epochs, int(result.get(EPOCH, 0) or 0)),
                                max(seconds, float(result.get(TIME_KEY, 0.0) or 0.0)))
        self._report_proxy(trial_id, result)

    def _report_proxy(self, trial_id: str, result: dict) -> None:
        """The epoch's proxy as the study trial's intermediate value (INTERMEDIATE), for optuna-dashboard's
        learning curves; nothing for a result without one, or once the trial is told."""
        proxy, epoch = result.get(PROXY_KNN), result.get(EPOCH)
        if proxy is None or epoch is None or trial_id in self.completed:
            return
        stored = self._stored(trial_id)
        if stored is not None:
            report_intermediate(self.study, stored, int(epoch), 1.0 - float(proxy))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        if trial_id in self.completed:
            return
        stored = self._stored(trial_id)
        if stored is None:
            return
        if trial_id not in self.running:
            # Tune saved the trial after the searcher's last save, then the driver was killed: this (restored)
            # searcher never asked it
            self.running[trial_id] = trial_of(self.study, stored)
        self.completed.add(trial_id)
        if stored.state.is_finished():  # told before a driver restart: keep the first answer
            return
        trial = self.running[trial_id]
        if result and SIZE_ATTR not in stored.user_attrs and result.get(self.size_metric) is not None:
            # the size an infeasible trial's +inf objective does not show (set at suggest time where size_of is)
            trial.set_user_attr(SIZE_ATTR, float(result[self.size_metric]))
        values = None
        if error:
            state = TrialState.FAIL
        elif not is_final(result):
            # stopped early: what it is, PRUNED with the reason, never its truncated metrics as a measurement
            state = TrialState.PRUNED
            trial.set_user_attr(STOPPED_ATTR, self._stop_reason(result or {}))
        else:
            accuracy = float(result[FINAL_KEY])
            if math.isfinite(accuracy):
                set_constraint(trial, FINAL_KEY, self.target_accuracy - accuracy)
            values = self.values(result)
            state = TrialState.COMPLETE if values is not None else TrialState.PRUNED
        try:
            if state == TrialState.PRUNED:  # its intermediate values are the proxy's, not the objective
                tell_pruned(self.study, trial)
            else:
                self.study.tell(trial, values, state=state)
        except Exception as exc:  # noqa: BLE001 - e.g. a NaN objective
            log.warning("optuna tell(%s) for %s: %s", state.name, trial_id, exc)

    def _stop_reason(self, result: dict) -> str:
        size, best = result.get(self.size_metric), self.incumbent()
        if size is not None and best is not None and size >= best:
            return f"{self.size_metric} {size:,.0f} cannot beat the smallest feasible {best:,.0f}"
        return f"stopped early at epoch {result.get(EPOCH, '?')}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))
