"""ViT encoder from torchvision's VisionTransformer with a SimMIM mask token."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from simmim_ray.models.attention import attention
from simmim_ray.models.onednn import linear
from simmim_ray.models.param_rules import ParamRules


def block_forward(block: EncoderBlock, x: torch.Tensor) -> torch.Tensor:
    """torchvision's `EncoderBlock.forward` with the same parameters and maths, batch-first throughout.

    x: [B, N, C] -> [B, N, C]. In training, `nn.MultiheadAttention` transposes to sequence-first, splits q/k/v
    through a zero-filled copy and transposes back: about a quarter of a small ViT's step on CPU went into those
    copies. Here one fused qkv matmul is viewed as [B, N, 3, heads, C/heads] and fed to SDPA directly. The four
    matmuls go through `onednn.linear` (oneDNN on CPU, see there).
    """
    attn, mlp = block.self_attention, block.mlp  # mlp: Linear, GELU, Dropout, Linear, Dropout
    b, n, c = x.shape
    h = attn.num_heads
    y = block.ln_1(x)
    # unbind the q/k/v axis where it lies: its backward then stacks the three grads straight into the qkv
    # matmul's [B, N, 3, heads, C/heads] layout, with no permuted copy
    q, k, v = linear(y, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, h, c // h).unbind(2)
    y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                  dropout_p=attn.dropout if attn.training else 0.0)
    y = linear(y.transpose(1, 2).reshape(b, n, c), attn.out_proj.weight, attn.out_proj.bias)
    x = block.dropout(y) + x
    y = mlp[2](mlp[1](linear(block.ln_2(x), mlp[0].weight, mlp[0].bias)))
    return x + mlp[4](linear(y, mlp[3].weight, mlp[3].bias))


def patch_embed(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The stride-p, p x p patch convolution as one matmul: x: [B, 3, H, W] -> tokens [B, N, C], N = (H/p)(W/p).

    Same weights and result as `conv(x).flatten(2).transpose(1, 2)`. On CPU, oneDNN's convolution backward cost
    ~0.2 ms per call on the digits model (a tiny product), more than the matmul and the patch copy together.
    """
    b, c, hh, ww = x.shape
    p = conv.kernel_size[0]
    patches = x.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
    return linear(patches, conv.weight.flatten(1), conv.bias)


def mask_tokens(tokens: torch.Tensor, mask: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """tokens [B, N, C] with every masked position (mask [B, H/p, W/p], 1 = masked) replaced by `token` [1, 1, C]."""
    # a select, not tokens * (1 - m) + token * m: same values for a 0/1 mask, one op instead of four
    return torch.where(mask.flatten(1).unsqueeze(-1).bool(), token.to(tokens.dtype), tokens)


class ViTEncoder(nn.Module):
    """Wraps torchvision's ViT; the mask token replaces masked patch embeddings before pos-embedding and CLS."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float):
        super().__init__()
        vit = VisionTransformer(image_size=img_size, patch_size=patch_size, num_layers=depth,
                                num_heads=num_heads, hidden_dim=embed_dim,
                                mlp_dim=int(embed_dim * mlp_ratio), num_classes=1)
        del vit.heads  # classification lives in the eval head, not here
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.patch_size = patch_size
        self.stride = patch_size
        self.num_features = embed_dim
        self.num_layers = depth

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, 3, H, W], mask: [B, H/p, W/p] (1 = masked) or None -> tokens [B, 1 + N, C] (after final norm)."""
        tokens = patch_embed(self.vit.conv_proj, x)  # [B, N, C]
        if mask is not None:
            tokens = mask_tokens(tokens, mask, self.mask_token)
        cls = self.vit.class_token.expand(tokens.shape[0], -1, -1)
        enc = self.vit.encoder
        z = enc.dropout(torch.cat([cls, tokens], dim=1) + enc.pos_embedding)
        for block in enc.layers:
            z = block_forward(block, z)
        return enc.ln(z)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> feature map [B, C, H/p, W/p] (CLS dropped), what the SimMIM head decodes."""
        tokens = self.forward_features(x, mask)[:, 1:]
        b, n, c = tokens.shape
        h = int(n ** 0.5)
        return tokens.transpose(1, 2).reshape(b, c, h, h)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens: [B, C] (the fine-tune protocol's input, before its norm)."""
        return self.forward_features(x)[:, 1:].mean(1)

    def param_rules(self) -> ParamRules:
        """Embeddings (patch projection, CLS, position, mask token) at layer 0, block i at i + 1 (the official
        `get_vit_layer`); the tokens and position embedding are exempt from weight decay."""
        return ParamRules(
            num_layers=self.num_layers,
            no_decay=(r"^mask_token$", r"^vit\.class_token$", r"^vit\.encoder\.pos_embedding$"),
            layers=((r"vit\.conv_proj\.|vit\.class_token$|vit\.encoder\.pos_embedding$|mask_token$", 0),
                    (r"vit\.encoder\.layers\.encoder_layer_(\d+)\.", lambda m: int(m[1]) + 1)))
