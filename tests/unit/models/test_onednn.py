"""`simmim_ray.models.onednn.linear` must be F.linear, forward and backward, whichever path it takes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simmim_ray.models import onednn


# the last two are above _SMALL_GRAD_MACS: the weight grad goes to oneDNN (out > in and out < in), not torch.mm
@pytest.mark.parametrize("shape,out", [((5, 7, 16), 48), ((33, 64), 16), ((2, 3, 4, 8), 8), ((3, 200, 64), 320),
                                       ((600, 160), 128)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_f_linear_forward_and_backward(shape, out, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).float()
    w = torch.randn(out, shape[-1], generator=g)
    b = torch.randn(out, generator=g) if bias else None
    upstream = torch.randn(*shape[:-1], out, generator=g)

    def run(fn):
        leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
        y = fn(leaves[0], leaves[1], leaves[2] if bias else None)
        y.backward(upstream)
        return y.detach(), [t.grad for t in leaves]

    y_ref, g_ref = run(F.linear)
    y, grads = run(onednn.linear)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert y.shape == (*shape[:-1], out)
    for got, want in zip(grads, g_ref):
        assert got.shape == want.shape and got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)  # sums of up to 600 terms


def test_input_without_grad_and_other_dtypes_fall_back():
    x = torch.randn(4, 8)  # an input that needs no grad (first layer): only the weight gets one
    w = torch.randn(3, 8, requires_grad=True)
    onednn.linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.sum(0).expand(3, 8))
    xd, wd = torch.randn(4, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    assert onednn.linear(xd, wd).dtype == torch.float64  # not fp32: the F.linear path
    torch.testing.assert_close(onednn.linear(xd, wd), F.linear(xd, wd))


def test_vit_block_matches_torchvision_encoder_block():
    """The ViT's block_forward (oneDNN matmuls, batch-first attention) against torchvision's own block."""
    from torchvision.models.vision_transformer import EncoderBlock

    from simmim_ray.models.vit import block_forward

    torch.manual_seed(0)
    block = EncoderBlock(num_heads=4, hidden_dim=32, mlp_dim=64, dropout=0.0, attention_dropout=0.0)
    x = torch.randn(3, 17, 32)
    ref_in, our_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = block(ref_in)
    ref.square().mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    block.zero_grad()
    ours = block_forward(block, our_in)
    ours.square().mean().backward()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_in.grad, ref_in.grad, rtol=1e-4, atol=1e-6)
    for n, p in block.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
