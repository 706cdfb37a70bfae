"""Which recipe lets the default digits search (README command 1) end, within its time budget, with a confirmed
winner at least as accurate on test as a pixel logistic regression on the same labelled images?

For each named recipe (RECIPES: model, masking, pre-training and fine-tune values) and seed: SimMIM pre-training on
the unlabelled pool with the per-epoch k-NN proxy a search trial computes, then one fine-tune on the labelled images,
evaluated on validation (what a trial reports) and test (what confirmation reports); the same architecture and
fine-tune from scratch (`--scratch`); and the pixel logistic regression. `--grid P,F` pre-trains P seeds and
fine-tunes each checkpoint with F seeds: the spread across pre-training seeds against the spread across fine-tune
seeds decides what confirmation re-seeds.

    python -m benchmarks.studies.digits_frontier --recipe default --seeds 0,1,2 --scratch
    python -m benchmarks.studies.digits_frontier --recipe default --grid 3,3
    python -m benchmarks.studies.digits_frontier --table   # re-render docs/digits_numbers.md from the stored runs
    python -m benchmarks.studies.digits_frontier --quick   # CI: a tiny recipe, 1 seed, a 2x2 grid, into a temp dir

Every run is stored in benchmarks/studies/digits_frontier.json (one record per recipe, labelled fraction, seeds), so
a study can be run in pieces of a few minutes; the tables in docs/digits_numbers.md
(between `<!-- digits_frontier:NAME -->` markers) are re-rendered from all stored records whose recipe still has the
same values. In-process and one thread (see benchmarks/studies/digits_runs.py); a search's minutes are estimated
from these seconds with the two constants below.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile

from benchmarks.common import ROOT
from benchmarks.studies import digits_runs as dr
from benchmarks.studies.digits_tables import render_all
from simmim_ray.metrics import TEST_ACCURACY, VAL_ACCURACY
from simmim_ray.search.answer.baselines import pixel_logreg

DOC = os.path.join(ROOT, "docs", "digits_numbers.md")
STORE = os.path.join(ROOT, "benchmarks", "studies", "digits_frontier.json")


def arch(width: int, depth: int, heads: int, mlp: float) -> dict:
    return {"model.embed_dim": width, "model.depth": depth, "model.num_heads": heads, "model.mlp_ratio": mlp}


def schedule(pretrain_epochs: int, finetune_epochs: int) -> dict:
    return {"train.epochs": pretrain_epochs, "eval.epochs": finetune_epochs}


# Image size / model patch / mask patch: 8x8 digits upsampled to 32 px with 4 px tokens (64 tokens, the config
# default), or to 16 px with 4 px tokens (16 tokens, each 2x2 digit pixels; the mask block stays 2x2 digit pixels).
GRIDS = {"t64": {}, "t16": {"model.img_size": 16, "model.patch_size": 4, "mask.patch_size": 4}}
# name -> values over the config defaults (ViT, mask ratio 0.6). Names: tokens, width x depth (heads, MLP ratio as
# in ARCHS), pre-training epochs (e) and fine-tune epochs (f).
ARCHS = {"w16d1": arch(16, 1, 1, 1.0), "w16d3": arch(16, 3, 1, 2.0), "w32d2h1": arch(32, 2, 1, 1.0),
         "w32d2": arch(32, 2, 4, 2.0), "w48d1": arch(48, 1, 1, 1.0), "w64d1": arch(64, 1, 1, 2.0),
         "w64d2": arch(64, 2, 4, 2.0), "w64d4": arch(64, 4, 4, 2.0), "w96d4": arch(96, 4, 4, 2.0)}
ARCHS.update({"w32d2m1h2": arch(32, 2, 2, 1.0), "w48d2m1h2": arch(48, 2, 2, 1.0), "w64d2h2": arch(64, 2, 2, 2.0),
              "w32d2m1": arch(32, 2, 4, 1.0), "w48d2": arch(48, 2, 4, 2.0), "w48d3": arch(48, 3, 4, 2.0),
              "w64d3": arch(64, 3, 4, 2.0)})
# One-key changes of a recipe, named by a suffix.
VARIANTS = {"": {}, "-m0.4": {"mask.ratio": 0.4}, "-m0.8": {"mask.ratio": 0.8}, "-mp8": {"mask.patch_size": 8}}
RUNS = [("t64", a, 60, 100, "") for a in ("w16d1", "w16d3", "w32d2h1", "w32d2", "w48d1", "w64d1", "w64d4")]
RUNS += [("t16", a, 60, 100, "") for a in ("w32d2m1h2", "w48d2m1h2", "w64d2h2", "w32d2", "w32d2m1", "w48d2", "w48d3",
                                          "w64d2", "w64d3", "w64d4", "w96d4")]
RUNS += [("t16", "w64d4", 90, 100, ""), ("t16", "w64d2", 60, 100, "-m0.4"), ("t16", "w64d2", 60, 100, "-m0.8"),
         ("t16", "w64d2", 60, 100, "-mp8")]
RECIPES: dict[str, dict] = {f"{g}-{a}-e{e}f{f}{v}": {**GRIDS[g], **ARCHS[a], **schedule(e, f), **VARIANTS[v]}
                            for g, a, e, f, v in RUNS}
QUICK = {"quick": {"model.img_size": 16, "model.patch_size": 4, "mask.patch_size": 8, "model.embed_dim": 16,
                   "model.depth": 1, "model.num_heads": 2, "train.epochs": 2, "train.warmup_epochs": 1,
                   "eval.epochs": 2}}


def run_recipe(name: str, overrides: dict, seeds: list[int], fractions: dict, workers: int, scratch: bool,
               grid: tuple[int, int] | None, log, simmim: bool = True) -> list[dict]:
    """-> records: the logistic regression once, then per pre-training seed p and fine-tune seed f one SimMIM record
    (f == p as a search trial runs it, or every cell of the P x F `grid`) and, with `scratch`, one from scratch
    per seed."""
    fixed = {**overrides, "data.test_fraction": fractions["test"], "data.val_fraction": fractions["val"],
             "eval.labeled_fraction": fractions["labeled"]}
    cfg0 = dr.run_config(fixed, 0, workers)
    splits = dr.splits_of(cfg0)
    sizes = splits.sizes()
    common = {"recipe": name, "overrides": overrides, "fractions": fractions, "workers": workers,
              "n_labeled": sizes["labeled"], "n_pool": sizes["pretrain"]}
    baseline = pixel_logreg(cfg0, splits, with_val=True)  # the search's own baseline, also scored on validation
    logreg = {"val": baseline[VAL_ACCURACY], "test": baseline[TEST_ACCURACY]}
    out = [{**common, "kind": "logreg", "n_val": sizes["val"], "n_test": sizes["test"], **logreg}]
    log(f"{name}: logistic regression val {logreg['val']:.3f} test {logreg['test']:.3f} ({sizes})")
    for p in (range(grid[0]) if grid else seeds) if simmim else []:
        cfg = dr.run_config(fixed, p, workers)
        run, pre = dr.pretrain(cfg, splits)
        for f in (range(grid[1]) if grid else [p]):
            ft = dr.finetune(run, f)
            out.append({**common, "kind": "simmim", "pretrain_seed": p, "finetune_seed": f, **ft,
                        "epochs": cfg.train.epochs, "eval_epochs": cfg.eval.epochs,
                        "pretrain_s": pre["pretrain_s"], "proxy_s": pre["proxy_s"], "loss_first": pre["loss"][0],
                        "loss_last": pre["loss"][-1], "proxy_last": pre["proxy"][-1], "load": os.getloadavg()[0]})
            log(f"{name}: simmim pre-train seed {p} ({pre['pretrain_s']:.0f} s + proxy {pre['proxy_s']:.0f} s, "
                f"loss {pre['loss'][0]:.3f} -> {pre['loss'][-1]:.3f}), fine-tune seed {f} "
                f"({ft['finetune_s']:.0f} s): val {ft['val']:.3f} test {ft['test']:.3f}")
    for s in seeds if scratch else []:
        cfg = dr.run_config(fixed, s, workers)
        ft = dr.scratch(cfg, splits, s)
        out.append({**common, "kind": "scratch", "pretrain_seed": None, "finetune_seed": s, **ft,
                    "eval_epochs": cfg.eval.epochs, "load": os.getloadavg()[0]})
        log(f"{name}: scratch seed {s} ({ft['finetune_s']:.0f} s): val {ft['val']:.3f} test {ft['test']:.3f}")
    return out


def time_recipes(names: list[str], recipes: dict, fractions: dict, workers: int, rounds: int, log) -> list[dict]:
    """Per recipe, the minimum over `rounds` of each unit (`digits_runs.unit_seconds`), the rounds interleaved
    across recipes so that other jobs on the machine slow every recipe alike; the minimum is the closest to an
    idle machine. -> one "timing" record per recipe."""
    best: dict[str, dict] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fixed = {**recipes[name], "data.test_fraction": fractions["test"],
                     "data.val_fraction": fractions["val"], "eval.labeled_fraction": fractions["labeled"]}
            cfg = dr.run_config(fixed, 0, workers)
            got = dr.unit_seconds(cfg, dr.splits_of(cfg))
            best[name] = {k: min(v, best.get(name, {}).get(k, v)) for k, v in got.items()}
    out = []
    for name in names:
        out.append({"recipe": name, "overrides": recipes[name], "fractions": fractions, "workers": workers,
                    "kind": "timing", "rounds": rounds, "load": os.getloadavg()[0], **best[name]})
        log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in best[name].items()))
    return out


def _key(r: dict) -> str:
    return json.dumps([r["recipe"], r["fractions"], r["workers"], r["kind"], r.get("pretrain_seed"),
                       r.get("finetune_seed")], sort_keys=True)


def store(path: str, new: list[dict]) -> list[dict]:
    """Merge `new` into the JSON store at `path` (a record replaces the one with the same recipe, fractions, kind
    and seeds); safe against a concurrent run (file lock, atomic rename). -> every stored record."""
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.load(open(path)) if os.path.exists(path) else []
        merged = {_key(r): r for r in old}
        merged.update({_key(r): r for r in new})
        records = sorted(merged.values(), key=_key)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(records, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    return records


def current(records: list[dict], recipes: dict) -> list[dict]:
    """The records whose recipe is still defined with the same values (older measurements are kept but hidden)."""
    return [r for r in records if recipes.get(r["recipe"]) == r["overrides"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append", default=[], choices=sorted(RECIPES), help="recipe(s) to run")
    p.add_argument("--seeds", default="0,1,2", help="seeds (pre-training seed = fine-tune seed, as in a trial)")
    p.add_argument("--scratch", action="store_true", help="also fine-tune the recipe's architecture from scratch")
    p.add_argument("--scratch-only", action="store_true", help="only the from-scratch arm (and the regression)")
    p.add_argument("--grid", default=None, metavar="P,F", help="pre-training seeds x fine-tune seeds")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--labeled", type=float, default=0.1, help="eval.labeled_fraction (of the non-val/test rows)")
    p.add_argument("--workers", type=int, default=2, help="data-parallel workers to emulate (global batch)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--timing", type=int, default=0, metavar="ROUNDS",
                   help="instead of runs: time each unit of the named recipes (min over ROUNDS, interleaved)")
    p.add_argument("--table", action="store_true", help="only re-render the tables from the store")
    p.add_argument("--quick", action="store_true", help="tiny recipe, seed 0, scratch and a 2x2 grid (CI)")
    p.add_argument("--json", default=None, help=f"record store (default {os.path.relpath(STORE, ROOT)}; "
                                                "a temp dir with --quick)")
    p.add_argument("--out", default=None, help="markdown to render into (default docs/digits_numbers.md; "
                                               "a temp dir with --quick)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    recipes = QUICK if a.quick else RECIPES
    tmp = tempfile.mkdtemp(prefix="digits_frontier_") if a.quick else None
    path = a.json or (os.path.join(tmp, "store.json") if tmp else STORE)
    out = a.out or (os.path.join(tmp, "digits_numbers.md") if tmp else DOC)
    fractions = {"test": a.test_fraction, "val": a.val_fraction, "labeled": a.labeled}

    def log(msg: str) -> None:
        print(msg, flush=True)

    names = ["quick"] if a.quick else a.recipe
    if not a.table and not names:
        p.error("name a --recipe, or pass --table or --quick")
    if (a.timing or a.quick) and not a.table:
        store(path, time_recipes(names, recipes, fractions, a.workers, a.timing or 1, log))
        names = names if a.quick else []
    for name in names if not a.table else []:
        seeds = [0] if a.quick else [int(s) for s in a.seeds.split(",")]
        grid = (2, 2) if a.quick else (tuple(int(x) for x in a.grid.split(",")) if a.grid else None)
        new = run_recipe(name, recipes[name], seeds, fractions, a.workers, a.scratch or a.scratch_only or a.quick, grid,
                         log, simmim=not a.scratch_only)
        store(path, new)
    records = current(json.load(open(path)) if os.path.exists(path) else [], recipes)
    text = render_all(records, recipes, out)
    print(text)
    print(f"wrote {out} ({len(records)} records from {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
