"""Evaluation protocols on a pre-trained encoder: fine-tune (paper), linear probe, k-NN.

Data-parallel aware: test loaders hold each rank's disjoint shard and counts are summed over ranks.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from simmim_ray.config import EvalConfig
from simmim_ray.engine.flat_adamw import clip_grad_norm_
from simmim_ray.engine.optim import build_optimizer, param_groups, scaled_lr, warmup_cosine
from simmim_ray.engine.pretrain import NonFiniteLoss, autocast


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank's rows of `x` (its first dimension may differ between ranks), concatenated in rank order, on
    the CPU. A collective: every rank calls it once."""
    if not _distributed():
        return x
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=device)
    padded[:x.shape[0]] = x.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(s)] for p, s in zip(parts, sizes)]).cpu()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


class Classifier(nn.Module):
    """Encoder -> mean-pooled patch tokens -> LayerNorm -> Linear (the SimMIM fine-tune head)."""

    def __init__(self, encoder: nn.Module, num_classes: int, frozen: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.frozen = frozen
        c = encoder.num_features
        # the linear probe uses a parameter-free BatchNorm, as MAE does; fine-tune the paper's LayerNorm
        self.norm = nn.BatchNorm1d(c, affine=False) if frozen else nn.LayerNorm(c)
        self.head = nn.Linear(c, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02 if not frozen else 0.01)
        nn.init.zeros_(self.head.bias)
        if frozen:
            self.encoder.requires_grad_(False)
        if hasattr(encoder, "mask_token"):  # unused without masks; DDP rejects parameters without gradients
            encoder.mask_token.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> logits [B, num_classes]."""
        if self.frozen:
            self.encoder.eval()
            with torch.no_grad():
                z = self.encoder.pooled(x)
        else:
            z = self.encoder.pooled(x)
        if self.frozen and self.training and z.shape[0] < 2:
            # a last (or corrupt-thinned) batch of one has no batch statistics: normalise with the running ones
            # instead of failing; every rank still runs forward and backward, so DDP stays in step
            n = self.norm
            return self.head(F.batch_norm(z, n.running_mean, n.running_var, training=False, eps=n.eps))
        return self.head(self.norm(z))


def accuracies(model: nn.Module, loaders: dict, device: torch.device, amp: bool = False) -> dict[str, float]:
    """{name: loader} -> {"<name>_accuracy": ..., "<name>_count": images evaluated, summed over ranks}."""
    out = {}
    for name, loader in loaders.items():
        acc, n = accuracy(model, loader, device, amp)
        out[f"{name}_accuracy"], out[f"{name}_count"] = acc, n
    return out


@torch.no_grad()
def accuracy(model: nn.Module, loader, device: torch.device, amp: bool = False) -> tuple[float, int]:
    """-> (top-1 accuracy, images evaluated), over every rank's shard."""
    model.eval()
    correct = total = 0
    for batch in loader:
        if "img" not in batch:
            continue
        with autocast(device, amp):
            logits = model(batch["img"].to(device))
        correct += int((logits.argmax(-1).cpu() == batch["label"]).sum())
        total += len(batch["label"])
    c, t = all_sum([correct, total], device)
    return c / max(t, 1), int(t)


def train_classifier(encoder: nn.Module, train_loader, eval_loaders: dict, num_classes: int, cfg: EvalConfig,
                     device: torch.device, world_size: int, wrap: Callable[[nn.Module], nn.Module],
                     linear: bool, amp: bool = False, epochs: int | None = None) -> dict[str, float]:
    """Fine-tunes a copy of `encoder` (layer-wise lr decay) or trains a linear probe on it; returns the accuracy
    on each of `eval_loaders` ({split name: loader}) as `accuracies` does."""
    epochs = cfg.epochs if epochs is None else epochs
    clf = Classifier(copy.deepcopy(encoder), num_classes, frozen=linear).to(device)
    groups = param_groups(clf, 0.0 if linear else cfg.weight_decay, None if linear else cfg.layer_decay)
    lr = scaled_lr(cfg.base_lr, cfg.batch_size * world_size)
    opt = build_optimizer(groups, lr)  # before wrap: it moves the parameters' storage into flat buffers
    model = wrap(clf)
    iters = max(1, epochs * len(train_loader))
    sched = warmup_cosine(opt, lr, lr * 1e-2, max(1, iters // 10), iters)
    smoothing = 0.0 if linear else cfg.label_smoothing
    last = 0.0
    for epoch in range(epochs):
        if hasattr(getattr(train_loader, "sampler", None), "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        for batch in train_loader:
            if "img" not in batch:
                continue
            with autocast(device, amp):
                logits = model(batch["img"].to(device))
            loss = F.cross_entropy(logits.float(), batch["label"].to(device), label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm_(opt, model.parameters(), 5.0)
            opt.step()
            sched.step()
            last = loss.detach()
    if epochs and not math.isfinite(float(last)):
        raise NonFiniteLoss(f"non-finite loss in {'linear probe' if linear else 'fine-tuning'}: {float(last)}")
    # evaluate the bare classifier: a DDP forward may broadcast buffers (BatchNorm, Swin's position index), a
    # collective that would hang when ranks hold different numbers of evaluation batches; sync them once instead
    if _distributed():
        for b in clf.buffers():
            dist.broadcast(b, 0)
    return accuracies(clf, eval_loaders, device, amp)


@torch.no_grad()
def features(encoder: nn.Module, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (L2-normalised pooled features [N, C], labels [N]) on the CPU."""
    encoder.eval()
    feats, labels = [], []
    for batch in loader:
        if "img" not in batch:
            continue
        feats.append(F.normalize(encoder.pooled(batch["img"].to(device)).float(), dim=-1).cpu())
        labels.append(batch["label"])
    if not feats:  # an empty shard (more ranks than held-out images)
        return torch.zeros(0, encoder.num_features), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels)


def knn_accuracy(encoder: nn.Module, bank_loader, query_loaders: dict, num_classes: int, k: int,
                 device: torch.device, temperature: float = 0.07, gather_bank: bool = False) -> dict[str, float]:
    """Weighted k-NN (cosine, exp(sim/T) votes) with the labelled set as bank and each of `query_loaders`
    ({split name: this rank's shard}) as queries -> {"<name>_accuracy", "<name>_count"}. `gather_bank`: each
    rank's `bank_loader` holds its share of the labelled set; the bank is their union."""
    was_training = encoder.training
    bank, bank_y = features(encoder, bank_loader, device)
    if gather_bank:
        bank, bank_y = gather_rows(bank, device), gather_rows(bank_y, device)
    out = {}
    for name, loader in query_loaders.items():
        query, query_y = features(encoder, loader, device)
        sims = query @ bank.T  # [Q, N]
        top, idx = sims.topk(min(k, bank.shape[0]), dim=1)
        votes = torch.zeros(query.shape[0], num_classes).scatter_add_(1, bank_y[idx], (top / temperature).exp())
        correct = int((votes.argmax(1) == query_y).sum())
        c, t = all_sum([correct, len(query_y)], device)
        out[f"{name}_accuracy"], out[f"{name}_count"] = c / max(t, 1), int(t)
    encoder.train(was_training)
    return out
