"""`models.attention.attention` must be SDPA (values and grads) on either of its paths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simmim_ray.models import attention


def _qkv(b: int, h: int, n: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # [B, N, 3, heads, d] then transposed, as the ViT block passes them: strided, not contiguous
    qkv = torch.randn(b, n, 3, h, d, generator=g)
    return [t.transpose(1, 2) for t in qkv.unbind(2)]


@pytest.mark.parametrize("n", [17, 65, attention.MATMUL_MAX_TOKENS + 1])
def test_matches_sdpa_forward_and_backward(n):
    q, k, v = _qkv(2, 3, n, 8)
    upstream = torch.randn(2, 3, n, 8)

    def run(fn):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        y = fn(*leaves)
        y.backward(upstream)
        return y.detach(), [t.grad for t in leaves]

    y_ref, g_ref = run(F.scaled_dot_product_attention)
    y, grads = run(attention.attention)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_short_sequences_take_the_matmul_path_long_ones_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    attention.attention(*_qkv(1, 2, attention.MATMUL_MAX_TOKENS, 4))
    assert calls == []
    attention.attention(*_qkv(1, 2, attention.MATMUL_MAX_TOKENS + 1, 4))
    assert calls == [1]


def test_dropout_applies_on_the_matmul_path():
    q, k, v = _qkv(2, 2, 9, 4)
    torch.manual_seed(0)
    dropped = attention.attention(q, k, v, dropout_p=0.5)
    assert not torch.allclose(dropped, attention.attention(q, k, v))
    assert torch.isfinite(dropped).all()


def test_both_paths_count_the_same_model_flops():
    """The flop counter must not depend on the path: SDPA's backward counts no recomputation of the scores."""
    from simmim_ray.models.factory import flop_counter

    n = attention.MATMUL_MAX_TOKENS
    counts = []
    for fn in (attention.attention, F.scaled_dot_product_attention):
        q, k, v = [t.detach().clone().requires_grad_() for t in _qkv(2, 3, n, 8)]
        with flop_counter() as counter:
            fn(q, k, v).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 3 * 2 * (2 * 2 * 3 * n * n * 8)  # fwd + 2x for bwd; 2 matmuls of 2*M*N*K
