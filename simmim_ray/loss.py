"""SimMIM reconstruction loss (official normalisation) plus the search's optional terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from simmim_ray.config import LossConfig
from simmim_ray.masking import upsample_mask


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Elementwise loss, same shape as the inputs."""
    if kind == "l1":
        return F.l1_loss(pred, target, reduction="none")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="none")
    return F.mse_loss(pred, target, reduction="none")


def patch_normalise(imgs: torch.Tensor, patch_size: int, eps: float = 1e-6) -> torch.Tensor:
    """imgs: [B, C, H, W] -> same shape, each p x p patch normalised to zero mean, unit variance per channel."""
    b, c, h, w = imgs.shape
    p = patch_size
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    mean = x.mean(dim=(3, 5), keepdim=True)
    var = x.var(dim=(3, 5), keepdim=True, unbiased=False)
    return ((x - mean) / (var + eps).sqrt()).reshape(b, c, h, w)


def simmim_loss(imgs: torch.Tensor, rec: torch.Tensor, mask: torch.Tensor, patch_size: int, cfg: LossConfig,
                fg_logits: torch.Tensor | None = None, fg_mask: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
    """imgs, rec: [B, 3, H, W]; mask: [B, H/p, W/p] (1 = masked); fg_logits, fg_mask: [B, 1, H, W].

    masked = sum(l * m) / (sum(m) + 1e-5) / C with m the mask upsampled to pixels: the official formula;
    visible is its complement.
    Returns every term and their weighted sum under "loss".
    """
    target = patch_normalise(imgs, patch_size) if cfg.norm_target else imgs
    per_pixel = pixel_loss(rec.float(), target.float(), cfg.type)  # [B, C, H, W]
    c, p = per_pixel.shape[1], patch_size
    # Weight the channel-summed loss [B, H, W] by the mask upsampled to pixels: the same sums as the official
    # per-channel weighting, with the mask at a third of the size; counts come from the patch-level mask.
    per_px = per_pixel.sum(dim=1)  # [B, H, W]
    m = mask.to(per_px.dtype)
    m_px = upsample_mask(m, p).squeeze(1)  # [B, H, W]
    masked = (per_px * m_px).sum() / (m.sum() * (p * p) + 1e-5) / c
    visible = (per_px * (1.0 - m_px)).sum() / ((1.0 - m).sum() * (p * p) + 1e-5) / c
    terms = {"loss_masked": masked, "loss_visible": visible}
    total = cfg.masked_weight * masked + cfg.visible_weight * visible
    if fg_logits is not None and fg_mask is not None:
        fgbg = F.binary_cross_entropy_with_logits(fg_logits.float(), fg_mask.float())
        terms["loss_fgbg"] = fgbg
        total = total + cfg.fgbg_weight * fgbg
    terms["loss"] = total
    return terms
