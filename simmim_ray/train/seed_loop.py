"""Ray Train worker of a seed job (a confirmation or the scratch baseline): one architecture, several seeds,
validation and test.

Each seed's result goes out with `ray.train.report` as soon as it is measured, with a small checkpoint holding every
result so far: a job restarted after a worker failure, or re-launched by `--resume` under the same run name,
continues at the next seed instead of measuring the finished ones again.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time

import ray
import ray.train
import torch

from simmim_ray.engine.evaluate import all_sum
from simmim_ray.io import storage
from simmim_ray.io.export import CHECKPOINT_FILE
from simmim_ray.metrics import DONE, FLOPS, PARAMS, TEST_ACCURACY, TEST_COUNT, VAL_ACCURACY, VAL_COUNT
from simmim_ray.train.loop_config import LoopConfig
from simmim_ray.models import build_encoder
from simmim_ray.train.worker_context import make_run, worker_context

RUNS_FILE = "seed_runs.json"
RUNS = "runs"  # the report key holding every seed's result so far (a list of dicts)
SPLITS = ("val", "test")


def seed_loop(loop: LoopConfig) -> None:
    """A seed job on this rank: every seed of `loop.seed_job` not measured yet, each reported as it ends."""
    job = loop.seed_job
    cfg = loop.cfg()
    w = worker_context(loop)
    runs = _restored_runs()
    done = {r["seed"] for r in runs}
    base = None
    if job.mode != "pretrain":
        # one run serves every seed: the seed enters only the fine-tune (head, order, augmentation) and, for
        # "scratch", the fresh encoder's initialisation
        base = make_run(cfg, loop, w)
        if job.mode == "finetune":
            state = _load_state(job.init_path, w.device)
            base.model.load_state_dict(state["model"])
    todo = [seed for seed in job.seeds if seed not in done]
    if not todo:  # every seed was measured before a restart: report them again, so `fit()` returns them
        size = (base or make_run(cfg, loop, w)).size()
        _report({**size, RUNS: runs, DONE: True}, w.rank)
    for i, seed in enumerate(todo):
        c0, t0 = time.process_time(), time.perf_counter()
        epochs = 0
        if job.mode == "pretrain":
            run = make_run(cfg.with_overrides({"seed": seed}), loop, w)
            while run.epoch < cfg.train.epochs:
                run.train_epoch()
            epochs = run.epoch
            m = run.final_eval(splits=SPLITS)
        elif job.mode == "scratch":
            torch.manual_seed(seed)
            fresh = build_encoder(cfg.model).to(w.device)
            m = base.final_eval(splits=SPLITS, seed=seed, encoder=fresh)
        else:
            m = base.final_eval(splits=SPLITS, seed=seed)
        cpu, = all_sum([time.process_time() - c0], w.device)  # every rank's CPU time
        runs.append({"seed": seed, **{k: m[k] for k in (VAL_ACCURACY, VAL_COUNT, TEST_ACCURACY, TEST_COUNT)},
                     "seconds": time.perf_counter() - t0, "cpu_seconds": cpu, "pretrain_epochs": epochs})
        _report({PARAMS: m[PARAMS], FLOPS: m[FLOPS], RUNS: list(runs), DONE: i == len(todo) - 1}, w.rank)


def _load_state(path: str, device: torch.device) -> dict:
    return torch.load(io.BytesIO(storage.read_bytes(storage.join(path, CHECKPOINT_FILE))), map_location=device,
                      weights_only=True)


def _restored_runs() -> list[dict]:
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return []
    with ckpt.as_directory() as d:
        with open(os.path.join(d, RUNS_FILE)) as f:
            return json.load(f)


def _report(metrics: dict, rank: int) -> None:
    """All ranks report; rank 0 attaches the results so far as the checkpoint (and the job's final result is
    its last report, which `fit()` returns)."""
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, RUNS_FILE), "w") as f:
            json.dump(metrics[RUNS], f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
