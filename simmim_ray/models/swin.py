"""Swin (v1 / v2 blocks) encoder from torchvision's SwinTransformer with a SimMIM mask token."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.swin_transformer import (PatchMerging, PatchMergingV2, SwinTransformer,
                                                 SwinTransformerBlock, SwinTransformerBlockV2)


class SwinEncoder(nn.Module):
    """Built from `SwinTransformer(...)` directly: `swin_t(embed_dim=...)` refuses custom widths."""

    def __init__(self, patch_size: int, embed_dim: int, depths: list[int], heads: list[int], window_size: int,
                 mlp_ratio: float, drop_path: float, v2: bool):
        super().__init__()
        swin = SwinTransformer(
            patch_size=[patch_size, patch_size], embed_dim=embed_dim, depths=list(depths), num_heads=list(heads),
            window_size=[window_size, window_size], mlp_ratio=mlp_ratio, stochastic_depth_prob=drop_path,
            num_classes=1, block=SwinTransformerBlockV2 if v2 else SwinTransformerBlock,
            downsample_layer=PatchMergingV2 if v2 else PatchMerging)
        del swin.head, swin.avgpool, swin.flatten
        self.swin = swin
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.patch_size = patch_size
        self.stride = patch_size * 2 ** (len(depths) - 1)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.num_layers = sum(depths)
        # block index offsets per stage, for layer-wise lr decay
        self._stage_offset = {2 * i + 1: sum(depths[:i]) for i in range(len(depths))}

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, 3, H, W], mask: [B, H/p, W/p] or None -> [B, H/stride, W/stride, C] after the final norm."""
        feats = self.swin.features
        z = feats[0](x)  # [B, H/p, W/p, C]
        if mask is not None:
            w = mask.unsqueeze(-1).type_as(z)
            z = z * (1 - w) + self.mask_token.to(z.dtype) * w
        for stage in feats[1:]:
            z = stage(z)
        return self.swin.norm(z)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> feature map [B, C, H/stride, W/stride]."""
        return self.forward_features(x, mask).permute(0, 3, 1, 2)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(1, 2))

    def layer_id(self, name: str) -> int:
        if name.startswith(("swin.features.0.", "mask_token")):
            return 0
        if name.startswith("swin.features."):
            parts = name.split(".")
            stage = int(parts[2])
            if stage in self._stage_offset:  # a stage: features.<stage>.<block>.
                return self._stage_offset[stage] + int(parts[3]) + 1
            return self._stage_offset.get(stage + 1, self.num_layers) + 1  # patch merging before next stage
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}
