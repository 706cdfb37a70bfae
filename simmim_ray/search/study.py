"""The search's Optuna study around the searcher (search/searcher.py): the sampler that proposes its trials, the
user attrs that mark them (read back by the driver, the recorder and a resumed search), which result a trial is told
from, and the orphans a killed driver leaves in it (marked FAIL after the search)."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from simmim_ray._compat.optuna import fail_with_attr, tpe_sampler
from simmim_ray.metrics import VAL_ACCURACY

TUNE_ID_ATTR = "tune_trial_id"
SEARCH_ATTR = "search_id"
ORPHAN_ATTR = "orphaned"  # a study trial asked just before a driver kill, never run
SIZE_ATTR = "size"  # the trial's size, known before it trains
FINISHED_ATTR = "search_finished"  # study user attr: why the searcher proposed no more trials ("" while it does)
FINAL_KEY = VAL_ACCURACY  # present only in a trial's final report (after the fine-tune / probe)


def is_final(result: dict | None) -> bool:
    return bool(result) and FINAL_KEY in result and result.get("done", True)


def make_sampler(sampler: str, seed: int) -> optuna.samplers.BaseSampler:
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # independent (univariate) TPE: on the default space's benchmark table it reached the smallest size that
    # confirms on validation in 28% of 50 seeds at 1x the default budget and 92% at 2x, multivariate TPE in 14% and
    # 80% (a what-if replay, benchmarks/replay_methods.py); constraints come from the trial
    return tpe_sampler(seed=seed, multivariate=False, n_startup_trials=4)


def fail_orphans(study: optuna.Study) -> int:
    """After a search, RUNNING study trials are orphans (asked just before a driver kill, never run by Tune):
    mark them FAIL so the study holds no phantom running trials. Returns how many."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_with_attr(study, t, ORPHAN_ATTR, "asked before the driver was killed; never run")
        n += 1
    return n
