"""Encoders (torchvision ViT / Swin building blocks) and the SimMIM wrapper."""
from simmim_ray.models.factory import build_encoder, build_simmim, count_params, encoder_flops

__all__ = ["build_encoder", "build_simmim", "count_params", "encoder_flops"]
