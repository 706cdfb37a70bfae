"""TensorBoard logging from rank 0: scalars per epoch, image grids. (A search's HParams table is written by its
driver, from the experiment record: search/answer/hparams.py.)

Writes locally; when the run directory is a URI (s3://, gs://) the event files are copied there each epoch.
"""
from __future__ import annotations

import tempfile

from torch.utils.tensorboard import SummaryWriter

from simmim_ray.metrics import PROXY_KNN


class TBLogger:
    def __init__(self, log_dir: str, enabled: bool) -> None:
        self.enabled = enabled
        self.remote = "://" in log_dir and not log_dir.startswith("file://")
        self.target = log_dir
        if not enabled:
            return
        local = tempfile.mkdtemp(prefix="simmim_tb_") if self.remote else log_dir.removeprefix("file://")
        self.local = local
        self.writer = SummaryWriter(local)

    def epoch(self, run, metrics: dict, final: bool) -> None:
        if not self.enabled:
            return
        step = metrics["epoch"]
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(_tag(k), v, step)
        if run.cfg.train.log_images:
            self.writer.add_image("images/original|masked|reconstruction", run.image_grid(), step)
        self.writer.flush()
        self._sync()

    def _sync(self) -> None:
        if self.remote:
            import pyarrow.fs as pafs

            pafs.copy_files(self.local, self.target, destination_filesystem=None)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self._sync()


def _tag(key: str) -> str:
    if key.startswith("loss"):
        return f"loss/{key}"
    if key.endswith("_accuracy") or key == PROXY_KNN:
        return f"eval/{key}"
    return f"train/{key}"
