"""TensorBoard logging from rank 0: scalars per epoch, image grids. (A search's HParams table is written by its
driver, from the experiment record: search/answer/hparams.py.)

Writes locally; when the run directory is a URI (s3://, gs://) the event files are copied there each epoch.
"""
from __future__ import annotations

import math
import tempfile

import pyarrow.fs as pafs
import torch

from simmim_ray.metrics import PROXY_KNN

MIN_IMAGE_PX = 96  # each image of the grid is upscaled (nearest neighbour, pixels stay sharp) to at least this


class TBLogger:
    def __init__(self, log_dir: str, enabled: bool) -> None:
        self.enabled = enabled
        self.remote = "://" in log_dir and not log_dir.startswith("file://")
        self.target = log_dir
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter  # slow to import; the HParams writer needs only tag_of

        local = tempfile.mkdtemp(prefix="simmim_tb_") if self.remote else log_dir.removeprefix("file://")
        self.local = local
        self.writer = SummaryWriter(local)

    def epoch(self, run, metrics: dict, final: bool) -> None:
        if not self.enabled:
            return
        step = metrics["epoch"]
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(tag_of(k), v, step)
        if run.cfg.train.log_images:
            self.writer.add_image(image_tag(), upscaled(run.image_grid(), run.cfg.model.img_size), step)
        self.writer.flush()
        self._sync()

    def _sync(self) -> None:
        if self.remote:
            pafs.copy_files(self.local, self.target, destination_filesystem=None)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self._sync()


def tag_of(key: str) -> str:
    """A reported metric's Scalars tag (search/hparams.py reads the HParams table's metrics from these)."""
    if key.startswith("loss"):
        return f"loss/{key}"
    if key.endswith("_accuracy") or key == PROXY_KNN:
        return f"eval/{key}"
    return f"train/{key}"


def image_tag() -> str:
    """The image grid's tag, with its legend: TensorBoard shows a tag above its image (and has no caption)."""
    from simmim_ray.engine.run import GRID_LEGEND  # imported here: the HParams writer imports this module too

    return f"images/{GRID_LEGEND}"


def upscaled(grid, img_size: int):
    """The grid ([3, H, W]) with each image at least MIN_IMAGE_PX wide: 16 px digits are unreadable at
    TensorBoard's size."""
    factor = max(1, math.ceil(MIN_IMAGE_PX / img_size))
    if factor == 1:
        return grid
    return torch.nn.functional.interpolate(grid[None], scale_factor=factor, mode="nearest")[0]
