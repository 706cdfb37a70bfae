import pytest
import torch
import torch.nn.functional as F

from simmim_ray.config import LossConfig
from simmim_ray.loss import patch_normalise, simmim_loss
from simmim_ray.masking import MaskGenerator

P = 4  # model patch size


def _batch(b=3, size=16, seed=0, ratio=0.5):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(b, 3, size, size, generator=g)
    rec = torch.randn(b, 3, size, size, generator=g)
    gen = MaskGenerator(size, 8, P, ratio)
    mask = torch.stack([gen(g) for _ in range(b)])  # [B, H/P, W/P]
    return imgs, rec, mask


def official(x, x_rec, mask, patch_size, in_chans=3):
    """microsoft/SimMIM models/simmim.py, written out from its published formula."""
    mask_up = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2).unsqueeze(1).contiguous()
    loss_recon = F.l1_loss(x, x_rec, reduction="none")
    return (loss_recon * mask_up).sum() / (mask_up.sum() + 1e-5) / in_chans


def test_perfect_reconstruction_is_zero():
    imgs, _, mask = _batch()
    out = simmim_loss(imgs, imgs.clone(), mask, P, LossConfig())
    assert out["loss"].item() == 0.0
    assert out["loss_masked"].item() == 0.0 and out["loss_visible"].item() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_official_formula(seed):
    imgs, rec, mask = _batch(seed=seed)
    ours = simmim_loss(imgs, rec, mask, P, LossConfig())
    ref = official(imgs, rec, mask, P)
    torch.testing.assert_close(ours["loss"], ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours["loss_masked"], ref, rtol=1e-6, atol=1e-7)


def test_mask_is_upsampled_by_model_patch_not_stride():
    """With a [B, 4, 4] mask on 16 px images only patch 4 covers the image; any other factor would not match."""
    imgs, rec, mask = _batch()
    ref = official(imgs, rec, mask, P)
    ours = simmim_loss(imgs, rec, mask, P, LossConfig())["loss"]
    torch.testing.assert_close(ours, ref)
    with pytest.raises(RuntimeError):  # a wrong factor would give a mis-shaped pixel mask
        simmim_loss(imgs, rec, mask, 2 * P, LossConfig())


def test_visible_pixels_do_not_change_masked_loss():
    imgs, rec, mask = _batch()
    m = mask.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1).bool().expand_as(rec)
    base = simmim_loss(imgs, rec, mask, P, LossConfig(visible_weight=0.0))["loss"]
    rec2 = rec.clone()
    rec2[~m] += 10.0  # wreck every visible pixel of the reconstruction
    imgs2 = imgs.clone()
    imgs2[~m] -= 3.0  # and of the target
    assert simmim_loss(imgs2, rec2, mask, P, LossConfig(visible_weight=0.0))["loss"].item() == pytest.approx(
        base.item(), rel=1e-6)
    # changing a masked pixel does change it
    rec3 = rec.clone()
    rec3[m] += 1.0
    assert simmim_loss(imgs, rec3, mask, P, LossConfig())["loss"].item() != pytest.approx(base.item())


def test_visible_weight_adds_the_visible_term():
    imgs, rec, mask = _batch()
    terms = simmim_loss(imgs, rec, mask, P, LossConfig(visible_weight=0.5))
    vis_up = 1.0 - mask.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1).float()
    expected_vis = (F.l1_loss(imgs, rec, reduction="none") * vis_up).sum() / (vis_up.sum() + 1e-5) / 3
    torch.testing.assert_close(terms["loss_visible"], expected_vis)
    torch.testing.assert_close(terms["loss"], terms["loss_masked"] + 0.5 * expected_vis)
    # now visible pixels matter
    rec2 = rec.clone()
    rec2[vis_up.bool().expand_as(rec2)] += 1.0
    assert simmim_loss(imgs, rec2, mask, P, LossConfig(visible_weight=0.5))["loss"] > terms["loss"]


def test_masked_weight_scales():
    imgs, rec, mask = _batch()
    one = simmim_loss(imgs, rec, mask, P, LossConfig())["loss"]
    two = simmim_loss(imgs, rec, mask, P, LossConfig(masked_weight=2.0))["loss"]
    torch.testing.assert_close(two, 2 * one)


def test_fgbg_term():
    imgs, rec, mask = _batch()
    g = torch.Generator().manual_seed(5)
    fg = (torch.rand(3, 1, 16, 16, generator=g) > 0.5).float()
    logits = torch.randn(3, 1, 16, 16, generator=g)
    cfg = LossConfig(fgbg_weight=0.3)
    terms = simmim_loss(imgs, rec, mask, P, cfg, logits, fg)
    bce = F.binary_cross_entropy_with_logits(logits, fg)
    torch.testing.assert_close(terms["loss_fgbg"], bce)
    torch.testing.assert_close(terms["loss"], terms["loss_masked"] + 0.3 * bce)
    # confident, correct logits give a near-zero BCE
    good = simmim_loss(imgs, rec, mask, P, cfg, (fg * 2 - 1) * 20, fg)["loss_fgbg"]
    assert good.item() < 1e-6
    # without the head's outputs there is no fg/bg term
    assert "loss_fgbg" not in simmim_loss(imgs, rec, mask, P, cfg)


@pytest.mark.parametrize("kind,fn", [("l2", F.mse_loss), ("smooth_l1", F.smooth_l1_loss)])
def test_other_pixel_losses(kind, fn):
    imgs, rec, mask = _batch()
    m = mask.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1).float()
    expected = (fn(rec, imgs, reduction="none") * m).sum() / (m.sum() + 1e-5) / 3
    out = simmim_loss(imgs, rec, mask, P, LossConfig(type=kind))["loss"]
    torch.testing.assert_close(out, expected)
    assert out.item() != pytest.approx(official(imgs, rec, mask, P).item())


def test_norm_target_uses_per_patch_normalised_target():
    imgs, _, mask = _batch()
    target = patch_normalise(imgs, P)
    patches = target.reshape(3, 3, 4, P, 4, P)
    torch.testing.assert_close(patches.mean(dim=(3, 5)), torch.zeros(3, 3, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(patches.var(dim=(3, 5), unbiased=False), torch.ones(3, 3, 4, 4), atol=1e-3, rtol=0)
    # predicting the normalised target is perfect under norm_target, not under the plain target
    assert simmim_loss(imgs, target, mask, P, LossConfig(norm_target=True))["loss"].item() < 1e-6
    assert simmim_loss(imgs, target, mask, P, LossConfig())["loss"].item() > 0.1


def test_loss_has_gradients_only_through_masked_pixels():
    imgs, rec, mask = _batch()
    rec = rec.requires_grad_(True)
    simmim_loss(imgs, rec, mask, P, LossConfig())["loss"].backward()
    m = mask.repeat_interleave(P, 1).repeat_interleave(P, 2).unsqueeze(1).bool().expand_as(rec)
    assert rec.grad[~m].abs().max().item() == 0.0
    assert rec.grad[m].abs().min().item() > 0.0
