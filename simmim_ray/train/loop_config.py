"""What the driver hands every Train worker: one typed value instead of a dict of string keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simmim_ray.config import Config


@dataclass(frozen=True)
class LoopConfig:
    config: dict  # Config.to_dict(): plain data, so the workers need no pickled classes of the driver
    tb_dir: str | None = None  # rank 0's TensorBoard directory (local path or URI); None: no TensorBoard
    threads: int = 1  # torch intra-op threads per worker
    eval_splits: tuple[str, ...] = ("val",)  # splits the final evaluation measures ("test" only outside a search)
    splits_ref: Any = None  # the driver's splits in the object store (ObjectRef), or None: each worker loads them
    stream: Any = None  # a streamed source's train.datasets.StreamSetup (scan, Ray Data's CPUs); None: in memory
    final_path: str = ""  # where rank 0 writes the final metrics (read by a restored search)
    history_path: str = ""  # where rank 0 appends each epoch's metrics

    def cfg(self) -> Config:
        return Config.from_dict(self.config)
