"""Decode + augment for streamed rows, a batch at a time, where Ray Data runs it (any node, CPU only).

Chosen by benchmarks/data_throughput.py: images decoded by image_decode.py (JPEGs by simplejpeg, with its pixel
limit and mode rules) straight to a uint8 [H, W, 3] array viewed as a channels-last [3, H, W] tensor (torch's uint8
antialiased resize works channels-last, so no layout copy); the random resized crop as one antialiased resize of
the crop box on uint8, a flip by indexing, and no float conversion:
images stay uint8 until the Train worker moves them to its device and normalises them there (stream_batches.py).
The same crop, flip and mask semantics as transforms.py (the in-memory path); a row that does not decode stays
in the batch as `valid = False` (zeros), so row counts, and so every rank's step count, never depend on it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from simmim_ray.config import Config
from simmim_ray.data.image_decode import decode_rgb
from simmim_ray.masking import MaskGenerator

PRETRAIN_SCALE, RATIO = (0.67, 1.0), (3 / 4, 4 / 3)  # as transforms.py (SimMIM's crop)


def crop_box(rng: np.random.Generator, h: int, w: int, scale, ratio) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawn from `rng`: (top, left, height, width)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_r))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def batch_masks(mg: MaskGenerator, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` masks of MaskGenerator's kind at once (uint8 [n, S/p, S/p]): exactly `mg.mask_count` of the mask units
    of each, uniformly at random, on the model-patch grid."""
    units = np.zeros((n, mg.token_count), dtype=np.uint8)
    if n:
        chosen = np.argpartition(rng.random((n, mg.token_count)), mg.mask_count - 1, axis=1)[:, :mg.mask_count]
        np.put_along_axis(units, chosen, 1, axis=1)
    grid = units.reshape(n, mg.rand_size, mg.rand_size)
    return grid.repeat(mg.scale, axis=1).repeat(mg.scale, axis=2)


class StreamTransform:
    """pyarrow Table (image[, label][, mask]) -> dict of numpy arrays, one row per input row:
    `pretrain`: img uint8 [B,3,S,S], mask uint8 [B,S/p,S/p], valid bool [B] (+ fg uint8 [B,1,S,S] with masks);
    `eval` / `eval_train` (un-augmented resize / light crop + flip): img, label int64, valid."""

    def __init__(self, cfg: Config, kind: str, with_masks: bool = False) -> None:
        if kind not in ("pretrain", "eval", "eval_train"):
            raise ValueError(f"kind must be pretrain, eval or eval_train, but got {kind!r}")
        self.kind, self.size, self.with_masks = kind, cfg.model.img_size, with_masks and kind == "pretrain"
        self.flip = cfg.data.source != "digits"  # see transforms.flips
        self.mask_args = (cfg.model.img_size, cfg.mask.patch_size, cfg.model.patch_size, cfg.mask.ratio)

    def __call__(self, table) -> dict[str, np.ndarray]:
        rng = np.random.default_rng()  # fresh entropy per batch: a Ray worker process starts every RNG alike
        s, n = self.size, table.num_rows
        img = np.empty((n, 3, s, s), dtype=np.uint8)
        valid = np.zeros(n, dtype=bool)
        images = table.column("image").to_pylist()
        masks = table.column("mask").to_pylist() if self.with_masks and "mask" in table.column_names else None
        fg = np.zeros((n, 1, s, s), dtype=np.uint8) if self.with_masks else None
        has_fg = np.zeros(n, dtype=bool)
        for k, data in enumerate(images):
            x = decode_rgb(data)
            if x is None:
                img[k] = 0
                continue
            valid[k] = True
            m = decode_rgb(masks[k], gray=True) if masks is not None else None
            x, m = self._geometry(rng, x, m)
            img[k] = x.numpy()
            if fg is not None and m is not None:
                fg[k], has_fg[k] = m.numpy(), True
        out = {"img": img, "valid": valid}
        if self.kind == "pretrain":
            out["mask"] = batch_masks(MaskGenerator(*self.mask_args), rng, n)
            if fg is not None:
                out["fg"], out["has_fg"] = fg, has_fg
        else:
            out["label"] = table.column("label").to_numpy().astype(np.int64)
        return out

    def _geometry(self, rng, x: torch.Tensor, m: torch.Tensor | None):
        s = self.size
        if self.kind == "eval":
            return F.resize(x, [s, s], antialias=True), None
        top, left, h, w = crop_box(rng, x.shape[-2], x.shape[-1], PRETRAIN_SCALE, RATIO)
        x = F.resized_crop(x, top, left, h, w, [s, s], antialias=True)
        if m is not None:
            m = F.resized_crop(m, top, left, h, w, [s, s], interpolation=InterpolationMode.NEAREST)
            m = (m > 127).to(torch.uint8)
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
            m = m.flip(-1) if m is not None else None
        return x, m
