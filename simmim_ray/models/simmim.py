"""SimMIM: encoder + one-layer prediction head (1x1 conv to stride^2*3, PixelShuffle) + optional fg/bg head."""
from __future__ import annotations

import torch
from torch import nn


class SimMIM(nn.Module):
    def __init__(self, encoder: nn.Module, fgbg_head: bool = False):
        super().__init__()
        self.encoder = encoder
        s, c = encoder.stride, encoder.num_features
        self.decoder = nn.Sequential(nn.Conv2d(c, s * s * 3, kernel_size=1), nn.PixelShuffle(s))
        # The fg/bg head predicts one logit per pixel the same way; only built when its loss weight > 0.
        self.fgbg = nn.Sequential(nn.Conv2d(c, s * s, kernel_size=1), nn.PixelShuffle(s)) if fgbg_head else None

    def forward(self, imgs: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """imgs: [B, 3, H, W], mask: [B, H/p, W/p] -> {"rec": [B, 3, H, W], "fg_logits": [B, 1, H, W]?}."""
        z = self.encoder(imgs, mask)
        out = {"rec": self.decoder(z)}
        if self.fgbg is not None:
            out["fg_logits"] = self.fgbg(z)
        return out
