"""AdamW with the SimMIM no-decay rules and layer-wise lr decay; warmup + cosine stepped per iteration."""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from simmim_ray.engine.flat_adamw import FlatAdamW, can_flatten
from simmim_ray.models.param_rules import ParamRules


def layer_id(rules: ParamRules, name: str) -> int:
    """A parameter's depth (name inside the encoder) for layer-wise lr decay, by the encoder's first matching
    pattern; num_layers + 1 (above the last block) when none matches."""
    for pattern, layer in rules.layers:
        m = re.match(pattern, name)
        if m:
            return layer if isinstance(layer, int) else layer(m)
    return rules.num_layers + 1


def decays(rules: ParamRules | None, name: str, p: torch.Tensor, inside: bool) -> bool:
    """The SimMIM rule: no weight decay on 1-D parameters (norms), biases, nor on what the encoder's rules exempt
    (tokens, position embeddings and tables)."""
    if p.ndim <= 1 or name.endswith(".bias"):
        return False
    return not (inside and rules is not None and any(re.search(pat, name) for pat in rules.no_decay))


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None,
                 encoder_attr: str = "encoder") -> list[dict]:
    """AdamW groups by the encoder's `param_rules()` (models/param_rules.py): weight decay per `decays`; with
    `layer_decay`, each encoder parameter's lr is scaled by decay^(L + 1 - layer_id), whatever sits on top of the
    encoder (heads, the classifier's norm) by 1."""
    enc = getattr(model, encoder_attr, None)
    rules = enc.param_rules() if enc is not None else None
    prefix = encoder_attr + "."
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        inside = name.startswith(prefix)
        inner = name[len(prefix):] if inside else name
        no_decay = not decays(rules, inner, p, inside)
        layer = 0
        scale = 1.0
        if layer_decay is not None and rules is not None:
            # parameters outside the encoder (the classifier's norm and head) sit above its last layer; left at
            # layer 0 they would share the embeddings' group and its smallest lr
            layer = layer_id(rules, inner) if inside else rules.num_layers + 1
            scale = layer_decay ** (rules.num_layers + 1 - layer)
        key = (no_decay, layer)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        groups[key]["params"].append(p)
    return list(groups.values())


def build_optimizer(groups: list[dict], lr: float, betas=(0.9, 0.999), flat: bool = True) -> torch.optim.Optimizer:
    """AdamW over `groups` (their `lr_scale` applied). Build it before wrapping the model in DDP or moving it:
    with `flat`, the parameters' storage moves into the optimiser's flat buffers."""
    for g in groups:
        g["lr"] = lr * g.pop("lr_scale", 1.0)
    # fused: one kernel per parameter group for the whole update (CPU and CUDA); else foreach: one kernel per op
    # over all tensors. Either beats a Python loop per parameter; fused halved the optimiser's time on CPU.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    kwargs = dict(lr=lr, betas=tuple(betas), eps=1e-8, fused=fused, foreach=not fused)
    # one flat buffer per group: zeroing, clipping and the update become one op per group (engine/flat_adamw.py)
    if flat and can_flatten(groups):
        return FlatAdamW(groups, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def warmup_cosine(optimizer: torch.optim.Optimizer, base_lr: float, min_lr: float, warmup_iters: int,
                  total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the group's lr, then cosine down to min_lr * (group lr / base lr); per-iteration."""
    floor = min(min_lr / base_lr, 1.0)

    def factor(it: int) -> float:
        if it < warmup_iters:
            return (it + 1) / warmup_iters
        t = (it - warmup_iters) / max(1, total_iters - warmup_iters)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The SimMIM rule: lr = base_lr * global batch / 512 (MAE uses 256)."""
    return base_lr * global_batch / 512
