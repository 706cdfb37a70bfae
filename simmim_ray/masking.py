"""SimMIM mask generator with the official semantics (built in the data pipeline, not the model)."""
from __future__ import annotations

import math

import torch


class MaskGenerator:
    """Random block mask: exactly ceil(ratio * units) of the (input/mask_patch)^2 units are masked.

    The mask is returned on the *model-patch* grid ([input/model_patch]^2), each mask unit repeated
    `mask_patch / model_patch` times per side, as the official `MaskGenerator` does.
    """

    def __init__(self, input_size: int, mask_patch_size: int, model_patch_size: int, mask_ratio: float):
        if input_size % mask_patch_size or mask_patch_size % model_patch_size:
            raise ValueError(f"`input % mask_patch == 0 and mask_patch % model_patch == 0` must hold, "
                             f"but got {input_size}, {mask_patch_size}, {model_patch_size}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"`0 < mask_ratio < 1` must hold, but got {mask_ratio}")
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size ** 2
        # round() first so 10 * 0.3 = 3.0000000000000004 masks 3 units, not 4.
        self.mask_count = math.ceil(round(self.token_count * mask_ratio, 9))

    def __call__(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns mask: [input/model_patch, input/model_patch] int64, 1 = masked."""
        idx = torch.randperm(self.token_count, generator=generator)[: self.mask_count]
        mask = torch.zeros(self.token_count, dtype=torch.long)
        mask[idx] = 1
        mask = mask.view(self.rand_size, self.rand_size)
        return mask.repeat_interleave(self.scale, 0).repeat_interleave(self.scale, 1)


def upsample_mask(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """mask: [B, h, w] on the model-patch grid -> [B, 1, h*p, w*p] pixel mask (trap: by model patch, not stride)."""
    return mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1)
