"""The peer of benchmarks/trial_overhead.py: a naive Train V2 trial, as a first Ray Train + Tune integration would
write it. `TorchTrainer` with Ray's defaults (controller health check every 2 s, preemption watcher on), each
worker loads the data itself, saves model + optimiser and reports every epoch through Ray's `TuneReportCallback`,
and the trial ends when `fit()` returns. The training itself is the service's per-rank engine, so only what
surrounds it differs."""
from __future__ import annotations

import os

# Ray's own defaults for what `simmim_ray.train.launch.RAY_ENV_DEFAULTS` changes
NAIVE_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "2.0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}


def naive_loop(config: dict) -> None:
    """A straightforward Train V2 loop over the same per-rank engine: no sharing, defaults everywhere."""
    import tempfile
    import time

    entered = time.time()
    import psutil
    import ray.train
    import ray.train.torch
    import torch

    from simmim_ray.config import Config
    from simmim_ray.data.splits import build_splits
    from simmim_ray.engine.run import PretrainRun

    cfg = Config.from_dict(config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(1)
    t0 = time.time()
    splits = build_splits(cfg)
    data_s = time.time() - t0
    run = PretrainRun(cfg, rank, world, torch.device("cpu"), ray.train.torch.prepare_model, splits=splits)
    setup_s, eval_s, ckpt_s = time.time() - entered, 0.0, 0.0
    loop_cpu = 0.0
    while run.epoch < cfg.train.epochs:
        c0 = time.process_time()
        m = run.train_epoch()
        t0 = time.perf_counter()
        m.update(run.proxy())
        m.update(run.size())
        if run.epoch == cfg.train.epochs:
            m.update(run.final_eval())
            eval_s += time.perf_counter() - t0
            loop_cpu += time.process_time() - c0
            m.update(loop_cpu_seconds=loop_cpu, train_seconds=run.train_seconds, eval_seconds=eval_s,
                     loop_seconds=run.train_seconds + eval_s,
                     setup_seconds=setup_s, data_seconds=data_s, checkpoint_seconds=ckpt_s, loop_started_at=entered,
                     process_started_at=psutil.Process().create_time(), reported_at=time.time())
        else:
            eval_s += time.perf_counter() - t0
            loop_cpu += time.process_time() - c0
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                torch.save({**run.state_dict(), "config": cfg.to_dict()}, os.path.join(d, "state.pt"))
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report(m, checkpoint=ckpt)
        ckpt_s += time.perf_counter() - t0


def naive_trial(cfg_dict: dict, storage: str, name: str) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    os.environ.update(NAIVE_ENV)  # the trial actor inherited ours from the driver; Train propagates these
    TorchTrainer(naive_loop, train_loop_config={"config": cfg_dict},
                 scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                 run_config=ray.train.RunConfig(name=name, storage_path=storage, callbacks=[TuneReportCallback()],
                                                failure_config=ray.train.FailureConfig(max_failures=1))).fit()
