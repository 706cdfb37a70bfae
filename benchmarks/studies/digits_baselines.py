"""The README's digits numbers: raw-pixel logistic regression, the default encoder trained from scratch on the labels,
and SimMIM-pretrained then fine-tuned, on the same labelled subset and held-out split, over several seeds.

    python -m benchmarks.studies.digits_baselines           # 3 seeds, 10% and 50% labels, ~15 min on 2 free cores
    python -m benchmarks.studies.digits_baselines --quick   # 1 seed, 2+3 epochs (CI): checks the pipeline only
    python -m benchmarks.studies.digits_baselines --set train.epochs=60 --section "train.epochs=60"   # an ablation

Runs in-process (`PretrainRun`, no Ray), one thread by default. `--workers N` (default 2, what `simmim-ray train`
uses) reproduces an N-worker data-parallel run in one process: per-worker batch sizes are multiplied by N, which
gives the same global batch, learning rate (scaled by the global batch) and steps per epoch as DDP with N workers
(the ViT has no batch norm, so the gradients are the same in expectation). Pre-training does not use labels, so one
pre-trained encoder per seed is fine-tuned for every labelled fraction.

Writes its table into `docs/digits_numbers.md` between `<!-- digits_baselines:NAME -->` markers (the rest of the
file, the analysis, is kept); `--quick` writes nothing unless `--out` is given.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


from benchmarks.common import ROOT, command_line, describe, machine_info, write_marked_block
from simmim_ray.io.configio import parse_set

DOC = os.path.join(ROOT, "docs", "digits_numbers.md")
QUICK = {"train.epochs": 2, "eval.epochs": 3, "train.warmup_epochs": 1}


def build_cfg(overrides: dict, workers: int, seed: int, fraction: float):
    from simmim_ray.config import Config

    base = Config().with_overrides(overrides)
    return base.with_overrides({"seed": seed, "eval.labeled_fraction": fraction,
                                "train.batch_size": base.train.batch_size * workers,
                                "eval.batch_size": base.eval.batch_size * workers})


def logistic_regression(cfg) -> tuple[float, int, int]:
    """The search's own pixel baseline (raw pixels in [0, 1], sklearn defaults, C=1) on the encoder's labelled
    subset and test split (`build_splits`). -> (accuracy, n_labelled, n_test)."""
    from simmim_ray.metrics import TEST_ACCURACY, TEST_COUNT
    from simmim_ray.search.answer.baselines import pixel_logreg

    out = pixel_logreg(cfg)
    return out[TEST_ACCURACY], out["labeled_images"], out[TEST_COUNT]


def run_seed(overrides: dict, workers: int, seed: int, fractions: list[float], log) -> dict:
    """-> {fraction: {row: accuracy}} plus timings for this seed."""
    from simmim_ray.engine.run import PretrainRun

    out: dict = {"acc": {}, "ft_s": {"scratch": {}, "simmim": {}}}
    cfg0 = build_cfg(overrides, workers, seed, fractions[0])
    pre = PretrainRun(cfg0)
    t = time.perf_counter()
    losses = [pre.train_epoch()["loss"] for _ in range(cfg0.train.epochs)]
    out["pretrain_s"] = time.perf_counter() - t
    out["epochs"] = cfg0.train.epochs
    out["loss_first_last"] = (losses[0], losses[-1])
    out["params"] = pre.size()["params"]
    out["train_images"] = len(pre.pretrain_ds)
    log(f"seed {seed}: pre-trained {cfg0.train.epochs} epochs in {out['pretrain_s']:.0f}s, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    weights = {k: v.clone() for k, v in pre.model.state_dict().items()}
    for f in fractions:
        cfg = build_cfg(overrides, workers, seed, f)
        acc = {}
        acc["logreg"], out["n_lab", f], out["n_test"] = logistic_regression(cfg)
        for row in ("scratch", "simmim"):
            run = PretrainRun(cfg)  # same seed: the scratch row starts from the weights pre-training started from
            if row == "simmim":
                run.model.load_state_dict(weights)
            t = time.perf_counter()
            acc[row] = run.final_eval(splits=("test",))["test_accuracy"]
            out["ft_s"][row][f] = time.perf_counter() - t
            log(f"seed {seed}, {f:.0%} labels: {row} fine-tune + eval {out['ft_s'][row][f]:.1f}s")
        out["acc"][f] = acc
        log(f"seed {seed}, {f:.0%} labels: logreg {acc['logreg']:.3f}  scratch {acc['scratch']:.3f}  "
            f"simmim {acc['simmim']:.3f}")
    return out


def mean_std(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f}"


def table(results: list[dict], fractions: list[float], cfg, workers: int, overrides: dict) -> str:
    seeds = len(results)
    r0 = results[0]
    rows = [("Raw-pixel logistic regression (sklearn, 64 pixels, C=1)", "logreg"),
            (f"Default ViT from scratch, fine-tuned on the labels ({cfg.eval.epochs} epochs)", "scratch"),
            (f"SimMIM pre-trained {r0['epochs']} epochs, then fine-tuned the same way", "simmim")]
    head = "| model | " + " | ".join(f"{f:.0%} labels ({r0['n_lab', f]} images)" for f in fractions) + " |"
    lines = [head, "|---|" + "---|" * len(fractions)]
    for name, key in rows:
        cells = [mean_std([r["acc"][f][key] for r in results]) for f in fractions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    m = cfg.model
    def cell(xs: list[float], digits: int = 1) -> str:
        return f"{min(xs):.{digits}f} / {statistics.mean(xs):.{digits}f}"

    timing = ["| piece | seconds, min / mean over seeds |", "|---|---|",
              f"| one pre-training epoch ({r0['train_images']} images) | "
              f"{cell([r['pretrain_s'] / max(1, r['epochs']) for r in results], 2)} |",
              f"| whole pre-training ({r0['epochs']} epochs) | {cell([r['pretrain_s'] for r in results], 0)} |"]
    for f in fractions:
        for row in ("scratch", "simmim"):
            timing.append(f"| fine-tune ({cfg.eval.epochs} epochs) + held-out eval, {row}, {f:.0%} labels | "
                          f"{cell([r['ft_s'][row][f] for r in results])} |")
    losses = ", ".join(f"{r['loss_first_last'][0]:.3f} -> {r['loss_first_last'][1]:.3f}" for r in results)
    settings = (f"Held-out split: {r0['n_test']} images (20%, stratified, fixed). Labelled subsets and held-out "
                f"split are fixed across seeds by design (`build_splits`), so logistic regression has no spread; the "
                f"seed ({seeds} seeds: 0..{seeds - 1}) moves the encoder's initialisation, masks, augmentation and "
                f"batch order. Accuracy in %, mean ± sample std.\n\n"
                f"Encoder: ViT width {m.embed_dim}, depth {m.depth}, heads {m.num_heads}, patch {m.patch_size} on "
                f"{m.img_size} px, {r0['params']:,} parameters. Mask patch {cfg.mask.patch_size}, ratio "
                f"{cfg.mask.ratio}. Emulating {workers} worker(s): global pre-training batch "
                f"{cfg.train.batch_size} (lr {cfg.train.base_lr * cfg.train.batch_size / 512:.2e}), global "
                f"fine-tune batch {cfg.eval.batch_size} (lr {cfg.eval.base_lr * cfg.eval.batch_size / 512:.2e}, "
                f"layer decay {cfg.eval.layer_decay}). Overrides: `{overrides or 'none (defaults)'}`. "
                f"Pre-training loss (first -> last epoch) per seed: {losses}.")
    import torch

    note = (f"Wall times (in-process, no Ray, {torch.get_num_threads()} torch thread(s)). Other jobs share this machine: the minimum over seeds is "
            "the better estimate of the uncontended cost.")
    return "\n".join(lines) + "\n\n" + settings + "\n\n" + note + "\n\n" + "\n".join(timing)


def write_section(path: str, name: str, body: str) -> None:
    write_marked_block(path, "digits_baselines", name, body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 10%% labels, 2 pre-training + 3 fine-tune epochs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--fractions", default="0.1,0.5", help="labelled fractions, comma-separated")
    p.add_argument("--workers", type=int, default=2, help="data-parallel workers to emulate (global batch)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--section", default="defaults", help="name of the section written in --out")
    p.add_argument("--out", "--results", dest="out", default=None,
                   help="markdown file to write (default docs/digits_numbers.md; none with --quick)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    overrides = {**(QUICK if a.quick else {}), **parse_set(a.set)}  # the CLI's --set: same types, same errors
    fractions = [0.1] if a.quick else [float(x) for x in a.fractions.split(",")]
    seeds = 1 if a.quick else a.seeds
    out = a.out if a.out is not None else (None if a.quick else DOC)
    info = machine_info()

    def log(msg: str) -> None:
        print(msg, flush=True)

    results = [run_seed(overrides, a.workers, s, fractions, log) for s in range(seeds)]
    cfg = build_cfg(overrides, a.workers, 0, fractions[0])
    body = table(results, fractions, cfg, a.workers, overrides)
    section = ("quick" if a.quick else a.section)
    body = (f"### {section}\n\nCommand: `{command_line()}`  \nMachine: {describe(info)}, "
            f"{os.getloadavg()[0]:.2f} at the end\n\n{body}")
    print(body)
    if out:
        write_section(out, section, body)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
