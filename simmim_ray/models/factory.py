"""Build encoders from a ModelConfig; count parameters and FLOPs."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simmim_ray.config import Config, ModelConfig
from simmim_ray.models.simmim import SimMIM
from simmim_ray.models.swin import SwinEncoder
from simmim_ray.models.vit import ViTEncoder


def build_encoder(m: ModelConfig) -> nn.Module:
    if m.arch == "vit":
        return ViTEncoder(m.img_size, m.patch_size, m.embed_dim, m.depth, m.num_heads, m.mlp_ratio)
    return SwinEncoder(m.patch_size, m.embed_dim, m.depths, m.heads, m.window_size, m.mlp_ratio, m.drop_path,
                       v2=m.arch == "swinv2")


def build_simmim(cfg: Config) -> SimMIM:
    return SimMIM(build_encoder(cfg.model), fgbg_head=cfg.loss.fgbg_weight > 0)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def encoder_flops(encoder: nn.Module, img_size: int) -> int:
    """Forward FLOPs of the encoder for one image (torch's flop counter; matmul/conv/attention only)."""
    p = next(encoder.parameters())
    x = torch.zeros(1, 3, img_size, img_size, device=p.device, dtype=p.dtype)
    was_training = encoder.training
    encoder.eval()
    with FlopCounterMode(display=False) as counter:
        encoder(x)
    encoder.train(was_training)
    return int(counter.get_total_flops())
