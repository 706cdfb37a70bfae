"""Swin (v1 / v2 blocks) encoder from torchvision's SwinTransformer with a SimMIM mask token."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.swin_transformer import (PatchMerging, PatchMergingV2, SwinTransformer,
                                                 SwinTransformerBlock, SwinTransformerBlockV2)

from simmim_ray.models.param_rules import ParamRules


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
        self.depths = list(depths)

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

    def param_rules(self) -> ParamRules:
        """torchvision's layout: features[0] is the patch embedding, features[2i+1] stage i's blocks, features[2i+2]
        the patch merging after stage i. The official SimMIM fine-tune rule (`get_swin_layer`): block j of stage i
        sits at sum(depths[:i]) + j + 1; a patch merging at the id of the LAST block of the stage it closes,
        sum(depths[:i+1]). Swin-V2's reference also exempts its continuous position bias MLP and attention logit
        scale (3-D, so the 1-D rule misses it) from weight decay, as v1 exempts its relative position table."""
        d = self.depths
        return ParamRules(
            num_layers=self.num_layers,
            no_decay=(r"^mask_token$", r"relative_position_bias_table", r"\.cpb_mlp\.", r"\.logit_scale$"),
            layers=((r"mask_token$|swin\.features\.0\.", 0),
                    (r"swin\.features\.(\d+)\.(\d+)\.", lambda m: sum(d[:int(m[1]) // 2]) + int(m[2]) + 1),
                    (r"swin\.features\.(\d+)\.(reduction|norm)\.", lambda m: sum(d[:int(m[1]) // 2]))))
