"""What rank 0 writes to TensorBoard, read back as TensorBoard reads it: the image grid upscaled to a readable size
with its legend in the tag, and each metric under the tag the HParams table reads it from."""
from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from simmim_ray.io.tblog import MIN_IMAGE_PX, TBLogger, image_tag, tag_of


def fake_run(img_size: int = 16, n: int = 4):
    grid = torch.rand(3, 3 * img_size, n * img_size)
    cfg = SimpleNamespace(train=SimpleNamespace(log_images=True), model=SimpleNamespace(img_size=img_size))
    return SimpleNamespace(cfg=cfg, image_grid=lambda: grid), grid


def test_image_grid_is_upscaled_sharply_with_its_legend_in_the_tag(tmp_path):
    run, grid = fake_run()
    tb = TBLogger(str(tmp_path), enabled=True)
    tb.epoch(run, {"epoch": 1, "loss": 0.5, "proxy_knn": 0.4, "params": 1234}, final=False)
    tb.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    (tag,) = acc.Tags()["images"]
    assert tag == image_tag() and "hidden patches" in tag and "predicted patches" in tag
    (img,) = acc.Images(tag)
    factor = MIN_IMAGE_PX // 16
    assert (img.height, img.width) == (3 * 16 * factor, 4 * 16 * factor)  # each image 96 px
    # nearest neighbour: every pixel of the original is a block of equal pixels (PNG keeps them exact)
    got = torch.from_numpy(np.array(Image.open(BytesIO(img.encoded_image_string)).convert("RGB"))).to(torch.int64)
    assert torch.equal(got[::factor, ::factor], got[factor - 1::factor, factor - 1::factor])
    assert torch.allclose(got[::factor, ::factor].permute(2, 0, 1) / 255.0, grid, atol=1 / 255 + 1e-6)
    assert set(acc.Tags()["scalars"]) == {tag_of(k) for k in ("epoch", "loss", "proxy_knn", "params")}
