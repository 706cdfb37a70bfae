"""`attention`: scaled dot-product attention that picks the faster CPU path for short sequences.

Why: on CPU, `F.scaled_dot_product_attention` runs a flash kernel built for long sequences. For the token counts of
small images (65 tokens for the digits default, 145 for ViT-B/16 at 192 px) two batched matmuls and a softmax are
faster, forward + backward, up to a few hundred tokens (measured: benchmarks/RESULTS.md, step_throughput
ablation). The price is the [B, heads, N, N] probabilities kept for the backward, which is
small below the threshold. GPUs and long sequences keep SDPA's kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Longest sequence that takes the matmul path on CPU; measured crossover between 145 and 325 tokens at head dim 64,
# near 257 at head dims 16-32. 200 covers ViT-B/16 at 224 px (197 tokens).
MATMUL_MAX_TOKENS = 200


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """q, k, v: [B, heads, N, d] (any strides) -> [B, heads, N, d]; same maths as SDPA without a mask."""
    b, h, n, d = q.shape
    if q.device.type != "cpu" or n > MATMUL_MAX_TOKENS:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    # scale q (N x d) rather than the scores (N x N): fewer multiplies, same result up to rounding
    scores = torch.bmm(q.reshape(b * h, n, d) * d ** -0.5, k.reshape(b * h, n, d).transpose(1, 2))
    probs = scores.softmax(-1)
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p)
    return torch.bmm(probs, v.reshape(b * h, n, d)).view(b, h, n, d)
