"""A Train worker's place in its job (rank, world, device) and its data: what both worker loops start from
(train/trial_loop.py for a training run, train/seed_loop.py for a seed job)."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import ray
import ray.train
import ray.train.torch
import torch

from simmim_ray.config import Config
from simmim_ray.data.splits import Splits, build_splits
from simmim_ray.data.stream_batches import StreamedSplits
from simmim_ray.engine.run import PretrainRun
from simmim_ray.train.loop_config import LoopConfig
from simmim_ray.train.streams import worker_splits


@dataclass
class WorkerContext:
    rank: int
    world: int
    device: torch.device
    splits: Splits | StreamedSplits  # in memory, or a streamed source's loaders (train/streams.py)
    data_seconds: float

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model) if self.world > 1 else model


def worker_context(loop: LoopConfig) -> WorkerContext:
    """This rank's place in the job, its device and the data: a streamed source's splits through Ray Data, or the
    in-memory splits (a search's driver loads them once and shares them through the object store)."""
    # DDP warns once per run that the 1x1-conv head's weight grad is channels-last; harmless, and noisy in a search
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, loop.threads))
    t0 = time.time()
    rank, world, device = ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    if loop.stream is not None:  # Parquet / image folder: every split streams through Ray Data
        splits = worker_splits(loop.stream, loop.cfg(), rank, world, device)
    else:
        splits = ray.get(loop.splits_ref) if loop.splits_ref is not None else build_splits(loop.cfg())
    return WorkerContext(rank, world, device, splits, time.time() - t0)


def make_run(cfg: Config, loop: LoopConfig, w: WorkerContext) -> PretrainRun:
    """A `PretrainRun` of `cfg` on this rank, on the worker's data."""
    return PretrainRun(cfg, w.rank, w.world, w.device, w.wrap, splits=w.splits)
