"""Runs confirmation and baseline jobs (search/answer/confirm.py plans them) as Ray Train jobs, as many at once as the
search runs trials, and hands each finished job's results to the driver as it ends."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from simmim_ray.config import Config
from simmim_ray.search.answer.confirm import Job

INIT_PATH_MODES = ("finetune",)  # modes that start from the trial's pre-trained checkpoint


@dataclass(frozen=True)
class JobSpec:
    """What a job needs besides its `Job`: the trial's resolved config and (finetune) its checkpoint."""

    job: Job
    config: dict
    init_path: str = ""


def _fit(spec: JobSpec, res, storage_path: str, shared, max_failures: int) -> dict:
    """In a Ray task: one Train job; -> its final report (every seed's result). The task holds no CPU: it only
    waits on its Train controller, as a search trial's function does."""
    from simmim_ray.train.launch import make_trainer
    from simmim_ray.train.loop_config import SeedRuns

    job = spec.job
    trainer = make_trainer(Config.from_dict(spec.config), res, storage_path=storage_path, name=job.name,
                           tb_dir=None, max_failures=max_failures, shared=shared,
                           seed_runs=SeedRuns(job.mode, job.seeds, spec.init_path))
    result = trainer.fit()
    return dict(result.metrics or {})


def run_jobs(specs: list[JobSpec], res, storage_path: str, concurrency: int, shared, max_failures: int,
             on_done: Callable[[JobSpec, dict, str, float], bool]) -> None:
    """Runs `specs` in order, at most `concurrency` at once; `on_done(spec, metrics, error, wall_s)` as each one
    ends (`error`: one line, metrics {} when the job failed); when it returns True, no further job starts. Jobs
    run in Ray tasks so several Train jobs proceed together; the driver only waits."""
    import ray

    if not specs:
        return
    fit = ray.remote(num_cpus=0, max_retries=0)(_fit)
    pending = list(specs)
    running: dict = {}
    while pending or running:
        while pending and len(running) < max(1, concurrency):
            spec = pending.pop(0)
            running[fit.remote(spec, res, storage_path, shared, max_failures)] = (spec, time.time())
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            spec, started = running.pop(ref)
            try:
                metrics, error = ray.get(ref), ""
            except Exception as e:  # noqa: BLE001 - one failed job leaves its candidate unconfirmed, not the rest
                metrics, error = {}, _one_line(e)
            if on_done(spec, metrics, error, time.time() - started):
                pending.clear()  # decided: jobs not started yet are not needed (running ones finish)


def _one_line(e: Exception) -> str:
    from simmim_ray.search.progress import summarise_error

    return summarise_error(str(e)) or type(e).__name__
