"""One SimMIM pre-training epoch."""
from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn

from simmim_ray.config import LossConfig
from simmim_ray.loss import simmim_loss


class NonFiniteLoss(FloatingPointError):
    """Raised so a diverged trial fails loudly instead of reporting NaN metrics."""


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
        with autocast(device, amp):
            out = model(imgs, mask)
        fg = batch["fg"].to(device, non_blocking=True) if "fg_logits" in out else None
        terms = simmim_loss(imgs, out["rec"], mask, patch_size, loss_cfg, out.get("fg_logits"), fg)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if clip_grad > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad, foreach=True)
        optimizer.step()
        scheduler.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0) + v.detach()
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
