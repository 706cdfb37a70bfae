"""Ray Train worker of a training run: runs `PretrainRun` on each rank, checkpoints every epoch, reports to Ray.

Rank 0 writes TensorBoard (scalars, image grids) and the checkpoint; all ranks report. Streamed sources
(Parquet, image folders) reach `PretrainRun` as loaders over Ray Data (train/streams.py).
"""
from __future__ import annotations

import os
import tempfile
import time

import ray
import ray.train
import torch

from simmim_ray.engine.run import PretrainRun
from simmim_ray.io.export import CHECKPOINT_FILE
from simmim_ray.io.tblog import TBLogger
from simmim_ray.metrics import DONE, REPLAYED, VAL_ACCURACY, VAL_ACCURACY_SEEDS, VAL_COUNT
from simmim_ray.train.epoch_lines import tell
from simmim_ray.train.loop_config import LoopConfig
from simmim_ray.train.worker_context import make_run, worker_context


def trial_loop(loop: LoopConfig) -> None:
    """One training run on this rank (a search trial, or `simmim-ray train`): pre-train, checkpoint and report every
    epoch, the final evaluation at the end. A seed job runs train/seed_loop.py instead (launch.worker_loop picks)."""
    entered = time.time()
    cfg = loop.cfg()
    w = worker_context(loop)
    rank, world, device = w.rank, w.world, w.device
    timing = {"eval_seconds": 0.0, "checkpoint_seconds": 0.0, "data_seconds": w.data_seconds,
              "loop_cpu_seconds": 0.0}
    run = make_run(cfg, loop, w)

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, CHECKPOINT_FILE), map_location=device, weights_only=True)
            if state.get("epoch", 0) >= cfg.train.epochs and state.get("metrics", {}).get(DONE):
                # a finished run started again (a search whose driver died before it recorded this run's end):
                # report its final metrics (and checkpoint) again rather than nothing, training nothing
                again = {**state["metrics"], REPLAYED: True}
                ray.train.report(again, checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
                return
        run.load_state_dict(state)
        timing["eval_seconds"] = float(state.get("eval_seconds", 0.0))
        if rank == 0:
            print(f"simmim-ray: resumed at epoch {run.epoch} from the latest checkpoint", flush=True)
    resumed_from_epoch = run.epoch  # 0 on a fresh start; a restarted worker group continues after it

    tb = None
    if loop.tb_dir and rank == 0:
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
            metrics.update(final_eval(run, loop))
        timing["eval_seconds"] += time.perf_counter() - t0
        timing["loop_cpu_seconds"] += time.process_time() - c0
        if final:
            metrics.update(_timing_metrics(run, timing, entered))
        metrics[DONE] = final
        metrics["resumed_from_epoch"] = resumed_from_epoch
        metrics["node_ids"] = node_ids
        if tb is not None:
            tb.epoch(run, metrics, final)
        if loop.progress is not None and rank == 0:  # the driver's line for this epoch (train/epoch_lines.py)
            tell(loop.progress, metrics)
        if final:
            metrics["reported_at"] = time.time()
        t0 = time.perf_counter()
        _report(run, metrics, rank, every=cfg.train.checkpoint_every, eval_seconds=timing["eval_seconds"])
        timing["checkpoint_seconds"] += time.perf_counter() - t0
    if tb is not None:
        tb.close()


def final_eval(run: PretrainRun, loop: LoopConfig) -> dict:
    """The trial's final evaluation; a validation accuracy too close to the target to decide on is measured again
    with more fine-tune seeds, and the mean over all of them is reported (each seed's value too)."""
    m = run.final_eval(splits=loop.eval_splits)
    r = loop.remeasure
    if r is None or not r.needed(m[VAL_ACCURACY], int(m[VAL_COUNT])):
        return m
    first = run.cfg.seed * 7 + 1  # final_eval's own seed for this config
    accs = [m[VAL_ACCURACY]] + [run.final_eval(splits=("val",), seed=first + i)[VAL_ACCURACY]
                                for i in range(1, r.seeds + 1)]
    return {**m, VAL_ACCURACY: sum(accs) / len(accs), VAL_ACCURACY_SEEDS: accs}


def _timing_metrics(run: PretrainRun, timing: dict, entered: float) -> dict:
    """Where this rank's time went. `loop_seconds` (pre-training + evaluation) is the useful work of a trial;
    everything else in a trial's wall time is overhead (see benchmarks/trial_overhead.py)."""
    try:
        import psutil  # Ray's vendored copy (ray[default]): importable once Ray is

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
    want = rank == 0 and (run.epoch % every == 0 or metrics[DONE])
    if not want:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        # the resolved config travels with the weights, so any checkpoint can be exported on its own
        # and the epoch's metrics: a finished run started again reports its final ones (trial_loop)
        torch.save({**run.state_dict(), "config": run.cfg.to_dict(), "eval_seconds": eval_seconds,
                    "metrics": _plain(metrics)}, os.path.join(d, CHECKPOINT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def _plain(metrics: dict) -> dict:
    """Python scalars only: a checkpoint loads with weights_only=True, which refuses numpy scalars."""
    return {k: v if isinstance(v, (bool, str)) else float(v) if isinstance(v, float) else int(v)
            for k, v in metrics.items() if isinstance(v, (bool, int, float, str))}
