"""SimMIM transforms: random resized crop + flip + normalise, applied jointly to the foreground mask."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from simmim_ray.config import Config
from simmim_ray.masking import MaskGenerator


def flips(cfg: Config) -> list:
    """Horizontal flip, except on digits: a mirrored 2, 3, 4, 7 or 9 is not a digit (it would teach the model
    images of no class)."""
    return [] if cfg.data.source == "digits" else [v2.RandomHorizontalFlip()]


class PretrainTransform:
    """(PIL img, label, PIL fg | None) -> {"img": [3,H,W], "mask": [H/p,W/p], "fg": [1,H,W] (zeros without fg)}."""

    def __init__(self, cfg: Config, mean, std) -> None:
        size = cfg.model.img_size
        self.geom = v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.67, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            *flips(cfg),
        ])
        self.to_float = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        self.mask_gen = MaskGenerator(size, cfg.mask.patch_size, cfg.model.patch_size, cfg.mask.ratio)
        self.size = size

    def __call__(self, record) -> dict | None:
        if record is None:
            return None
        img, _, fg = record
        img = v2.functional.pil_to_tensor(img)
        fgt = tv_tensors.Mask(v2.functional.pil_to_tensor(fg) if fg is not None else torch.zeros_like(img[:1]))
        img, fgt = self.geom(tv_tensors.Image(img), fgt)
        return {"img": self.to_float(img), "mask": self.mask_gen(),
                "fg": (fgt.as_subclass(torch.Tensor) > 127).float()}


class EvalTransform:
    """(PIL img, label, _) -> {"img": [3,H,W], "label": int}; light crop (+flip) when `train`, resize otherwise."""

    def __init__(self, cfg: Config, mean, std, train: bool) -> None:
        size = cfg.model.img_size
        geom = ([v2.RandomResizedCrop(size, scale=(0.67, 1.0), antialias=True), *flips(cfg)]
                if train else [v2.Resize((size, size), antialias=True)])
        self.t = v2.Compose([v2.PILToTensor(), *geom, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, record) -> dict | None:
        if record is None:
            return None
        img, label, _ = record
        return {"img": self.t(img), "label": label}


class Transformed(torch.utils.data.Dataset):
    def __init__(self, ds, transform) -> None:
        self.ds, self.transform = ds, transform

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.transform(self.ds[i])


def collate_skip(batch: list[dict | None]) -> dict:
    """Stack the readable samples; `skipped` counts the unreadable ones (corrupt images are not fatal)."""
    good = [b for b in batch if b is not None]
    out = {"skipped": len(batch) - len(good)}
    if good:
        out.update(torch.utils.data.default_collate(good))
    return out
