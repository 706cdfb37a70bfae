"""The two sides of benchmarks/step_throughput.py (our training step, HF's), and the ablation switches.

`Ours` runs `simmim_ray.engine.pretrain.train_step`, the step every trial runs, plus the lr schedule step.
`Peer` runs what HF's `Trainer` does per step for `ViTForMaskedImageModeling` with its defaults: loss inside the
model, fused AdamW (the Trainer's default on torch >= 2.8) with no decay on biases and norms, grad clipping at
`max_grad_norm`, linear schedule; bf16 autocast on GPU (`bf16=True`).
"""
from __future__ import annotations

import contextlib
import time
from unittest import mock

import torch
import torch.nn.functional as F

import simmim_ray.engine.pretrain as pretrain_mod
import simmim_ray.models.attention as attn_mod
import simmim_ray.models.onednn as onednn_mod
import simmim_ray.models.simmim as simmim_mod
import simmim_ray.models.vit as vit_mod
from simmim_ray.config import Config
from simmim_ray.engine.optim import build_optimizer, param_groups, scaled_lr, warmup_cosine
from simmim_ray.loss import simmim_loss
from simmim_ray.masking import upsample_mask
from simmim_ray.models import build_simmim

NOTES = """### What our step does, and why

- **oneDNN for the ViT's matmuls on CPU** (`simmim_ray/models/onednn.py`, used by `vit.py: block_forward` for
  qkv, attention output and both MLP matmuls, forward and backward). PyTorch's CPU matmul goes to MKL, and MKL
  runs its AVX2 kernels on AMD CPUs: on this AMD EPYC it reaches about half of what oneDNN's fp32 GEMM (shipped
  in PyTorch, vendor-neutral) reaches on the same cores (the two limits above). Same fp32 arithmetic, results equal
  to float rounding. This is the largest gain here, and it is specific to MKL on AMD: on an Intel CPU MKL already
  runs AVX-512 and the gain should mostly vanish (not measured: no Intel machine here). The peer could get it
  too; stock HF does not.
- **Batch-first attention with one fused qkv matmul** (`vit.py: block_forward`): same parameters, state dict and
  maths as torchvision's `EncoderBlock`, but `nn.MultiheadAttention` in training transposes to sequence-first,
  splits q/k/v through a zero-filled copy and transposes back; on the digits model about a quarter of the step
  went into those copies (`aten::copy_`/`fill_` in the profile). q/k/v are unbound along the axis where they lie,
  so the backward stacks their grads straight into the matmul's layout. SDPA (the CPU flash kernel) as before.
- **Attention as two matmuls and a softmax for short sequences on CPU** (`models/attention.py`, up to 200 tokens;
  SDPA above that and on GPU): PyTorch's CPU flash kernel is built for long sequences; at the digits model's 65
  tokens x head dim 16 the plain form is 2.0x faster forward + backward, at ViT-B/16 192 px's 145 x 64 1.3x, at
  325 x 64 0.66x (measured on this machine, 2 threads). Same maths; the flop counter counts both alike.
- **Flat parameter and gradient buffers for AdamW** (`engine/flat_adamw.py`): the digits model has 57 parameter
  tensors, and zeroing, clipping (a norm and a multiply per tensor) and the optimiser's per-tensor bookkeeping
  cost ~1.2 ms of a ~9 ms step. With each group's parameters as views of one tensor (grads likewise), they are
  one or two ops per group: clip 0.55 -> 0.21 ms, optimiser 0.6 -> 0.4 ms, zeroing 0.12 -> 0.02 ms per step.
  Same AdamW, same results (tests compare it with torch's, with and without DDP).
- **Small weight gradients by torch.mm**: oneDNN copies a transposed operand first; for products under 10M
  multiply-adds that copy costs more than it saves (digits: 55-61 vs 74-81 us per weight grad).
- **Patch embedding and the pixel heads as matmuls** (`vit.py: patch_embed`, `simmim.py: pixel_head`): the
  stride-p patch convolution and the 1x1 convolution + PixelShuffle, with the same weights, as one matmul each
  plus a permute; oneDNN's convolution backward cost ~0.2 ms per call on these tiny products.
- **Mask token by `torch.where`** instead of `x * (1 - m) + t * m`: identical values for a 0/1 mask, fewer ops
  (within noise).
- **Loss**: sum |x - x_rec| over channels first, then weight by the upsampled mask: the official normalisation
  (masked pixels, / count, / channels) with a third of the mask work (0.6 -> 0.4 ms per digits step: within noise).
- **Fused AdamW** (`engine/optim.py`, was `foreach`): the whole update in one kernel per parameter group;
  1.4 -> 0.7 ms per digits step at batch 8 (thread time), where the optimiser is a tenth of the step. Grad
  clipping `foreach` as before. No host sync per step: loss terms are summed on the device, read once per epoch.
- **torch.compile** is not used: at one thread it gave 1.07x on the digits step (the GEMMs and the attention
  kernel dominate, not Python), and its first step took 88 s of wall clock on this shared machine, more than a
  whole digits trial's training; every trial of a search has another shape.
- Where the time goes now (digits, batch 8, 2 threads, profiler): the linear layers' matmuls (oneDNN and
  torch.mm) about a third, attention's batched matmuls and softmax about a quarter, the optimiser and clipping
  under a tenth; the rest is elementwise ops (LayerNorm, GELU, residuals) and per-op overhead.
- FLOPs: torch's flop counter knows neither the CPU attention kernels nor oneDNN's linear;
  `simmim_ray.models.factory.flop_counter` adds both, so the two sides here (and the `flops` size metric) count
  the same FLOPs on any device.
- On a shared 2-core machine two intra-op threads spin-wait on each other while other processes hold the cores,
  and wall-clock numbers swing by 10x or more; "images per CPU-s" (process CPU time) is far steadier, and a
  `--threads 1` run makes it the step's real cost.
"""


def official_pixel_mask_loss(imgs, rec, mask, patch_size, cfg, fg_logits=None, fg_mask=None):
    """The loss as the official code writes it (upsampled pixel mask), for the ablation only (l1, no extras)."""
    m = upsample_mask(mask, patch_size).to(rec.dtype)
    per_pixel = F.l1_loss(rec.float(), imgs.float(), reduction="none")
    c = imgs.shape[1]
    masked = (per_pixel * m).sum() / (m.sum() + 1e-5) / c
    v = 1.0 - m
    visible = (per_pixel * v).sum() / (v.sum() + 1e-5) / c
    return {"loss_masked": masked, "loss_visible": visible,
            "loss": cfg.masked_weight * masked + cfg.visible_weight * visible}


def _torchvision_block(block, x):
    return block(x)


def _arithmetic_mask_tokens(tokens, mask, token):
    w = mask.flatten(1).unsqueeze(-1).type_as(tokens)
    return tokens * (1 - w) + token.to(tokens.dtype) * w


# name -> Ours(**kwargs): one optimisation switched off each
ABLATIONS = {
    "matmuls by F.linear (MKL) instead of oneDNN": {"mkl_linear": True},
    "torchvision MultiheadAttention path": {"torchvision_attention": True},
    "mask token by arithmetic blend": {"arithmetic_mask": True},
    "loss with upsampled pixel mask": {"pixel_mask_loss": True},
    "AdamW foreach instead of fused": {"adamw": "foreach"},
    "AdamW per-tensor loop (neither)": {"adamw": "for-loop"},
    "attention by SDPA's CPU flash kernel at every length": {"sdpa_always": True},
    "small weight grads by oneDNN instead of torch.mm": {"onednn_small_grads": True},
    "patch embedding and pixel heads as convolutions": {"conv_heads": True},
    "AdamW per tensor (fused) instead of flat buffers": {"flat": False},
    "all of the above off (the first version)": {"torchvision_attention": True, "arithmetic_mask": True,
                                                 "pixel_mask_loss": True, "mkl_linear": True, "sdpa_always": True,
                                                 "conv_heads": True, "adamw": "foreach"},
}


def _conv_patch_embed(conv, x):
    return conv(x).flatten(2).transpose(1, 2)


def _conv_pixel_head(head, z):
    return head(z)


def _slower_pieces(torchvision_attention: bool, arithmetic_mask: bool, pixel_mask_loss: bool, mkl_linear: bool,
                   sdpa_always: bool, onednn_small_grads: bool, conv_heads: bool) -> list[tuple[object, str, object]]:
    """(object, attribute, stand-in) for each optimisation switched off; module globals are looked up at call
    time, so patching them for the duration of a step is enough."""
    switched = [
        (torchvision_attention, [(vit_mod, "block_forward", _torchvision_block)]),
        (arithmetic_mask, [(vit_mod, "mask_tokens", _arithmetic_mask_tokens)]),
        (pixel_mask_loss, [(pretrain_mod, "simmim_loss", official_pixel_mask_loss)]),
        (mkl_linear, [(vit_mod, "linear", F.linear), (simmim_mod, "linear", F.linear)]),  # blocks, patches, heads
        (sdpa_always, [(attn_mod, "MATMUL_MAX_TOKENS", 0)]),
        (onednn_small_grads, [(onednn_mod, "_SMALL_GRAD_MACS", 0)]),
        (conv_heads, [(vit_mod, "patch_embed", _conv_patch_embed), (simmim_mod, "pixel_head", _conv_pixel_head)]),
    ]
    return [patch for on, patches in switched if on for patch in patches]


class Ours:
    def __init__(self, cfg: Config, imgs: torch.Tensor, mask: torch.Tensor, device: str, compile_model: bool = False,
                 torchvision_attention: bool = False, arithmetic_mask: bool = False, pixel_mask_loss: bool = False,
                 adamw: str | None = None, mkl_linear: bool = False, flat: bool = True, sdpa_always: bool = False,
                 onednn_small_grads: bool = False, conv_heads: bool = False) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.imgs, self.mask, self.batch = cfg, imgs, mask, imgs.shape[0]
        self.model = build_simmim(cfg).to(device).train()
        lr = scaled_lr(cfg.train.base_lr, self.batch)
        self.optimizer = build_optimizer(param_groups(self.model, cfg.train.weight_decay), lr, cfg.train.betas,
                                         flat=flat and adamw is None)
        if adamw is not None:  # ablation: same groups and hyper-parameters, another implementation
            kw = {"foreach": True} if adamw == "foreach" else {"foreach": False}
            self.optimizer = torch.optim.AdamW(self.optimizer.param_groups, betas=tuple(cfg.train.betas), eps=1e-8,
                                               **kw)
        self.scheduler = warmup_cosine(self.optimizer, lr, cfg.train.min_lr, 10, 100_000)
        self.patches = _slower_pieces(torchvision_attention, arithmetic_mask, pixel_mask_loss, mkl_linear,
                                      sdpa_always, onednn_small_grads, conv_heads)
        self.net = torch.compile(self.model) if compile_model else self.model
        self.first_step_s = 0.0
        if compile_model:
            t0 = time.perf_counter()
            self.step()
            self.first_step_s = time.perf_counter() - t0

    @contextlib.contextmanager
    def _switched(self):
        """Swap in the slower pieces of an ablation for one step."""
        with contextlib.ExitStack() as stack:
            for obj, name, value in self.patches:
                stack.enter_context(mock.patch.object(obj, name, value))
            yield

    def step(self) -> None:
        t = self.cfg.train
        with self._switched():
            pretrain_mod.train_step(self.net, self.imgs, self.mask, None, self.optimizer, self.cfg.loss,
                                    self.cfg.model.patch_size, t.clip_grad, t.amp)
        self.scheduler.step()

    def forward_backward(self) -> None:
        with pretrain_mod.autocast(self.imgs.device, self.cfg.train.amp):
            out = self.model(self.imgs, self.mask)
        simmim_loss(self.imgs, out["rec"], self.mask, self.cfg.model.patch_size, self.cfg.loss)["loss"].backward()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)


class Peer:
    """HF transformers' ViTForMaskedImageModeling, built from a ViTConfig of the same shape, random weights."""

    def __init__(self, cfg: Config, imgs: torch.Tensor, mask: torch.Tensor, device: str,
                 max_grad_norm: float = 1.0) -> None:
        from transformers import ViTConfig, ViTForMaskedImageModeling, get_linear_schedule_with_warmup

        m = cfg.model
        torch.manual_seed(cfg.seed)
        hc = ViTConfig(hidden_size=m.embed_dim, num_hidden_layers=m.depth, num_attention_heads=m.num_heads,
                       intermediate_size=int(m.embed_dim * m.mlp_ratio), image_size=m.img_size,
                       patch_size=m.patch_size, encoder_stride=m.patch_size, num_channels=3, qkv_bias=True,
                       hidden_act="gelu", layer_norm_eps=1e-6, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, attn_implementation="sdpa")
        self.model = ViTForMaskedImageModeling(hc).to(device).train()
        self.imgs, self.batch = imgs, imgs.shape[0]
        self.bool_masked_pos = mask.flatten(1).bool()  # [B, N] on the model-patch grid, as HF expects
        self.gpu = imgs.device.type == "cuda"
        # the Trainer's grouping: no decay on biases and norms
        norms = {id(p) for mod in self.model.modules() if isinstance(mod, torch.nn.LayerNorm)
                 for p in mod.parameters()}
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if name.endswith("bias") or id(p) in norms else decay).append(p)
        lr = scaled_lr(cfg.train.base_lr, self.batch)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.train.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 10, 100_000)
        self.max_grad_norm = max_grad_norm

    def _loss(self) -> torch.Tensor:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.gpu else contextlib.nullcontext()
        with ctx:
            return self.model(pixel_values=self.imgs, bool_masked_pos=self.bool_masked_pos).loss

    def step(self) -> None:
        loss = self._loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()

    def forward_backward(self) -> None:
        self._loss().backward()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
