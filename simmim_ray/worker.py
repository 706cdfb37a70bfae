"""Ray Train worker: runs `PretrainRun` on each rank, checkpoints every epoch, reports metrics to Ray.

Rank 0 writes TensorBoard (scalars, image grids, HParams) and the checkpoint; all ranks report.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings

import ray
import ray.train
import ray.train.torch
import torch

from simmim_ray.config import Config
from simmim_ray.engine.run import PretrainRun
from simmim_ray.tblog import TBLogger

CKPT_FILE = "state.pt"


class RayDataPretrainStream:
    """Iterates this worker's Ray Data shard of a Parquet dataset: bytes -> decode/augment/mask -> batch."""

    def __init__(self, shard, transform, batch_size: int, rows: int, world: int, image_column: str,
                 mask_column: str) -> None:
        self.shard, self.transform, self.bs = shard, transform, batch_size
        self.steps = max(1, math.ceil(rows / world / batch_size))
        self.image_column, self.mask_column = image_column, mask_column

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        from simmim_ray.data import collate_skip
        from simmim_ray.data.sources import decode_image, image_bytes

        for batch in self.shard.iter_batches(batch_size=self.bs, batch_format="pyarrow"):
            imgs = batch.column(self.image_column).to_pylist()
            masks = batch.column(self.mask_column).to_pylist() if self.mask_column in batch.column_names else None
            samples = []
            for i, raw in enumerate(imgs):
                img = decode_image(image_bytes(raw))
                fg = decode_image(masks[i]) if masks is not None else None
                samples.append(None if img is None else self.transform((img, 0, None if fg is None else fg.convert("L"))))
            yield collate_skip(samples)


def train_loop(loop_config: dict) -> None:
    # DDP warns once per run that the 1x1-conv head's weight grad is channels-last; harmless, and noisy in a search
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    cfg = Config.from_dict(loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    device = ray.train.torch.get_device()

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model) if world > 1 else model

    stream = None
    if cfg.data.source == "parquet" and loop_config.get("ray_data"):
        from simmim_ray.data import PretrainTransform
        from simmim_ray.data.splits import build_splits

        splits = build_splits(cfg)
        stream = RayDataPretrainStream(ray.train.get_dataset_shard("train"),
                                       PretrainTransform(cfg, splits.mean, splits.std), cfg.train.batch_size,
                                       int(loop_config["rows"]), world, cfg.data.image_column,
                                       cfg.data.mask_column)
        run = PretrainRun(cfg, rank, world, device, wrap, splits=splits, pretrain_loader=stream)
    else:
        run = PretrainRun(cfg, rank, world, device, wrap)

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            run.load_state_dict(torch.load(os.path.join(d, CKPT_FILE), map_location=device, weights_only=True))

    tb = TBLogger(loop_config.get("tb_dir"), enabled=rank == 0) if loop_config.get("tb_dir") else None
    node_ids = _node_ids(world)
    size = run.size()
    while run.epoch < cfg.train.epochs:
        metrics = run.train_epoch()
        metrics.update(run.proxy())
        metrics.update(size)
        final = run.epoch == cfg.train.epochs
        if final:
            metrics.update(run.final_eval())
            metrics["train_seconds"] = run.train_seconds
        metrics["done"] = final
        metrics["node_ids"] = node_ids
        if tb is not None:
            tb.epoch(run, metrics, final)
        _report(run, metrics, rank, every=cfg.train.checkpoint_every)
    if tb is not None:
        tb.close()


def _node_ids(world: int) -> str:
    """Ray node id of every rank, in rank order, comma-joined: shows which nodes the data-parallel job spans."""
    own = ray.get_runtime_context().get_node_id()
    if world == 1:
        return own
    ids = [None] * world
    torch.distributed.all_gather_object(ids, own)  # collective: every rank calls it once, before training
    return ",".join(ids)


def _report(run: PretrainRun, metrics: dict, rank: int, every: int) -> None:
    """All ranks report; only rank 0 attaches the checkpoint (the state is identical under DDP)."""
    want = rank == 0 and (run.epoch % every == 0 or metrics["done"])
    if not want:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        # the resolved config travels with the weights, so any checkpoint can be exported on its own
        torch.save({**run.state_dict(), "config": run.cfg.to_dict()}, os.path.join(d, CKPT_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
