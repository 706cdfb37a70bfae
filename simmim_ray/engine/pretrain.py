"""One SimMIM pre-training epoch, and the training step it repeats (also what benchmarks/ times)."""
from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn

from simmim_ray.config import LossConfig
from simmim_ray.engine.flat_adamw import clip_grad_norm_
from simmim_ray.loss import simmim_loss


class NonFiniteLoss(FloatingPointError):
    """Raised so a diverged trial fails loudly instead of reporting NaN metrics."""


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: nn.Module, imgs: torch.Tensor, mask: torch.Tensor, fg: torch.Tensor | None,
               optimizer: torch.optim.Optimizer, loss_cfg: LossConfig, patch_size: int, clip_grad: float,
               amp: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Forward, loss, backward, clip, optimiser step. imgs: [B, 3, H, W], mask: [B, H/p, W/p] on the model's
    device; fg: [B, 1, H, W] (any device, moved only when the model has a fg/bg head) or None.

    Returns (loss terms, detached on the device; gradient norm before clipping or None). No host sync.
    """
    with autocast(imgs.device, amp):
        out = model(imgs, mask)
    fg_logits = out.get("fg_logits")
    if fg_logits is not None and fg is not None:
        fg = fg.to(imgs.device, non_blocking=True)
    terms = simmim_loss(imgs, out["rec"], mask, patch_size, loss_cfg, fg_logits, fg)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    grad_norm = None
    if clip_grad > 0:
        grad_norm = clip_grad_norm_(optimizer, model.parameters(), clip_grad)
    optimizer.step()
    return {k: v.detach() for k, v in terms.items()}, grad_norm


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, loss_cfg: LossConfig,
                    patch_size: int, device: torch.device, clip_grad: float, amp: bool) -> dict[str, float]:
    """Runs one pass over `loader` (batches from `collate_skip`); returns mean loss terms and throughput."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    n_batches = n_images = skipped = 0
    grad_norm = torch.zeros((), device=device)
    start = time.perf_counter()
    for batch in loader:
        skipped += batch["skipped"]
        if "img" not in batch:
            continue
        imgs = batch["img"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        terms, norm = train_step(model, imgs, mask, batch.get("fg"), optimizer, loss_cfg, patch_size,
                                 clip_grad, amp)
        if norm is not None:
            grad_norm = norm
        scheduler.step()
        for k, v in terms.items():
            sums[k] = sums[k] + v if k in sums else v
        n_batches += 1
        n_images += imgs.shape[0]
    elapsed = time.perf_counter() - start
    # one host sync per epoch, not per step
    metrics = {k: float(v) / max(1, n_batches) for k, v in sums.items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteLoss(f"non-finite loss in pre-training: {metrics}")
    metrics.update(images_per_s=n_images / max(elapsed, 1e-9), grad_norm=float(grad_norm),
                   skipped_images=skipped, lr=optimizer.param_groups[0]["lr"], images=n_images)
    return metrics
