"""FlatAdamW must train exactly like torch's AdamW over the same groups, clipping included, with or without DDP,
and survive code that drops grads or rebinds parameters."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from simmim_ray.config import Config
from simmim_ray.engine.flat_adamw import FlatAdamW, clip_grad_norm_
from simmim_ray.engine.optim import build_optimizer, param_groups
from simmim_ray.engine.pretrain import train_step
from simmim_ray.masking import MaskGenerator
from simmim_ray.models import build_simmim

CFG = {"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
       "mask": {"patch_size": 8, "ratio": 0.5}}


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gen = MaskGenerator(16, 8, 4, 0.5)
    return torch.randn(n, 3, 16, 16, generator=g), torch.stack([gen(g) for _ in range(n)])


def _model_and_opt(flat: bool, seed: int = 0):
    cfg = Config.from_dict(CFG)
    torch.manual_seed(seed)
    model = build_simmim(cfg)
    return cfg, model, build_optimizer(param_groups(model, 0.05), lr=1e-3, flat=flat)


def _steps(cfg, model, opt, n: int, clip: float, between=None) -> list[float]:
    norms = []
    for i in range(n):
        imgs, mask = _batch(seed=i)
        _, norm = train_step(model, imgs, mask, None, opt, cfg.loss, cfg.model.patch_size, clip, False)
        norms.append(float("nan") if norm is None else float(norm))
        if between is not None:
            between(i)
    return norms


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    # atol 1e-5 (updates are ~1e-3 a step): the attention's key bias has a zero gradient in exact arithmetic, so
    # Adam turns its rounding noise, which depends on summation order, into updates of ~1e-6
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("clip", [0.0, 0.05])  # 0.05 clips every step here
def test_trains_like_torch_adamw(clip):
    cfg, ref, ref_opt = _model_and_opt(flat=False)
    _, flat, flat_opt = _model_and_opt(flat=True)
    assert isinstance(flat_opt, FlatAdamW) and not isinstance(ref_opt, FlatAdamW)
    start = [p.detach().clone() for p in flat.parameters()]
    ref_norms = _steps(cfg, ref, ref_opt, 4, clip)
    flat_norms = _steps(cfg, flat, flat_opt, 4, clip)
    if clip:
        assert min(ref_norms) > clip
        assert flat_norms == pytest.approx(ref_norms, rel=1e-5)
    _assert_same_params(ref, flat)
    assert not all(torch.equal(p, s) for p, s in zip(flat.parameters(), start))  # it did train


def test_module_keeps_its_parameters_and_state_dict():
    _, fresh, _ = _model_and_opt(flat=False)
    _, model, opt = _model_and_opt(flat=True)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q) and p.is_contiguous()
    flat_ptrs = [g["params"][0].data_ptr() for g in opt.param_groups]
    flat_ends = [g["params"][0].data_ptr() + g["params"][0].numel() * 4 for g in opt.param_groups]
    for p in model.parameters():  # every parameter lives inside one of the flat buffers
        assert any(a <= p.data_ptr() < e for a, e in zip(flat_ptrs, flat_ends))


def test_grads_dropped_by_other_code_are_picked_up():
    """model.zero_grad() sets grads to None; autograd then makes new tensors outside the flat buffer."""
    cfg, ref, ref_opt = _model_and_opt(flat=False)
    _, flat, flat_opt = _model_and_opt(flat=True)
    _steps(cfg, ref, ref_opt, 3, 0.05)
    _steps(cfg, flat, flat_opt, 3, 0.05, between=lambda i: flat.zero_grad(set_to_none=True))
    _assert_same_params(ref, flat)


def test_rebound_parameter_is_copied_back():
    cfg, ref, ref_opt = _model_and_opt(flat=False)
    _, flat, flat_opt = _model_and_opt(flat=True)
    for m in (ref, flat):  # e.g. load_state_dict(assign=True) after the optimiser was built
        m.decoder[0].weight.data = torch.zeros_like(m.decoder[0].weight)
    _steps(cfg, ref, ref_opt, 2, 0.05)
    _steps(cfg, flat, flat_opt, 2, 0.05)
    _assert_same_params(ref, flat)
    views = {p.data_ptr() for p, _, _ in flat_opt._bindings}
    assert flat.decoder[0].weight.data_ptr() in views


def test_clip_fallback_for_other_optimisers():
    _, model, opt = _model_and_opt(flat=False)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1.0)
    total = clip_grad_norm_(opt, model.parameters(), 1.0)
    n = sum(p.numel() for p in model.parameters())
    assert float(total) == pytest.approx(n ** 0.5, rel=1e-5)
    assert float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()) == pytest.approx(1.0, rel=1e-4)


def _ddp_worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        models = {}
        for flat in (True, False):
            # different initial weights per rank: DDP's start-up broadcast must reach the flat buffers
            cfg, model, opt = _model_and_opt(flat=flat, seed=rank)
            ddp = DDP(model)
            for i in range(3):
                imgs, mask = _batch(seed=10 * i + rank)  # each rank its own data: grads must be averaged
                train_step(ddp, imgs, mask, None, opt, cfg.loss, cfg.model.patch_size, 0.05, False)
            models[flat] = model
        _assert_same_params(models[False], models[True])
        mine = torch.cat([p.detach().flatten() for p in models[True].parameters()])
        other = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(other, mine)
        torch.testing.assert_close(other[0], other[1])  # the replicas stayed in step
    finally:
        dist.destroy_process_group()


def test_ddp_matches_per_tensor_adamw_and_keeps_replicas_in_step():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port), nprocs=2, join=True)
