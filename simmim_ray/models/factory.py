"""Build encoders from a ModelConfig; count parameters and FLOPs."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter as _fc

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


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _model_flops(fused_backward_flops: int) -> int:
    """torch counts a fused attention backward as 5 batched matmuls: 4 plus recomputing the scores. Model FLOPs
    (what MFU is defined on, and what attention as plain matmuls counts) have 4: 4/5 of torch's count, exact when
    q and v have the same head dim (every ViT/Swin here)."""
    return fused_backward_flops * 4 // 5


def _sdpa_cpu_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _model_flops(_fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape))


def _without_recompute(formula):
    """torch's registered formula for a fused attention backward, in model FLOPs (see `_model_flops`)."""
    def count(*args, **kwargs) -> int:
        return _model_flops(formula(*args, **kwargs))

    count._get_raw = True  # already wrapped by torch's registry: takes the op's arguments, not shapes
    return count


def _onednn_linear(input_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    """`mkldnn._linear_pointwise` (models/onednn.py): input [..., K] @ weight [N, K].T."""
    m = 1
    for d in input_shape[:-1]:
        m *= d
    return 2 * m * input_shape[-1] * weight_shape[0]


# torch's registry counts the CUDA attention kernels but not the CPU ones, nor oneDNN's linear: without these,
# attention and (on CPU) every ViT matmul would count as zero FLOPs, and a model's FLOPs would depend on the device
# it was measured on. Attention backwards count model FLOPs (no recompute), whichever kernel ran.
_aten = torch.ops.aten
EXTRA_FLOP_FORMULAS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
}
for _op in (_aten._scaled_dot_product_flash_attention_backward, _aten._scaled_dot_product_efficient_attention_backward,
            _aten._scaled_dot_product_cudnn_attention_backward, _aten._flash_attention_backward,
            _aten._efficient_attention_backward):
    if _op in _fc.flop_registry:
        EXTRA_FLOP_FORMULAS[_op] = _without_recompute(_fc.flop_registry[_op])
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
    EXTRA_FLOP_FORMULAS[torch.ops.mkldnn._linear_pointwise] = _onednn_linear


def flop_counter() -> _fc.FlopCounterMode:
    """torch's FLOP counter (matmul, conv, attention; 1 multiply-add = 2 FLOPs), attention counted on CPU too."""
    return _fc.FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def encoder_flops(encoder: nn.Module, img_size: int) -> int:
    """Forward FLOPs of the encoder for one image (torch's flop counter; matmul/conv/attention only)."""
    p = next(encoder.parameters())
    x = torch.zeros(1, 3, img_size, img_size, device=p.device, dtype=p.dtype)
    was_training = encoder.training
    encoder.eval()
    with flop_counter() as counter:
        encoder(x)
    encoder.train(was_training)
    return int(counter.get_total_flops())
