"""`linear`: F.linear whose fp32 CPU matmuls (forward and backward) run on oneDNN instead of the BLAS.

Why: PyTorch's CPU matmul calls MKL, and MKL runs its AVX2 code on AMD CPUs even when they have AVX-512; oneDNN
(shipped inside PyTorch) does not look at the vendor. On AMD CPUs with AVX-512 an fp32 GEMM thus runs about twice as
fast through oneDNN (benchmarks/step_throughput.py --ablate). Same fp32 arithmetic (oneDNN's default strict fp32
mode; PyTorch's `float32_matmul_precision` still applies), results equal to float rounding.
Everything else (GPU, other dtypes, autocast, no oneDNN in this build) goes to `F.linear`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_ON = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# weight-gradient products up to this many multiply-adds (M x in x out) use torch.mm, see _OneDNNLinear.backward
_SMALL_GRAD_MACS = 10_000_000


def _mm_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a: [M, K], b: [N, K] (any strides) -> a @ b.T + bias: [M, N], by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return _mm_t(x2, weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # not twice differentiable: oneDNN's op has no derivative of its own
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])  # [M, out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm_t(g2, weight.t()).view(*grad.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            # gw = g2.T @ x2 [out, in]. oneDNN copies its transposed "input" operand first; on small products that
            # copy costs more than the BLAS's slower kernel (which reads transposes in place), so they go to
            # torch.mm (measured: 4M multiply-adds 55-61 vs 74-81 us; from ~15M on, oneDNN is faster). On larger
            # ones oneDNN is faster with the wider of the two as its "weight" side (measured).
            if g2.shape[0] * weight.numel() <= _SMALL_GRAD_MACS:
                gw = torch.mm(g2.t(), x2)
            elif weight.shape[1] >= weight.shape[0]:
                gw = _mm_t(g2.t(), x2.t())
            else:
                gw = _mm_t(x2.t(), g2.t()).t().contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Same as `F.linear(x, weight, bias)`; x: [..., in], weight: [out, in], bias: [out] -> [..., out]."""
    if (_ON and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and x.numel() > 0):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)
