"""A Train worker's streamed splits: the engine's loaders over Ray Data (datasets.py), as `StreamedSplits`.

Training splits come from Train's equal shares (`ray.train.get_dataset_shard`): every rank gets rows // world
rows, so every rank runs `train_steps` steps and the lr schedule's length is known from the scan's counts.
Evaluation splits (the k-NN bank, validation, test) are read by this worker from its own units (every world-th
unit of the split): disjoint over ranks, each row once, so summed counts are exact.
"""
from __future__ import annotations

import ray.train
import torch

from simmim_ray.config import Config
from simmim_ray.data.stream_batches import StreamedSplits, StreamLoader, train_steps
from simmim_ray.train.datasets import StreamSetup, split_dataset

SHUFFLE_BATCHES = 4  # a training stream is shuffled within a buffer of this many batches (on top of unit order)


def _train_loader(shard, rows: int, world: int, batch_size: int, device, plan) -> StreamLoader:
    steps = train_steps(rows, world, batch_size)
    drop_last = rows // world >= batch_size  # as train_steps counts

    def batches():
        return shard.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=drop_last,
                                  local_shuffle_buffer_size=SHUFFLE_BATCHES * batch_size, prefetch_batches=2)

    return StreamLoader(batches, steps, device, plan.mean, plan.std)


def _eval_loader(setup: StreamSetup, cfg: Config, split: str, rank: int, world: int, device) -> StreamLoader:
    plan = setup.plan
    mine = plan.units_for(split)[rank::world]
    rows = sum(u.val if split == "val" else u.test if split == "test" else u.train for u in mine)
    bs = cfg.eval.batch_size
    ds = split_dataset(setup, cfg, split, "eval", units=mine) if mine else None

    def batches():
        if ds is None:
            return iter(())
        return ds.iter_batches(batch_size=bs, batch_format="numpy", prefetch_batches=2)

    return StreamLoader(batches, -(-rows // bs), device, plan.mean, plan.std)


def worker_splits(setup: StreamSetup, cfg: Config, rank: int, world: int, device: torch.device) -> StreamedSplits:
    plan = setup.plan
    pretrain = _train_loader(ray.train.get_dataset_shard("pretrain"), plan.sizes["pretrain"], world,
                             cfg.train.batch_size, device, plan)
    labeled = None
    if cfg.eval.protocol != "knn":
        labeled = _train_loader(ray.train.get_dataset_shard("labeled"), plan.sizes["labeled"], world,
                                cfg.eval.batch_size, device, plan)

    def labeled_loader(augment: bool) -> StreamLoader:
        # Train holds one labelled stream, made for the configured protocol (train_datasets)
        if labeled is None:
            raise ValueError("eval.protocol=knn trains no classifier: no labelled training stream")
        return labeled

    return StreamedSplits(
        pretrain=pretrain, labeled=labeled_loader,
        bank=_eval_loader(setup, cfg, "labeled", rank, world, device),
        val=_eval_loader(setup, cfg, "val", rank, world, device),
        test=_eval_loader(setup, cfg, "test", rank, world, device),
        num_classes=plan.num_classes, has_masks=plan.has_masks, mean=plan.mean, std=plan.std,
        counts=dict(plan.sizes))
