"""What the driver hands every Train worker: one typed value instead of a dict of string keys."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simmim_ray.config import Config

if TYPE_CHECKING:  # the workers' own imports: this module is the driver's and the answer stage's too (no Ray)
    from ray import ObjectRef
    from ray.util.queue import Queue

    from simmim_ray.train.datasets import StreamSetup


# What a seed job re-seeds (see SeedJob.mode); the first two are a confirmation's, `--confirm-reseed`
SEED_JOB_MODES = ("finetune", "pretrain", "scratch")


@dataclass(frozen=True)
class SeedJob:
    """A seed job: one Train job that measures one trial's architecture on validation and test under several seeds,
    one after the other (each Train job has a fixed start-up cost that a fine-tune of a small model does not dwarf).
    The answer stage plans them (search/answer/confirm.py) and runs them (search/answer/seed_jobs.py); the workers
    run train/seed_loop.py.

    `mode`: "finetune" re-seeds the fine-tune of the trial's pre-trained encoder (the checkpoint in `init_path`:
    what best/ exports); "pretrain" re-runs the whole trial (pre-training and fine-tune) with each seed (these two
    confirm a candidate); "scratch" fine-tunes a freshly initialised encoder of the same architecture with the same
    recipe and seeds (the scratch baseline)."""

    trial_id: str
    mode: str
    seeds: tuple[int, ...]
    init_path: str = ""  # "finetune": the trial's checkpoint directory (state.pt)

    @property
    def name(self) -> str:
        """Train run name: the same job gets the same name, so `--resume` continues an interrupted job at its next
        seed; another seed set or mode gets another (Train would return a finished run of that name unchanged).
        The leading confirm / scratch is redundant with the mode, and kept: run directories of existing experiments
        carry it."""
        lead = "scratch" if self.mode == "scratch" else "confirm"
        return f"{lead}_{self.trial_id}_{self.mode}_{self.seeds[0]}-{self.seeds[-1]}x{len(self.seeds)}"


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
    splits_ref: ObjectRef | None = None  # the driver's splits in the object store; None: each worker loads them
    stream: StreamSetup | None = None  # a streamed source (its scan, Ray Data's CPUs); None: in memory
    seed_job: SeedJob | None = None  # set: the workers run this seed job (train/seed_loop.py), not a trial
    remeasure: Remeasure | None = None  # a search trial: measure a borderline final accuracy again
    progress: Queue | None = None  # `simmim-ray train`: the driver's queue for each epoch's metrics (train/epoch_lines.py)

    def cfg(self) -> Config:
        return Config.from_dict(self.config)
