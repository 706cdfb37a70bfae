import pytest
import torch
from torchvision.models.swin_transformer import (PatchMerging, PatchMergingV2, SwinTransformer,
                                                 SwinTransformerBlock, SwinTransformerBlockV2)
from torchvision.models.vision_transformer import VisionTransformer

from simmim_ray.config import Config
from simmim_ray.models import build_encoder, build_simmim, count_params, encoder_flops

VIT = {"arch": "vit", "img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
       "mlp_ratio": 2.0}
SWIN = {"arch": "swin", "img_size": 16, "patch_size": 2, "embed_dim": 16, "depths": [2, 2], "heads": [2, 4],
        "window_size": 4, "mlp_ratio": 2.0}
SWINV2 = {**SWIN, "arch": "swinv2"}


def cfg_for(model: dict, mask_patch: int = 8, **loss) -> Config:
    return Config.from_dict({"model": model, "mask": {"patch_size": mask_patch, "ratio": 0.5}, "loss": loss})


def random_mask(b: int, grid: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, grid, grid, generator=g) > 0.5).long()


@pytest.mark.parametrize("model,stride,width", [(VIT, 4, 32), (SWIN, 4, 32), (SWINV2, 4, 32)])
def test_forward_shapes(model, stride, width):
    torch.manual_seed(0)
    cfg = cfg_for(model)
    net = build_simmim(cfg).eval()
    x = torch.randn(2, 3, 16, 16)
    grid = 16 // model["patch_size"]
    mask = random_mask(2, grid)
    feat = net.encoder(x, mask)
    assert feat.shape == (2, width, 16 // stride, 16 // stride)
    assert net.encoder.stride == stride and net.encoder.num_features == width
    out = net(x, mask)
    assert out["rec"].shape == (2, 3, 16, 16)
    assert "fg_logits" not in out
    assert net.encoder.pooled(x).shape == (2, width)


def test_fgbg_head_shape():
    net = build_simmim(cfg_for(VIT, fgbg_weight=0.5))
    out = net(torch.randn(2, 3, 16, 16), random_mask(2, 4))
    assert out["fg_logits"].shape == (2, 1, 16, 16)


def test_vit_params_match_torchvision_and_formula():
    m = VIT
    enc = build_encoder(cfg_for(m).model)
    tv = VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                           num_classes=10)
    c = 32
    assert count_params(enc) == count_params(tv) - count_params(tv.heads) + c  # + mask token
    # independent formula: patch conv, cls, pos, blocks (ln, qkv, proj, ln, mlp), final ln, mask token
    n, mlp, p = (16 // 4) ** 2, 64, 4
    block = 2 * c + (3 * c * c + 3 * c) + (c * c + c) + 2 * c + (c * mlp + mlp) + (mlp * c + c)
    formula = (3 * p * p * c + c) + c + (n + 1) * c + 2 * block + 2 * c + c
    assert count_params(enc) == formula


@pytest.mark.parametrize("model,block,merge", [(SWIN, SwinTransformerBlock, PatchMerging),
                                               (SWINV2, SwinTransformerBlockV2, PatchMergingV2)])
def test_swin_params_match_torchvision(model, block, merge):
    enc = build_encoder(cfg_for(model).model)
    tv = SwinTransformer(patch_size=[2, 2], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                         mlp_ratio=2.0, num_classes=10, block=block, downsample_layer=merge)
    assert count_params(enc) == count_params(tv) - count_params(tv.head) + 16  # + mask token [1,1,1,C]
    assert count_params(enc.swin.features) == count_params(tv.features)


def test_swin_v1_and_v2_differ():
    v1 = build_encoder(cfg_for(SWIN).model)
    v2 = build_encoder(cfg_for(SWINV2).model)
    assert count_params(v1) != count_params(v2)  # v2 blocks carry the log-spaced CPB MLP and logit scale
    assert any(isinstance(mod, SwinTransformerBlockV2) for mod in v2.modules())
    assert not any(isinstance(mod, SwinTransformerBlockV2) for mod in v1.modules())


def test_widths_are_configurable():
    wide = build_encoder(cfg_for({**VIT, "embed_dim": 64, "num_heads": 4, "depth": 3}).model)
    assert wide.num_features == 64 and len(wide.vit.encoder.layers) == 3
    swin = build_encoder(cfg_for({**SWIN, "embed_dim": 8, "depths": [1, 3], "heads": [1, 2]}).model)
    assert swin.num_features == 16
    assert [len(swin.swin.features[i]) for i in (1, 3)] == [1, 3]


@pytest.mark.parametrize("model", [VIT, SWIN, SWINV2])
def test_mask_token_replaces_masked_patches(model):
    torch.manual_seed(0)
    enc = build_encoder(cfg_for(model).model).eval()
    grid = 16 // model["patch_size"]
    p = model["patch_size"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        # an all-zero mask is the same as no mask
        torch.testing.assert_close(enc(x, torch.zeros(2, grid, grid, dtype=torch.long)), enc(x))
        mask = random_mask(2, grid, seed=1)
        a = enc(x, mask)
        # masking changes the output
        assert not torch.allclose(a, enc(x))
        assert not torch.allclose(a, enc(x, random_mask(2, grid, seed=2)))
        # the pixels under masked patches are never seen: changing them leaves the output unchanged
        px = mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1).bool().expand_as(x)
        x2 = x.clone()
        x2[px] = torch.randn(int(px.sum()))
        torch.testing.assert_close(enc(x2, mask), a)
        # while changing a visible pixel does change it
        x3 = x.clone()
        x3[~px] += 1.0
        assert not torch.allclose(enc(x3, mask), a)
        # the mask token is what masked patches become: a different token gives a different output
        enc.mask_token.add_(1.0)
        assert not torch.allclose(enc(x, mask), a)


def test_mask_token_gets_gradients_and_is_trunc_normal():
    torch.manual_seed(0)
    net = build_simmim(cfg_for(VIT))
    tok = net.encoder.mask_token
    assert tok.shape == (1, 1, 32)
    assert 0.005 < tok.std().item() < 0.05  # trunc-normal std 0.02, not zeros
    out = net(torch.randn(2, 3, 16, 16), random_mask(2, 4))
    out["rec"].pow(2).mean().backward()
    assert tok.grad is not None and tok.grad.abs().sum() > 0


@pytest.mark.parametrize("model,key", [(VIT, "depth"), (SWIN, "depths")])
def test_encoder_flops_positive_and_grow_with_depth(model, key):
    shallow = build_encoder(cfg_for(model).model)
    deeper_value = 4 if key == "depth" else [2, 4]
    deep = build_encoder(cfg_for({**model, key: deeper_value}).model)
    f1, f2 = encoder_flops(shallow, 16), encoder_flops(deep, 16)
    assert f1 > 0 and f2 > f1
    # one ViT linear layer alone is 2 * N * C * C' flops; the total must exceed the patch projection
    if key == "depth":
        assert f1 > 2 * 16 * (3 * 16) * 32


def test_encoder_flops_restores_training_mode():
    enc = build_encoder(cfg_for(VIT).model).train()
    encoder_flops(enc, 16)
    assert enc.training


def test_patch_embed_and_pixel_heads_equal_their_convolutions():
    """The matmul forms of the patch convolution and the (1x1 conv, PixelShuffle) heads: same values and grads."""
    from simmim_ray.models.simmim import pixel_head
    from simmim_ray.models.vit import patch_embed

    torch.manual_seed(0)
    model = build_simmim(Config.from_dict({"loss": {"fgbg_weight": 0.5}}))  # digits default + the fg/bg head
    x = torch.randn(3, 3, 32, 32)
    z = torch.randn(3, model.encoder.num_features, 8, 8)
    conv = model.encoder.vit.conv_proj
    cases = [(lambda: patch_embed(conv, x), lambda: conv(x).flatten(2).transpose(1, 2), conv)]
    cases += [(lambda h=h: pixel_head(h, z), lambda h=h: h(z), h[0]) for h in (model.decoder, model.fgbg)]
    for ours, ref, module in cases:
        outs, grads = [], []
        for fn in (ours, ref):
            module.zero_grad()
            y = fn()
            y.square().sum().backward()
            outs.append(y.detach())
            grads.append([p.grad.clone() for p in module.parameters()])
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
