"""What the driver hands every Train worker: one typed value instead of a dict of string keys."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simmim_ray.config import Config


@dataclass(frozen=True)
class SeedRuns:
    """A confirmation or baseline job (simmim_ray/search/confirm.py): one Train job measures one architecture on
    validation and test under several seeds, one after the other (each Train job has a fixed start-up cost that a
    fine-tune of a small model does not dwarf).

    `mode`: "finetune" re-seeds the fine-tune of the trial's pre-trained encoder (the checkpoint in `init_path`:
    what best/ exports); "pretrain" re-runs the whole trial (pre-training and fine-tune) with each seed; "scratch"
    fine-tunes a freshly initialised encoder of the same architecture with the same recipe and seeds."""

    mode: str
    seeds: tuple[int, ...]
    init_path: str = ""  # "finetune": the trial's checkpoint directory (state.pt)


@dataclass(frozen=True)
class Remeasure:
    """A search trial's final validation accuracy near the target is one fine-tune seed's luck (fine-tune seeds
    move it by about a point): within `z` standard errors of `target` it is measured again with `seeds` more
    fine-tune seeds, and their mean is the trial's accuracy."""

    target: float
    seeds: int = 2
    z: float = 2.0

    def needed(self, accuracy: float, count: int) -> bool:
        """Whether `accuracy` on `count` images is too close to the target to decide on (binomial standard error)."""
        if self.seeds <= 0 or count <= 0 or not math.isfinite(accuracy):
            return False
        p = min(max(self.target, 1.0 / count), 1.0 - 1.0 / count)
        return abs(accuracy - self.target) <= self.z * math.sqrt(p * (1 - p) / count)


@dataclass(frozen=True)
class LoopConfig:
    config: dict  # Config.to_dict(): plain data, so the workers need no pickled classes of the driver
    tb_dir: str | None = None  # rank 0's TensorBoard directory (local path or URI); None: no TensorBoard
    threads: int = 1  # torch intra-op threads per worker
    eval_splits: tuple[str, ...] = ("val",)  # splits the final evaluation measures ("test" only outside a search)
    splits_ref: Any = None  # the driver's splits in the object store (ObjectRef), or None: each worker loads them
    stream: Any = None  # a streamed source's train.datasets.StreamSetup (scan, Ray Data's CPUs); None: in memory
    seed_runs: SeedRuns | None = None  # set: the workers run these seeds (train/seed_runs.py), not a trial
    remeasure: Remeasure | None = None  # a search trial: measure a borderline final accuracy again
    progress: Any = None  # `simmim-ray train`: the driver's queue for each epoch's metrics (train/epoch_lines.py)

    def cfg(self) -> Config:
        return Config.from_dict(self.config)
