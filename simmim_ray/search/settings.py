"""A search's settings: everything `simmim-ray search` decided from its flags and space, stored in
<experiment>/settings.json so that `--resume` continues the same search.

The dataclass is the one source of the search's defaults: the command line states none of its own (its help text
reads them from here), and a settings.json read back is checked against the same fields and rules. Pure Python.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from simmim_ray.errors import UserError
from simmim_ray.metrics import PROXY_KNN, SIZE_METRICS
from simmim_ray.search.record.db_url import without_password
from simmim_ray.train.loop_config import SEED_JOB_MODES

SCHEDULERS = ("constraint", "asha", "fifo")  # search/schedulers.py
FEASIBILITY = ("mean", "lower-bound")  # what of a candidate's fresh-seed validation accuracy meets the target
RESEED = SEED_JOB_MODES[:2]  # what confirmation re-seeds: a seed job's modes but the scratch baseline's
SAMPLERS = ("tpe", "random")
DEFAULT_SPACE = "digits_quick"  # a bundled space (search_spaces/)
DEFAULT_ROOT = "experiments"  # where new experiments go: <root>/<name>/
# What `--resume` may change: the budget, where the search runs, and the answer stage after it (the trials do not
# depend on it; confirmation results are kept per seed and re-seed mode). Everything else defines the search.
RESUMABLE = ("trials", "budget_epochs", "budget_seconds", "max_concurrent", "address", "confirm", "confirm_seeds",
             "confirm_reseed", "feasibility")
# settings.json written before the experiment root and the study database had distinct names
LEGACY_KEYS = {"storage": "root", "study_storage": "study_db"}


@dataclass(kw_only=True)
class SearchSettings:
    space_path: str  # the space file the search started from (absolute; its copy is in <experiment>/inputs/)
    name: str  # the experiment's name when created, and the Optuna study's name
    root: str  # where the experiment was created (absolute path or URI); a moved experiment runs where it is
    target_accuracy: float
    trials: int = 8  # trials started at most (with a budget: a cap)
    # compute after which no trial starts: pre-training epochs, or trial wall seconds, summed over trials (0: none);
    # what early stopping and skipping save buys more configurations
    budget_epochs: int = 0
    budget_seconds: float = 0.0
    size_metric: str = "params"
    # "constraint": stop a trial once it cannot change the answer (search/schedulers.py ConstraintStopper)
    scheduler: str = "constraint"
    sampler: str = "tpe"
    asha_metric: str = PROXY_KNN
    grace_period: int = 2  # the first rung (ASHA's, or the constraint stopper's: rungs every grace_period epochs)
    reduction_factor: int = 3
    # the constraint stopper stops a trial whose proxy at a rung is below every feasible trial's by more than this;
    # 1 (accuracy can differ by no more): never. Off by default: on the default space the proxy ranks feasibility
    # too weakly (docs/proxy_correlation.md), and stopping on it (margins 0.05, 0.1) cost more answers than the
    # compute it saved bought (benchmarks/RESULTS.md, search_replay); a trial that cannot beat the incumbent is
    # still stopped
    stop_margin: float = 1.0
    # a final validation accuracy within 2 standard errors of the target is measured again with this many more
    # fine-tune seeds (their mean decides feasibility); 0: never
    remeasure_seeds: int = 2
    max_concurrent: int = 0  # 0: follow the cluster's resources
    workers_per_trial: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0  # used with `gpu` only
    gpu: bool = False
    max_failures: int = 1
    seed: int = 0
    # Optuna storage URL; "": <experiment>/study.db (SQLite). A password in it is kept in memory only (to_dict and
    # repr leave it out: search/record/db_url.py)
    study_db: str = field(default="", repr=False)
    points: str = ""
    # size-ladder points tried first (capped at half the trials); 0: off. Off by default: on the default digits
    # search its rungs cost 3 of 8 trials, and 1 of 5 seeds ended with no confirmed answer
    # (benchmarks/search_efficiency.py)
    warm_start: int = 0
    config_path: str = ""
    overrides: tuple = ()
    address: str = ""
    # after the search (search/answer/): the `confirm` smallest trials feasible on validation are measured again
    # with `confirm_seeds` fresh seeds (re-seeding `confirm_reseed`), chosen on validation, test reported; 0: off
    confirm: int = 3
    confirm_seeds: int = 3
    confirm_reseed: str = "finetune"
    feasibility: str = "mean"

    def to_dict(self) -> dict[str, Any]:
        """What settings.json and the ledger keep: everything but a database password."""
        return {**asdict(self), "overrides": list(self.overrides), "study_db": without_password(self.study_db)}

    def defining(self) -> dict[str, Any]:
        """The fields that define the search (all but RESUMABLE ones): a resumed search must keep them."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE}


def default(name: str) -> Any:
    """The default of one field (what the command line uses when its flag is not given)."""
    f = next(f for f in fields(SearchSettings) if f.name == name)
    if f.default is MISSING:
        raise KeyError(f"SearchSettings.{name} has no default")
    return f.default


_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "tuple": (list, tuple)}


def from_dict(d: Any, where: str) -> SearchSettings:
    """Settings read back from a file (`where` names it in every message): known keys only (the names older
    versions wrote are accepted), each of its type, and the rules of `check`."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: must hold a JSON object of search settings, but got {type(d).__name__}")
    d = {LEGACY_KEYS.get(k, k): v for k, v in d.items()}
    # a search from before confirmation existed answered with its validation winner: keep reporting that one
    d.setdefault("confirm", 0)
    # nor did it measure borderline trials again
    d.setdefault("remeasure_seeds", 0)
    known = {f.name: f for f in fields(SearchSettings)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown key `{unknown[0]}` (known: {', '.join(known)})")
    missing = [k for k, f in known.items() if f.default is MISSING and k not in d]
    if missing:
        raise UserError(f"{where}: required key `{missing[0]}` is missing")
    for k, v in d.items():
        types = _TYPES[known[k].type]
        if not isinstance(v, types) or (isinstance(v, bool) and known[k].type != "bool"):
            raise UserError(f"{where}: `{k}` must be {known[k].type}, but got {v!r} ({type(v).__name__})")
        if known[k].type == "tuple" and not all(isinstance(x, str) for x in v):
            raise UserError(f"{where}: `{k}` must be a list of strings, but got {v!r}")
    s = SearchSettings(**{**d, **({"overrides": tuple(d["overrides"])} if "overrides" in d else {})})
    for k in ("target_accuracy", "cpus_per_worker", "gpus_per_worker", "budget_seconds", "stop_margin"):
        setattr(s, k, float(getattr(s, k)))
    check(s, where)
    return s


def check(s: SearchSettings, where: str) -> None:
    """The rules every stored search obeys (the command line's flags are checked against the same bounds)."""
    rules = [
        (bool(s.name) and "/" not in s.name, "`name` must be a non-empty name without '/'", s.name),
        (0 < s.target_accuracy <= 1, "`0 < target_accuracy <= 1` must hold", s.target_accuracy),
        (s.trials >= 1, "`trials >= 1` must hold", s.trials),
        (s.size_metric in SIZE_METRICS, f"`size_metric` must be one of {', '.join(SIZE_METRICS)}", s.size_metric),
        (s.scheduler in SCHEDULERS, f"`scheduler` must be one of {', '.join(SCHEDULERS)}", s.scheduler),
        (s.sampler in SAMPLERS, f"`sampler` must be one of {', '.join(SAMPLERS)}", s.sampler),
        (bool(s.asha_metric), "`asha_metric` must be a metric name", s.asha_metric),
        (s.grace_period >= 1, "`grace_period >= 1` must hold", s.grace_period),
        (s.reduction_factor >= 2, "`reduction_factor >= 2` must hold", s.reduction_factor),
        (s.budget_epochs >= 0, "`budget_epochs >= 0` must hold", s.budget_epochs),
        (math.isfinite(s.budget_seconds) and s.budget_seconds >= 0, "`0 <= budget_seconds < inf` must hold",
         s.budget_seconds),
        (math.isfinite(s.stop_margin) and 0 <= s.stop_margin <= 1, "`0 <= stop_margin <= 1` must hold",
         s.stop_margin),
        (0 <= s.remeasure_seeds <= 16, "`0 <= remeasure_seeds <= 16` must hold", s.remeasure_seeds),
        (s.max_concurrent >= 0, "`max_concurrent >= 0` must hold", s.max_concurrent),
        (s.workers_per_trial >= 1, "`workers_per_trial >= 1` must hold", s.workers_per_trial),
        (math.isfinite(s.cpus_per_worker) and s.cpus_per_worker > 0, "`0 < cpus_per_worker < inf` must hold",
         s.cpus_per_worker),
        (math.isfinite(s.gpus_per_worker) and (s.gpus_per_worker > 0 or not s.gpu and s.gpus_per_worker == 0),
         "`0 < gpus_per_worker < inf` must hold", s.gpus_per_worker),
        (s.max_failures >= 0, "`max_failures >= 0` must hold", s.max_failures),
        (0 <= s.seed < 2 ** 32, "`0 <= seed < 2**32` must hold", s.seed),
        (s.warm_start >= 0, "`warm_start >= 0` must hold", s.warm_start),
        (s.confirm >= 0, "`confirm >= 0` must hold", s.confirm),
        (s.confirm_seeds >= 1, "`confirm_seeds >= 1` must hold", s.confirm_seeds),
        (s.confirm_reseed in RESEED, f"`confirm_reseed` must be one of {', '.join(RESEED)}", s.confirm_reseed),
        (s.feasibility in FEASIBILITY, f"`feasibility` must be one of {', '.join(FEASIBILITY)}", s.feasibility),
    ]
    for ok, rule, value in rules:
        if not ok:
            raise UserError(f"{where}: {rule}, but got {value!r}")
