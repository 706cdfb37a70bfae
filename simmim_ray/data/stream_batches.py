"""Streamed splits as the engine sees them: re-iterable loaders of collated torch batches, one per split.

The batches come from Ray Data on a Train worker (simmim_ray/train/streams.py) or, without Ray, from this
process reading the units itself (`local_splits`: tests, and `PretrainRun(cfg)` on a streamed source). Either way
images arrive as uint8 and are normalised on the device they are moved to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from simmim_ray.config import Config
from simmim_ray.data.decode import StreamTransform
from simmim_ray.data.scan import StreamPlan
from simmim_ray.data.stream_read import Selection, read_units


def train_steps(rows: int, world: int, batch_size: int) -> int:
    """Steps per epoch of a training stream split equally over `world` ranks: every rank gets rows // world rows;
    whole batches only, unless a rank's share is less than one batch (then one short batch)."""
    per_rank = rows // world
    return per_rank // batch_size if per_rank >= batch_size else min(1, per_rank)


def to_torch(batch: dict, device: torch.device, mean: torch.Tensor, std: torch.Tensor) -> dict:
    """A numpy batch of decode.StreamTransform -> the engine's batch: float images normalised on `device`, the
    rows that did not decode dropped and counted in `skipped` (as transforms.collate_skip does)."""
    valid = np.asarray(batch["valid"], dtype=bool)
    out = {"skipped": int((~valid).sum())}
    if not valid.any():
        return out
    img = torch.from_numpy(np.ascontiguousarray(batch["img"][valid])).to(device, non_blocking=True)
    out["img"] = img.float().div_(255).sub_(mean).div_(std)
    if "mask" in batch:
        out["mask"] = torch.from_numpy(np.ascontiguousarray(batch["mask"][valid])).long()
    if "fg" in batch:
        out["fg"] = torch.from_numpy(np.ascontiguousarray(batch["fg"][valid])).float()
        out["has_fg"] = torch.from_numpy(np.ascontiguousarray(batch["has_fg"][valid]))
    if "label" in batch:
        out["label"] = torch.from_numpy(np.ascontiguousarray(batch["label"][valid])).long()
    return out


class StreamLoader:
    """Re-iterable: each `iter()` is one pass (an epoch) over `batches()`; `len()` is the steps of a pass."""

    def __init__(self, batches: Callable[[], Iterable[dict]], steps: int, device: torch.device,
                 mean, std) -> None:
        self.batches, self.steps, self.device = batches, steps, device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for b in self.batches():
            yield to_torch(b, self.device, self.mean, self.std)


@dataclass
class StreamedSplits:
    """What `PretrainRun` needs of a streamed dataset. Training loaders (`pretrain`, `labeled`) give every rank
    the same number of steps; `bank`, `val` and `test` give each rank a disjoint share, all rows once over all
    ranks (unequal shares: evaluation needs no step in lock-step, and counts must be exact)."""
    pretrain: StreamLoader
    labeled: Callable[[bool], StreamLoader]  # augmented (fine-tune) or not (linear probe): equal steps per rank
    bank: StreamLoader  # labelled rows, un-augmented: the k-NN bank (gathered over ranks)
    val: StreamLoader
    test: StreamLoader
    num_classes: int
    has_masks: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    counts: dict[str, int]

    def sizes(self) -> dict[str, int]:
        return dict(self.counts)


def local_batches(cfg: Config, plan: StreamPlan, split: str, kind: str, batch_size: int, rank: int = 0,
                  world: int = 1, equal: bool = False) -> Callable[[], Iterable[dict]]:
    """Batches of `split` read and decoded in this process: rank `rank` of `world` takes every world-th row;
    `equal`: exactly rows // world rows per rank (the rest dropped, as Ray Data's equal split does)."""
    sel = Selection.of(plan)
    transform = StreamTransform(cfg, kind, with_masks=plan.has_masks)
    limit = plan.sizes[split] // world if equal else None

    def batches():
        pending, pos, taken = [], 0, 0
        for t in read_units(sel, plan.units_for(split), split):
            idx = [i for i in range(t.num_rows) if (pos + i) % world == rank]
            pos += t.num_rows
            for i in idx:
                if limit is not None and taken >= limit:
                    break
                pending.append(t.slice(i, 1))
                taken += 1
                if len(pending) == batch_size:
                    yield transform(_concat(pending))
                    pending = []
        if pending and not (equal and limit >= batch_size):
            yield transform(_concat(pending))

    return batches


def _concat(tables):
    import pyarrow as pa  # pyarrow for streamed data only: every run imports this module

    return pa.concat_tables(tables)


def local_splits(cfg: Config, plan: StreamPlan, rank: int = 0, world: int = 1,
                 device: torch.device | None = None) -> StreamedSplits:
    """Every split of `plan` streamed in this process (no Ray)."""
    device = device or torch.device("cpu")
    bs, ebs = cfg.train.batch_size, cfg.eval.batch_size

    def loader(split, kind, batch, equal, steps):
        return StreamLoader(local_batches(cfg, plan, split, kind, batch, rank, world, equal), steps, device,
                            plan.mean, plan.std)

    def eval_steps(split):
        return -(-(plan.sizes[split] // world + 1) // ebs)

    return StreamedSplits(
        pretrain=loader("pretrain", "pretrain", bs, True, train_steps(plan.sizes["pretrain"], world, bs)),
        labeled=lambda aug: loader("labeled", "eval_train" if aug else "eval", ebs, True,
                                   train_steps(plan.sizes["labeled"], world, ebs)),
        bank=loader("labeled", "eval", ebs, False, eval_steps("labeled")),
        val=loader("val", "eval", ebs, False, eval_steps("val")),
        test=loader("test", "eval", ebs, False, eval_steps("test")),
        num_classes=plan.num_classes, has_masks=plan.has_masks, mean=plan.mean, std=plan.std,
        counts=dict(plan.sizes))
