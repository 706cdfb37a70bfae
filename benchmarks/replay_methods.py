"""The search methods benchmarks/search_replay.py compares: each a Tune searcher, a Tune scheduler and the options
of how a trial's result is measured and how the answer is confirmed.

Adding a method is one `Method(...)` entry in METHODS: two builders that take the replay's `Context` (the replayed
table, the seed, Optuna distributions of its grid, the search settings, a base config) and return the searcher and
the scheduler, as the search driver would build them for a real search.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from simmim_ray.config import Config
from simmim_ray.metrics import VAL_ACCURACY
from simmim_ray.search.driver import make_scheduler
from simmim_ray.search.searcher import ConstrainedOptunaSearch
from simmim_ray.search.settings import SearchSettings
from simmim_ray.train.loop_config import Remeasure

from benchmarks.replay_table import Table, optuna_space


@dataclass(frozen=True)
class Context:
    """What a method's builders may read: one replay seed's search over `table`."""
    table: Table
    seed: int

    @property
    def settings(self) -> SearchSettings:
        t = self.table
        return SearchSettings(space_path="", name=f"replay-{self.seed}", root="", target_accuracy=t.target,
                              trials=max(1, round(t.trials)), size_metric=t.size_metric, seed=self.seed, grace_period=t.grace_period)

    @property
    def base(self) -> Config:
        # the schedulers read the pre-training length only
        return Config.from_dict({"train": {"epochs": self.table.epochs}})

    @property
    def space(self) -> dict:
        return optuna_space(self.table)


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # one line for the report
    searcher: Callable[[Context], Searcher] | None  # None: not buildable in this checkout (see `missing`)
    scheduler: Callable[[Context], TrialScheduler] | None
    # (validation accuracy, target, validation images) -> whether a finished trial's result is so close to the
    # target that the search measures 2 more fine-tune seeds on validation and reports the mean of the 3
    remeasure: Callable[[float, float, int], bool] | None = None
    # True: each trial feasible on validation is confirmed as soon as it ends and the search stops at the first one
    # that confirms (the size scan); False: the service's confirmation after the search (search_replay.py)
    confirm_inline: bool = False
    missing: str = ""  # why the method cannot run yet

    @property
    def ready(self) -> bool:
        return self.searcher is not None and self.scheduler is not None


class TodaysSearch(ConstrainedOptunaSearch):
    """The service's searcher before issue 21: two objectives, [size min, validation accuracy max], with the
    accuracy as an Optuna constraint (the Pareto formulation). Run without `size_of`, nothing is skipped. What stays
    of today's class: a stopped trial is PRUNED without a constraint (0.1 set it to +inf)."""

    def directions(self) -> list[str]:
        return ["minimize", "maximize"]

    def metric_names(self) -> list[str]:
        return [self.size_metric, VAL_ACCURACY]

    def values(self, result: dict) -> list | None:
        got = [result.get(self.size_metric), result.get(VAL_ACCURACY)]
        return None if any(v is None for v in got) else got


class SizeScan(Searcher):
    """The baseline a user could write in ten lines: every configuration from the smallest up (equal sizes in a
    seeded random order), each to the end; no more trials once one feasible on validation confirms."""

    def __init__(self, points: list[dict], confirms: Callable[[dict], bool], target: float) -> None:
        super().__init__(metric=VAL_ACCURACY, mode="max")
        self.todo, self.confirms, self.target = list(points), confirms, target
        self.asked: dict[str, dict] = {}
        self.done = False

    def suggest(self, trial_id: str):
        if self.done or not self.todo:
            return Searcher.FINISHED
        self.asked[trial_id] = self.todo.pop(0)
        return dict(self.asked[trial_id])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        val = (result or {}).get(VAL_ACCURACY)
        if val is not None and val >= self.target and self.confirms(self.asked[trial_id]):
            self.done = True


def size_order(table: Table, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = sorted(table.rows.values(), key=lambda r: (r.size(table.size_metric), rng.random()))
    return [dict(r.point) for r in rows]


def confirms(table: Table, point: dict, seeds: int) -> bool:
    """The service's confirmation of one candidate: its first `seeds` fine-tunes' mean validation accuracy meets
    the target (selection never reads test)."""
    fts = table.row(point).finetunes[:seeds]
    return sum(f.val_accuracy for f in fts) / len(fts) >= table.target


def _optuna(ctx: Context, sampler: str, cls=ConstrainedOptunaSearch, size_of=None) -> Searcher:
    return cls(ctx.space, ctx.table.size_metric, ctx.table.target, seed=ctx.seed, sampler=sampler, size_of=size_of)


CONFIRM_SEEDS = 3  # the service's default (search/settings.py: confirm_seeds)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("random+fifo", "Optuna's random sampler through the service's searcher; every trial to the end",
           lambda ctx: _optuna(ctx, "random"), lambda ctx: FIFOScheduler()),
    Method("size-scan", "configurations from the smallest up, each to the end, each feasible one confirmed at once; "
           "stops at the first confirmed", lambda ctx: SizeScan(size_order(ctx.table, ctx.seed),
                                                                 lambda p: confirms(ctx.table, p, CONFIRM_SEEDS),
                                                                 ctx.table.target),
           lambda ctx: FIFOScheduler(), confirm_inline=True),
    Method("tpe+asha (0.1)", "the service's default before issue 21: multivariate TPE on [size, accuracy] with the "
           "accuracy constraint + ASHA on `proxy_knn` (grace period from the table, reduction factor 3)",
           lambda ctx: _optuna(ctx, "tpe", TodaysSearch),
           lambda ctx: make_scheduler(replace(ctx.settings, scheduler="asha"), ctx.base)),
    Method("default", "the new default (issue 21): TPE on the size alone under the accuracy constraint, "
           "configurations that cannot beat the incumbent skipped before training, the constraint stopper, "
           "borderline results re-measured with 2 more seeds",
           lambda ctx: _optuna(ctx, "tpe", size_of=lambda p: ctx.table.row(p).size(ctx.table.size_metric)),
           lambda ctx: make_scheduler(replace(ctx.settings, scheduler="constraint"), ctx.base),
           remeasure=lambda val, target, n_val: Remeasure(target).needed(val, n_val)),
    Method("default+proxy-stop", "the new default with the constraint stopper's proxy rule on (`stop_margin` "
           "0.05): what the default leaves off, measured",
           lambda ctx: _optuna(ctx, "tpe", size_of=lambda p: ctx.table.row(p).size(ctx.table.size_metric)),
           lambda ctx: make_scheduler(replace(ctx.settings, scheduler="constraint", stop_margin=0.05), ctx.base),
           remeasure=lambda val, target, n_val: Remeasure(target).needed(val, n_val)),
)}
NEW_DEFAULT = "default"
