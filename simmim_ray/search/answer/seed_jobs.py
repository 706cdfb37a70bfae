"""Runs seed jobs (train/loop_config.SeedJob: a confirmation or the scratch baseline; search/answer/confirm.py plans
them) as Ray Train jobs, as many at once as the search runs trials, and hands each finished job's results to the
driver as it ends."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from simmim_ray.config import Config
from simmim_ray.search.progress import summarise_error
from simmim_ray.train.loop_config import SeedJob

if TYPE_CHECKING:  # the driver's Ray Train types: importing them here would start Ray's import for `report`
    from simmim_ray.train.launch import Resources, SharedSplits


@dataclass
class SeedJobSetup:
    """What every seed job of a search shares: the search's base config, its trial resources, how many jobs run at
    once (as many as the search runs trials), the data the driver already loaded, and Train's failure budget."""

    base: Config
    res: Resources
    concurrency: int
    shared: SharedSplits | None = None
    max_failures: int = 1


def _fit(job: SeedJob, config: dict, setup: SeedJobSetup, storage_path: str) -> dict:
    """In a Ray task: one Train job; -> its final report (every seed's result). The task holds no CPU: it only
    waits on its Train controller, as a search trial's function does."""
    from simmim_ray.train.launch import make_trainer  # Ray Train: imported in the task, not by `report`

    trainer = make_trainer(Config.from_dict(config), setup.res, storage_path=storage_path, name=job.name,
                           tb_dir=None, max_failures=setup.max_failures, shared=setup.shared, seed_job=job)
    result = trainer.fit()
    return dict(result.metrics or {})


def run_jobs(jobs: list[SeedJob], configs: dict[str, dict], setup: SeedJobSetup, storage_path: str,
             on_done: Callable[[SeedJob, dict, str, float], bool]) -> None:
    """Runs `jobs` in order (`configs`: each trial's resolved config, by trial id), at most `setup.concurrency` at
    once; `on_done(job, metrics, error, wall_s)` as each one ends (`error`: one line, metrics {} when the job
    failed); when it returns True, no further job starts. Jobs run in Ray tasks so several Train jobs proceed
    together; the driver only waits."""
    import ray  # the answer stage's pure parts (and `report`) import this module without Ray

    if not jobs:
        return
    fit = ray.remote(num_cpus=0, max_retries=0)(_fit)
    pending = list(jobs)
    running: dict = {}
    while pending or running:
        while pending and len(running) < max(1, setup.concurrency):
            job = pending.pop(0)
            running[fit.remote(job, configs[job.trial_id], setup, storage_path)] = (job, time.time())
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            job, started = running.pop(ref)
            try:
                metrics, error = ray.get(ref), ""
            except Exception as e:  # noqa: BLE001 - one failed job leaves its candidate unconfirmed, not the rest
                metrics, error = {}, summarise_error(str(e)) or type(e).__name__
            if on_done(job, metrics, error, time.time() - started):
                pending.clear()  # decided: jobs not started yet are not needed (running ones finish)
