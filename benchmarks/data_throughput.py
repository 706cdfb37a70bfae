"""Preprocessing throughput per CPU core: decode + random resized crop + flip + normalise + mask at 192 px, from
ImageNet-sized JPEGs (~500x375, generated), ours against torchvision's standard PIL pipeline in the same run.

Every pipeline runs in this process on one thread; images/s per core = images / CPU seconds of the process (less
sensitive to other load than wall time). Rounds alternate the order (ABBA); medians. Candidates:

- torchvision (PIL): PIL decode, `RandomResizedCrop`, `RandomHorizontalFlip`, `ToTensor`, `Normalize` (the peer);
- PIL box resize, uint8: PIL decode, the crop and resize as one `resize(box=...)`, no float conversion;
- PIL draft (DCT-scaled decode): JPEG decoded at 1/2, 1/4 or 1/8 scale when the crop still has >= 192/1.25 px;
- torchvision.io.decode_jpeg, uint8: libjpeg-turbo straight to a uint8 tensor, crop + antialiased resize on uint8;
- simplejpeg, exact IDCT: libjpeg-turbo through simplejpeg to [H, W, 3] uint8, resized channels-last (same pixels as
  decode_jpeg);
- ours: the product's streamed transform (simmim_ray/data/decode.py) on pyarrow batches, uint8 out: the
  normalisation runs on the Train worker's device, so it costs no preprocessing core.

Then: the FLOPs of one ViT-B/16 SimMIM training step at 192 px (the project's FLOP counter, forward + backward),
the images/s one A100 / H100 sustains at 40% MFU, and the cores that takes at our rate and at the peer's.

    python -m benchmarks.data_throughput           # 64 JPEGs, 5 rounds
    python -m benchmarks.data_throughput --quick   # 8 JPEGs, 2 rounds, tiny model FLOPs: CI
"""
from __future__ import annotations

import argparse
import io
import math
import time

import numpy as np
import torch

from benchmarks import common

SIZE, SCALE, RATIO = 192, (0.67, 1.0), (3 / 4, 4 / 3)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GOAL, MFU = 2.0, 0.40
VIT_B = {"img_size": 192, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0}


def photo_like(rng: np.random.Generator, w: int, h: int):
    """Smooth gradients, discs and sensor-like noise: compresses like a photo (tens of KB at quality 90)."""
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        f, p = rng.uniform(0.005, 0.03, 2), rng.uniform(0, 6, 2)
        img[..., c] = 128 + 60 * np.sin(x * f[0] + p[0]) + 50 * np.cos(y * f[1] + p[1])
    for _ in range(12):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(10, 80)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def make_jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        photo_like(rng, *((500, 375) if i % 2 else (375, 500))).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pipelines(cfg):
    """name -> function(list of JPEG bytes) processing every image once."""
    import torchvision.transforms as T
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    from simmim_ray.data.decode import StreamTransform, crop_box
    from simmim_ray.masking import MaskGenerator

    mg = MaskGenerator(SIZE, cfg.mask.patch_size, cfg.model.patch_size, cfg.mask.ratio)
    peer = T.Compose([T.RandomResizedCrop(SIZE, scale=SCALE, ratio=RATIO), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(MEAN, STD)])
    rng = np.random.default_rng(1)

    def torchvision_pil(jpegs):
        for b in jpegs:
            peer(Image.open(io.BytesIO(b)).convert("RGB")), mg()

    def pil_box(jpegs):
        for b in jpegs:
            img = Image.open(io.BytesIO(b)).convert("RGB")
            top, left, h, w = crop_box(rng, img.height, img.width, SCALE, RATIO)
            out = img.resize((SIZE, SIZE), Image.BILINEAR, box=(left, top, left + w, top + h))
            if rng.random() < 0.5:
                out = out.transpose(Image.FLIP_LEFT_RIGHT)
            np.asarray(out), mg()

    def pil_draft(jpegs):
        for b in jpegs:
            img = Image.open(io.BytesIO(b))
            W, H = img.size
            top, left, h, w = crop_box(rng, H, W, SCALE, RATIO)
            img.draft("RGB", (math.ceil(W * SIZE / w / 1.25), math.ceil(H * SIZE / h / 1.25)))
            sx, sy = W / img.size[0], H / img.size[1]
            img = img.convert("RGB")
            box = (left / sx, top / sy, min((left + w) / sx, img.size[0]), min((top + h) / sy, img.size[1]))
            out = img.resize((SIZE, SIZE), Image.BILINEAR, box=box)
            if rng.random() < 0.5:
                out = out.transpose(Image.FLIP_LEFT_RIGHT)
            np.asarray(out), mg()

    def tv_decode(jpegs):
        for b in jpegs:
            x = decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB)
            top, left, h, w = crop_box(rng, x.shape[1], x.shape[2], SCALE, RATIO)
            x = F.resized_crop(x, top, left, h, w, [SIZE, SIZE], antialias=True)
            if rng.random() < 0.5:
                x = x.flip(-1)
            mg()

    def simplejpeg_exact(jpegs):
        import simplejpeg

        for b in jpegs:
            x = torch.from_numpy(simplejpeg.decode_jpeg(b, colorspace="RGB")).permute(2, 0, 1)
            top, left, h, w = crop_box(rng, x.shape[1], x.shape[2], SCALE, RATIO)
            x = F.resized_crop(x, top, left, h, w, [SIZE, SIZE], antialias=True)
            if rng.random() < 0.5:
                x = x.flip(-1)
            mg()

    ours_t = StreamTransform(cfg, "pretrain")

    def ours(jpegs):
        import pyarrow as pa

        for a in range(0, len(jpegs), 64):
            ours_t(pa.table({"image": pa.array(jpegs[a:a + 64], pa.binary())}))

    return {"torchvision (PIL), the peer": torchvision_pil, "PIL box resize, uint8": pil_box,
            "PIL draft (DCT-scaled decode)": pil_draft, "torchvision.io.decode_jpeg, uint8": tv_decode,
            "simplejpeg, exact IDCT, uint8": simplejpeg_exact,
            "ours (data/decode.py)": ours}


def per_core(fn, jpegs, reps: int):
    def run() -> float:
        c0 = time.process_time()
        for _ in range(reps):
            fn(jpegs)
        return reps * len(jpegs) / (time.process_time() - c0)
    return run


def step_flops(cfg) -> int:
    """FLOPs of one SimMIM training step per image (forward + backward), by the project's counter."""
    from simmim_ray.loss import simmim_loss
    from simmim_ray.masking import MaskGenerator
    from simmim_ray.models import build_simmim
    from simmim_ray.models.factory import flop_counter

    model = build_simmim(cfg)
    m = cfg.model
    imgs = torch.randn(1, 3, m.img_size, m.img_size)
    mask = MaskGenerator(m.img_size, cfg.mask.patch_size, m.patch_size, cfg.mask.ratio)()[None]
    with flop_counter() as counter:
        out = model(imgs, mask)
        simmim_loss(imgs, out["rec"], mask, m.patch_size, cfg.loss)["loss"].backward()
    return int(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--results", default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    from simmim_ray.config import Config

    torch.set_num_threads(1)
    info = common.machine_info()
    cfg = Config.from_dict({"model": VIT_B, "mask": {"patch_size": 32, "ratio": 0.6},
                            "data": {"source": "parquet", "path": "-"}})
    jpegs = make_jpegs(args.images or (8 if args.quick else 64))
    kb = sum(map(len, jpegs)) / len(jpegs) / 1e3
    runners = {name: per_core(fn, jpegs, 1 if args.quick else 2) for name, fn in pipelines(cfg).items()}
    for fn in runners.values():
        fn()  # warm-up: imports, allocator
    rates = common.interleave(runners, args.rounds or (2 if args.quick else 5))
    peer = common.median(rates["torchvision (PIL), the peer"])
    ours = common.median(rates["ours (data/decode.py)"])
    lines = ["| pipeline | images/s per core, median (min-max) | vs the peer |", "|---|---|---|"]
    for name, xs in rates.items():
        lines.append(f"| {name} | {common.spread(xs)} | {common.median(xs) / peer:.2f}x |")
    flops_cfg = cfg if not args.quick else Config.from_dict(
        {"model": {**VIT_B, "embed_dim": 64, "depth": 1, "num_heads": 2}, "mask": {"patch_size": 32, "ratio": 0.6}})
    flops = step_flops(flops_cfg)
    gpu_lines = ["| GPU (dense bf16 peak) | images/s at 40% MFU | cores, ours | cores, the peer |", "|---|---|---|---|"]
    for gpu in ("A100", "H100 SXM"):
        rate = MFU * common.GPU_BF16_PEAK[gpu] / flops
        gpu_lines.append(f"| {gpu} ({common.si(common.GPU_BF16_PEAK[gpu])}) | {rate:,.0f} | "
                         f"{math.ceil(rate / ours)} | {math.ceil(rate / peer)} |")
    model = "ViT-B/16" if not args.quick else "a tiny ViT (--quick; the full run measures ViT-B/16)"
    verdict = "met" if ours / peer >= GOAL else "NOT met"
    text = (f"{len(jpegs)} generated JPEGs, ~500x375 px, {kb:.0f} KB on average, quality 90; one thread; "
            f"images/s per core = images / process CPU seconds.\n\n" + "\n".join(lines) +
            f"\n\nOurs / the peer: {ours / peer:.2f}x per core (goal >= {GOAL:.0f}x: {verdict}).\n\n"
            f"One SimMIM training step of {model} at {flops_cfg.model.img_size} px, mask patch 32, ratio 0.6: "
            f"{common.si(flops, 'FLOP')} per image (forward + backward, project FLOP counter). Cores one GPU needs "
            f"to be fed at {MFU:.0%} MFU (images/s = {MFU:.0%} x peak / FLOPs per image):\n\n" +
            "\n".join(gpu_lines))
    common.publish("data_throughput", text, args, info=info)


if __name__ == "__main__":
    main()
