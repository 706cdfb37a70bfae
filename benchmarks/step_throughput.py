"""Images/s of one SimMIM training step (forward, loss, backward, grad clip, AdamW, lr schedule): ours against HF
transformers' `ViTForMaskedImageModeling` with the same width, depth, heads, MLP, patch, image size, mask and batch,
interleaved in one process (ABBA rounds, medians). Also each side's achieved FLOP/s (torch's flop counter, fwd+bwd)
as a fraction of the machine's limit, measured in the same run by a large matmul (fp32 on CPU; on GPU bf16, with
MFU against the card's data-sheet peak).

    python -m benchmarks.step_throughput                 # (a) digits default, (b) ViT-B/16 at 192 px
    python -m benchmarks.step_throughput --ablate        # what each optimisation gave, on (a): own section
    python -m benchmarks.step_throughput --quick         # tiny, seconds: keeps the script working in CI
    python -m benchmarks.step_throughput --device cuda   # bf16 autocast on both sides, MFU (untested here)
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass

import torch

from benchmarks import common
from benchmarks import step_variants as variants
from simmim_ray.config import Config
from simmim_ray.masking import MaskGenerator
from simmim_ray.models.factory import flop_counter

VIT_B = {"img_size": 192, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0}


@dataclass
class Case:
    key: str
    title: str
    cfg: Config
    batch: int
    steps: int  # training steps per timed measurement
    goal: float  # ours / peer


def cases(quick: bool, device: str) -> list[Case]:
    gpu = device.startswith("cuda")
    digits = Config()  # the defaults are the digits default
    vitb = Config.from_dict({"model": VIT_B, "mask": {"patch_size": 32, "ratio": 0.6}})
    if quick:
        digits = Config.from_dict({"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2,
                                             "num_heads": 2}, "mask": {"patch_size": 8, "ratio": 0.6}})
        vitb = Config.from_dict({"model": {**VIT_B, "img_size": 64, "embed_dim": 64, "depth": 1, "num_heads": 2},
                                 "mask": {"patch_size": 32, "ratio": 0.6}})
        return [Case("a", "digits default (tiny in --quick)", digits, 8, 1, 1.2),
                Case("b", "ViT-B/16 shape (tiny in --quick)", vitb, 2, 1, 0.95)]
    m, k = digits.model, digits.mask
    title = (f"digits default: ViT {m.img_size} px, patch {m.patch_size}, width {m.embed_dim}, depth {m.depth}, "
             f"heads {m.num_heads}, mlp {m.mlp_ratio:g}, mask {k.patch_size} @ {k.ratio:g}")
    bs = digits.train.batch_size
    out = [Case("a", f"{title}, batch {bs} (the config default)", digits, bs, 100 if gpu else 10 * max(1, 64 // bs),
                1.2)]
    if bs != 64:  # the batch the goal was first stated for
        out.append(Case("a64", f"{title}, batch 64", digits, 64, 100 if gpu else 10, 1.2))
    return out + [Case("b", "ViT-B/16 at 192 px, mask patch 32 @ 0.6", vitb, 64 if gpu else 8, 10 if gpu else 1,
                       0.95)]


def batch_for(case: Case, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised images [B, 3, H, W] and SimMIM masks [B, H/p, W/p] (1 = masked), shared by both sides."""
    m, k = case.cfg.model, case.cfg.mask
    g = torch.Generator().manual_seed(seed)
    gen = MaskGenerator(m.img_size, k.patch_size, m.patch_size, k.ratio)
    imgs = torch.randn(case.batch, 3, m.img_size, m.img_size, generator=g)
    mask = torch.stack([gen(g) for _ in range(case.batch)])
    return imgs.to(device), mask.to(device)


def step_flops(side) -> int:
    """FLOPs of one forward + backward (the optimiser's elementwise work is not counted, as usual)."""
    with flop_counter() as counter:
        side.forward_backward()
    side.zero_grad()
    return int(counter.get_total_flops())


def timed(side, steps: int, device: str, cpu_log: list[float]) -> float:
    """images/s (wall clock) over `steps` training steps; also logs images per CPU-second of this process, a
    figure that other processes on a shared machine disturb much less (with one thread it is the step's cost)."""
    common.sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        side.step()
    common.sync(device)
    n = steps * side.batch
    cpu_log.append(n / max(time.process_time() - c0, 1e-9))
    return n / (time.perf_counter() - t0)


def measure(case: Case, sides: dict, rounds: int, device: str, warmup: int
            ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds; returns (wall-clock images/s, images per CPU-second) per side."""
    for side in sides.values():
        for _ in range(warmup):
            side.step()
    cpu: dict[str, list[float]] = {n: [] for n in sides}
    wall = common.interleave({n: (lambda s=s, n=n: timed(s, case.steps, device, cpu[n])) for n, s in sides.items()},
                             rounds)
    return wall, cpu


def run_case(case: Case, device: str, rounds: int, warmup: int, peak: float, compile_: bool):
    """Times one case; returns (render(peak) -> markdown, summary). `peak` here is only for the printed line: the
    markdown is rendered later against the limit measured at both ends of the run."""
    imgs, mask = batch_for(case, device)
    sides = {"ours": variants.Ours(case.cfg, imgs, mask, device),
             "peer": variants.Peer(case.cfg, imgs, mask, device)}
    if compile_:
        sides["ours + torch.compile"] = variants.Ours(case.cfg, imgs, mask, device, compile_model=True)
    flops = {n: step_flops(s) for n, s in sides.items() if n in ("ours", "peer")}
    t0 = time.perf_counter()
    res, cpu = measure(case, sides, rounds, device, warmup)
    ours, peer = common.median(res["ours"]), common.median(res["peer"])
    ratio = ours / peer
    seconds = time.perf_counter() - t0
    verdict = "met" if ratio >= case.goal else "NOT met"
    cpu_ratio = common.median(cpu["ours"]) / common.median(cpu["peer"])
    print(f"({case.key}) ours {ours:.1f} img/s, peer {peer:.1f} img/s, ratio {ratio:.2f}x (goal {case.goal}x: "
          f"{verdict}; per CPU-second {cpu_ratio:.2f}x); ours {flops['ours'] * ours / case.batch / peak:.0%}, "
          f"peer {flops['peer'] * peer / case.batch / peak:.0%} of the limit so far", flush=True)

    def render(peak: float) -> str:
        return "\n".join(_lines(peak))

    def _lines(peak: float) -> list[str]:
        lines = [f"### ({case.key}) {case.title}", "",
                 f"Batch {case.batch}, {case.steps} step(s) per measurement, {rounds} interleaved rounds "
                 f"({seconds:.0f} s); images/s as median (min-max).", "",
                 f"| side | images/s | FLOPs per step (fwd+bwd) | achieved FLOP/s | "
                 f"{'MFU' if device.startswith('cuda') else 'of the limit'} | images per CPU-s |",
                 "|---|---|---|---|---|---|"]
        for name, xs in res.items():
            f = flops.get(name, flops["ours"])
            achieved = f * common.median(xs) / case.batch
            lines.append(f"| {name} | {common.spread(xs)} | {common.si(f, 'FLOP')} | {common.si(achieved)} | "
                         f"{achieved / peak:.0%} | {common.median(cpu[name]):.1f} |")
        lines += ["", f"**ours / peer = {ratio:.2f}x** (goal >= {case.goal}x: {verdict}); per CPU-second "
                  f"{cpu_ratio:.2f}x."]
        if "ours + torch.compile" in res:
            lines.append(f"torch.compile: {common.median(res['ours + torch.compile']) / ours:.2f}x ours eager, "
                         f"first step (compilation) {sides['ours + torch.compile'].first_step_s:.1f} s.")
        return lines

    return render, {"ours": ours, "peer": peer, "ratio": ratio, "cpu_ratio": cpu_ratio}


def run_ablation(case: Case, device: str, rounds: int, warmup: int) -> str:
    """Each optimisation switched off alone (everything else on), interleaved with the full version and the peer."""
    imgs, mask = batch_for(case, device)
    sides = {"ours (all on)": variants.Ours(case.cfg, imgs, mask, device),
             "peer": variants.Peer(case.cfg, imgs, mask, device)}
    for name, kw in variants.ABLATIONS.items():
        sides[name] = variants.Ours(case.cfg, imgs, mask, device, **kw)
    res, cpu = measure(case, sides, rounds, device, warmup)
    full = common.median(res["ours (all on)"])
    cfull = common.median(cpu["ours (all on)"])
    lines = [f"### What each optimisation gave, on ({case.key})", "",
             f"Each row switches one optimisation off (all others on); {rounds} interleaved rounds. "
             "The gain of an optimisation is `all on / row`.", "",
             "| variant | images/s | all on / variant | vs peer | per CPU-s: all on / variant | vs peer |",
             "|---|---|---|---|---|---|"]
    peer, cpeer = common.median(res["peer"]), common.median(cpu["peer"])
    for name, xs in res.items():
        c = common.median(cpu[name])
        lines.append(f"| {name} | {common.spread(xs)} | {full / common.median(xs):.2f}x | "
                     f"{common.median(xs) / peer:.2f}x | {cfull / c:.2f}x | {c / cpeer:.2f}x |")
    print("\n".join(lines[4:]), flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--quick", action="store_true", help="tiny models, 2 rounds of 1 step: checks it runs")
    ap.add_argument("--cases", default="a,a64,b",
                    help="comma list of a (digits default), a64 (the same at batch 64), b (ViT-B/16 192 px)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9; 2 with --quick)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per side first (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    ap.add_argument("--ablate", action="store_true",
                    help="instead of the cases: time each optimisation switched off, on (a); own section")
    ap.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or common.usable_cores())
    rounds = args.rounds or (2 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    info = common.machine_info(device)
    print(common.describe(info), flush=True)

    gpu = device.startswith("cuda")
    n = 512 if args.quick else None
    if gpu:
        peak = common.matmul_peak(device, n=n)
        spec = common.gpu_spec_peak(info.get("gpu", ""))
        limit_line = (f"Measured bf16 {n or 8192}^2 matmul: {common.si(peak)}. " +
                      (f"Card's data-sheet dense bf16 peak: {common.si(spec)}; MFU below is against it."
                       if spec else "Card not in the data-sheet table: MFU below is against the measured matmul."))
        peak = spec or peak
    else:
        limits = common.cpu_limits(n or 2048)
        peak = max(limits.values())
        print("limits at start: " + ", ".join(f"{k} {common.si(v)}" for k, v in limits.items()), flush=True)

    if gpu:
        sections = [limit_line, "", "Both sides under bf16 autocast (`train.amp`). **This path has not been run on "
                    "a GPU by the author of this script**: treat the first GPU numbers with care.", ""]
    renders = []
    if args.ablate:
        case = next(c for c in cases(args.quick, device) if c.key == "a")
        text = run_ablation(case, device, rounds, warmup)
        renders.append(lambda _peak: text)
    else:
        for case in [c for c in cases(args.quick, device) if c.key in args.cases.split(",")]:
            renders.append(run_case(case, device, rounds, warmup, peak, args.compile)[0])
    if not gpu:
        # again at the end, and the best of both: a limit, on a machine other jobs may be using
        end = common.cpu_limits(n or 2048)
        limits = {k: max(v, end.get(k, 0.0)) for k, v in limits.items()}
        peak = max(limits.values())
        limit_line = (f"Machine limit, measured in this run (fp32 {n or 2048}^2 matmul, best of 5 at the start "
                      "and 5 at the end): " + ", ".join(f"{k} {common.si(v)}" for k, v in limits.items()) +
                      f"; fractions below are of the higher, {common.si(peak)}.")
        print(limit_line, flush=True)
        sections = [limit_line, ""]
    for render in renders:
        sections += [render(peak), ""]
    if not args.ablate:
        sections += [variants.NOTES]
    if not args.no_write:
        section = ("step_throughput" + (" ablation" if args.ablate else "") + (" (--quick)" if args.quick else "")
                   + (f" ({device})" if gpu else "") + (f" (--threads {args.threads})" if args.threads else ""))
        path = common.write_result(section, common.command_line(), "\n".join(sections), args.results, device,
                                   info)
        print(f"wrote section '{section}' of {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
