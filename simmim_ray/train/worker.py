"""Ray Train worker: runs `PretrainRun` on each rank, checkpoints every epoch, reports metrics to Ray.

Rank 0 writes TensorBoard (scalars, image grids, HParams) and the checkpoint; all ranks report. Streamed sources
(Parquet, image folders) reach `PretrainRun` as loaders over Ray Data (train/streams.py).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import ray
import ray.train
import ray.train.torch
import torch

from simmim_ray.data.splits import build_splits
from simmim_ray.engine.run import PretrainRun
from simmim_ray.train.loop_config import LoopConfig

CKPT_FILE = "state.pt"


def train_loop(loop: LoopConfig) -> None:
    entered = time.time()
    # DDP warns once per run that the 1x1-conv head's weight grad is channels-last; harmless, and noisy in a search
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    cfg = loop.cfg()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, loop.threads))
    device = ray.train.torch.get_device()

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model) if world > 1 else model

    t0 = time.time()
    if loop.stream is not None:  # Parquet / image folder: every split streams through Ray Data
        from simmim_ray.train.streams import worker_splits

        splits = worker_splits(loop.stream, cfg, rank, world, device)
    else:  # in memory; a search's driver loads it once and shares it through the object store
        splits = ray.get(loop.splits_ref) if loop.splits_ref is not None else build_splits(cfg)
    timing = {"eval_seconds": 0.0, "checkpoint_seconds": 0.0, "data_seconds": time.time() - t0,
              "loop_cpu_seconds": 0.0}
    run = PretrainRun(cfg, rank, world, device, wrap, splits=splits)

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, CKPT_FILE), map_location=device, weights_only=True)
        run.load_state_dict(state)
        timing["eval_seconds"] = float(state.get("eval_seconds", 0.0))
        if rank == 0:
            print(f"simmim-ray: resumed at epoch {run.epoch} from the latest checkpoint", flush=True)
    resumed_from_epoch = run.epoch  # 0 on a fresh start; a restarted worker group continues after it

    tb = None
    if loop.tb_dir and rank == 0:
        from simmim_ray.tblog import TBLogger  # TensorBoard's import is slow; only rank 0 writes

        tb = TBLogger(loop.tb_dir, enabled=True)
    node_ids = _node_ids(world)
    size = run.size()
    timing["setup_seconds"] = time.time() - entered
    while run.epoch < cfg.train.epochs:
        c0 = time.process_time()
        metrics = run.train_epoch()
        t0 = time.perf_counter()
        metrics.update(run.proxy())
        metrics.update(size)
        final = run.epoch == cfg.train.epochs
        if final:
            metrics.update(run.final_eval(splits=loop.eval_splits))
        timing["eval_seconds"] += time.perf_counter() - t0
        timing["loop_cpu_seconds"] += time.process_time() - c0
        if final:
            metrics.update(_timing_metrics(run, timing, entered))
        metrics["done"] = final
        metrics["resumed_from_epoch"] = resumed_from_epoch
        if final and rank == 0 and loop.final_path:
            # marker read by a restored search: this trial finished, report it again instead of re-running
            from simmim_ray.storage import write_text

            write_text(loop.final_path, json.dumps(metrics))
        if rank == 0 and loop.history_path:
            # the per-epoch record survives worker restarts and search restores (Tune rewrites its own logs)
            from simmim_ray.storage import append_line

            append_line(loop.history_path, json.dumps(
                {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}))
        metrics["node_ids"] = node_ids
        if tb is not None:
            tb.epoch(run, metrics, final)
        if final:
            metrics["reported_at"] = time.time()
        t0 = time.perf_counter()
        _report(run, metrics, rank, every=cfg.train.checkpoint_every, eval_seconds=timing["eval_seconds"])
        timing["checkpoint_seconds"] += time.perf_counter() - t0
    if tb is not None:
        tb.close()


def _timing_metrics(run: PretrainRun, timing: dict, entered: float) -> dict:
    """Where this rank's time went. `loop_seconds` (pre-training + evaluation) is the useful work of a trial;
    everything else in a trial's wall time is overhead (see benchmarks/trial_overhead.py)."""
    try:
        import psutil  # comes with ray[default]

        process_started = psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - diagnostics only
        process_started = entered
    return {"train_seconds": run.train_seconds, "eval_seconds": timing["eval_seconds"],
            "loop_seconds": run.train_seconds + timing["eval_seconds"],
            "setup_seconds": timing["setup_seconds"], "data_seconds": timing["data_seconds"],
            "checkpoint_seconds": timing["checkpoint_seconds"],
            "loop_cpu_seconds": timing["loop_cpu_seconds"],  # this process's CPU in the loop (since a restart)
            "loop_started_at": entered, "process_started_at": process_started}


def _node_ids(world: int) -> str:
    """Ray node id of every rank, in rank order, comma-joined: shows which nodes the data-parallel job spans."""
    own = ray.get_runtime_context().get_node_id()
    if world == 1:
        return own
    ids = [None] * world
    torch.distributed.all_gather_object(ids, own)  # collective: every rank calls it once, before training
    return ",".join(ids)


def _report(run: PretrainRun, metrics: dict, rank: int, every: int, eval_seconds: float = 0.0) -> None:
    """All ranks report; only rank 0 attaches the checkpoint (the state is identical under DDP)."""
    want = rank == 0 and (run.epoch % every == 0 or metrics["done"])
    if not want:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        # the resolved config travels with the weights, so any checkpoint can be exported on its own
        torch.save({**run.state_dict(), "config": run.cfg.to_dict(), "eval_seconds": eval_seconds},
                   os.path.join(d, CKPT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
