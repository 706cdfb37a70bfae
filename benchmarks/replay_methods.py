"""The search methods benchmarks/search_replay.py compares: each a Tune searcher, a Tune scheduler and the options
of how a trial's result is measured and how the answer is confirmed.

Adding a method is one `Method(...)` entry in METHODS: two builders that take the replay's `Context` (the replayed
table, the seed, Optuna distributions of its grid, the search settings, a base config) and return the searcher and
the scheduler, as the search driver would build them for a real search.
"""
from __future__ import annotations

import math
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
                              trials=t.trials, size_metric=t.size_metric, seed=self.seed, grace_period=t.grace_period)

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
    """The service's searcher as main had it when this benchmark was written: objectives [size min, validation
    accuracy max], accuracy as an Optuna constraint, early-stopped trials PRUNED. The base class has no hook for
    its objectives, so this subclass restores nothing; it refuses to run once the base class's objectives change,
    rather than silently benchmarking another searcher under this name."""

    DIRECTIONS = ("MINIMIZE", "MAXIMIZE")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        got = tuple(d.name for d in self.study.directions)
        if got != self.DIRECTIONS:
            raise RuntimeError(f"ConstrainedOptunaSearch now has objectives {got}, not {self.DIRECTIONS}: restore "
                               "today's two objectives in benchmarks/replay_methods.TodaysSearch")


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


def near_target(val: float, target: float, n_val: int) -> bool:
    """The new default's borderline rule: within two standard errors of a proportion measured on `n_val` images."""
    return abs(val - target) <= 2 * math.sqrt(val * (1 - val) / n_val)


def _optuna(ctx: Context, sampler: str, cls=ConstrainedOptunaSearch) -> Searcher:
    return cls(ctx.space, ctx.table.size_metric, ctx.table.target, seed=ctx.seed, sampler=sampler)


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
    # TODO(lead): the new default. When the product has it, replace `searcher=None, scheduler=None, missing=...` by
    #   searcher=lambda ctx: ConstrainedOptunaSearch(
    #       ctx.space, ctx.table.size_metric, ctx.table.target, seed=ctx.seed, sampler="tpe",
    #       size_of=lambda params: ctx.table.row(params).size(ctx.table.size_metric)),
    #   scheduler=lambda ctx: make_scheduler(replace(ctx.settings, scheduler="constraint"), ctx.base, None),
    # and, where the product's borderline helper exists, use it instead of `near_target`.
    Method("default", "the new default (issue 21): single-objective constrained TPE + the constraint scheduler, "
           "borderline results re-measured with 2 more seeds", None, None, remeasure=near_target,
           missing="the product's single-objective searcher and `scheduler: constraint` are not in this checkout"),
)}
NEW_DEFAULT = "default"
