"""`FlatAdamW`: torch's AdamW over one contiguous buffer per parameter group, with the grads in one buffer too.

Why: a small model's step pays per tensor, not per element. The digits default has 57 parameter tensors; zeroing,
clipping (a norm per tensor, then a multiply per tensor) and the optimiser's per-tensor bookkeeping are a sizeable
share of a CPU step (benchmarks/step_throughput.py --ablate). Here each group's parameters are views into one flat
tensor and their `.grad`s views into another, so zeroing, the gradient norm, clipping and the fused AdamW update are
one or two ops per group. The module keeps its own Parameters (names, shapes, state dict unchanged); only their
storage moves.

Rules this relies on, both checked every step (and repaired, at the cost of a copy, when broken):
- grads are never set to None: autograd then accumulates into the existing views in place, and DDP copies its
  reduced buckets into them in place (it only allocates a grad that does not exist); `zero_grad` zeroes instead.
- a parameter keeps its storage: anything that rebinds `p.data` (moving the model to another device, loading
  with `assign=True`) after the optimiser is built is copied back into the flat buffer.
"""
from __future__ import annotations

import torch
from torch import nn


def can_flatten(groups: list[dict]) -> bool:
    """Flat buffers need every parameter dense, floating point, on one device and dtype within its group."""
    for g in groups:
        ps = g["params"]
        if not ps or any(p.is_sparse or not p.is_floating_point() for p in ps):
            return False
        if len({(p.device, p.dtype) for p in ps}) != 1:
            return False
    return True


class FlatAdamW(torch.optim.AdamW):
    """AdamW (same hyper-parameters and maths as `torch.optim.AdamW`) whose groups each hold one flat parameter."""

    def __init__(self, groups: list[dict], **adamw_kwargs) -> None:
        self._bindings: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []  # (param, data view, grad view)
        self._flat_grads: list[torch.Tensor] = []
        flat_groups = []
        for g in groups:
            ps = g["params"]
            total = sum(p.numel() for p in ps)
            data = torch.empty(total, device=ps[0].device, dtype=ps[0].dtype)
            grad = torch.zeros_like(data)
            off = 0
            for p in ps:
                n = p.numel()
                dv, gv = data[off:off + n].view(p.shape), grad[off:off + n].view(p.shape)
                with torch.no_grad():
                    dv.copy_(p)
                    if p.grad is not None:
                        gv.copy_(p.grad)
                p.data = dv
                p.grad = gv
                self._bindings.append((p, dv, gv))
                off += n
            flat = nn.Parameter(data)
            flat.grad = grad
            self._flat_grads.append(grad)
            flat_groups.append({**g, "params": [flat]})
        super().__init__(flat_groups, **adamw_kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - grads stay bound, see module doc
        for g in self._flat_grads:
            g.zero_()

    def _rebind(self) -> None:
        """Repairs parameters whose data or grad no longer lives in the flat buffers (see the module doc)."""
        for p, dv, gv in self._bindings:
            if p.data_ptr() != dv.data_ptr():
                with torch.no_grad():
                    dv.copy_(p)
                p.data = dv
            g = p.grad
            if g is not gv:
                with torch.no_grad():
                    if g is None:
                        gv.zero_()
                    else:
                        gv.copy_(g)
                p.grad = gv

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` (L2, same epsilon) over all groups' grads; returns the total norm."""
        self._rebind()
        norms = [torch.linalg.vector_norm(g) for g in self._flat_grads]
        total = norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms))
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in self._flat_grads:
            g.mul_(coef)
        return total

    def step(self, closure=None):
        self._rebind()
        return super().step(closure)


def clip_grad_norm_(optimizer: torch.optim.Optimizer, params, max_norm: float) -> torch.Tensor:
    """Clips through the optimiser's flat grads when it has them, else torch's foreach version over `params`."""
    if isinstance(optimizer, FlatAdamW):
        return optimizer.clip_grad_norm_(max_norm)
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
