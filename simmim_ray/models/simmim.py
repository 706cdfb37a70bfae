"""SimMIM: encoder + one-layer prediction head (1x1 conv to stride^2*3, PixelShuffle) + optional fg/bg head."""
from __future__ import annotations

import torch
from torch import nn

from simmim_ray.models.onednn import linear


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
        out = {"rec": pixel_head(self.decoder, z)}
        if self.fgbg is not None:
            out["fg_logits"] = pixel_head(self.fgbg, z)
        return out


def pixel_head(head: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    """`head(z)` for a (1x1 conv, PixelShuffle(s)) head as one matmul over channels-last features and one permute.

    z: [B, C, h, w] -> [B, k, h*s, w*s]. Same weights and result; the ViT's feature map is a channels-last view of
    its tokens, so the matmul reads it in place. On CPU the 1x1 convolution's backward costs several times the
    matmul's on small models.
    """
    conv, s = head[0], head[1].upscale_factor
    y = linear(z.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)  # [B, h, w, k*s*s], PixelShuffle's order
    b, h, w, ks2 = y.shape
    k = ks2 // (s * s)
    return y.view(b, h, w, k, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, k, h * s, w * s)
