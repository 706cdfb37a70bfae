"""Which cheap per-epoch metric ranks trials like the final fine-tune accuracy does (what ASHA should stop on).

Samples N configurations uniformly from `search_spaces/digits_quick.yaml` (fixed seed), pre-trains each in-process
(`PretrainRun`, world_size=1, one thread) for the space's epochs and records every epoch: the reconstruction loss
(`loss_masked`) and `proxy_knn`; at the candidate grace epochs also short fine-tunes (`final_eval(epochs=k)`,
which fine-tunes a copy, so the run is unaffected); at the end the final fine-tune accuracy (`final_eval()`).
Then, per candidate metric and grace epoch: Spearman rank correlation with the final accuracy (bootstrap 90% CI),
overlap of its top third with the final top third (what a reduction factor of 3 keeps), and Ray's own ASHA
bracket replayed over many random trial orders (one trial at a time, as on 2 cores), with each metric's cost.

    python -m benchmarks.studies.proxy_correlation           # 16 trials, ~30 min on a contended 2-core machine
    python -m benchmarks.studies.proxy_correlation --quick   # 3 tiny trials (CI): checks the pipeline, not the answer
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from types import SimpleNamespace

from benchmarks.common import ROOT

SPACE = os.path.join(ROOT, "search_spaces", "digits_quick.yaml")
QUICK = {"model.img_size": 16, "train.epochs": 2, "eval.epochs": 2, "train.warmup_epochs": 1}
RF = 3  # the driver's ASHA reduction factor


# ---- running the trials ------------------------------------------------------------------------
def sample(space, rng: random.Random) -> dict:
    """One point drawn uniformly within each distribution of the space (log-uniform for `loguniform`/log int)."""
    out = {}
    for p in space.params:
        if p.kind == "choice":
            out[p.key] = rng.choice(p.choices)
        elif p.kind == "int" and p.log:
            out[p.key] = int(round(math.exp(rng.uniform(math.log(p.low), math.log(p.high)))))
        elif p.kind == "int":
            out[p.key] = rng.randrange(int(p.low), int(p.high) + 1, p.step)
        elif p.kind == "loguniform":
            out[p.key] = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        else:
            out[p.key] = rng.uniform(p.low, p.high)
    return out


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_trial(cfg, splits, grace: list[int], ft_lengths: list[int]) -> dict:
    from simmim_ray.engine.run import PretrainRun

    run = PretrainRun(cfg, splits=splits)
    rec = {"params_count": run.size()["params"], "epochs": []}
    while run.epoch < cfg.train.epochs:
        m, train_s = timed(run.train_epoch)
        knn, knn_s = timed(run.proxy)
        e = {"epoch": run.epoch, "loss": m["loss"], "loss_masked": m["loss_masked"], "train_s": train_s,
             "knn": knn["proxy_knn"], "knn_s": knn_s}
        if run.epoch in grace:
            for k in ft_lengths:
                r, s = timed(lambda: run.final_eval(epochs=k))
                e[f"ft{k}"], e[f"ft{k}_s"] = r["val_accuracy"], s
        rec["epochs"].append(e)
        print(f"  epoch {run.epoch}: " + ", ".join(f"{k}={v:.3g}" for k, v in e.items() if k != "epoch"),
              flush=True)
    r, rec["final_s"] = timed(run.final_eval)
    rec["final"] = r["val_accuracy"]
    return rec


# ---- analysis ----------------------------------------------------------------------------------
def candidates(grace: list[int], ft_lengths: list[int]) -> list[tuple[str, int]]:
    """(metric, rung epoch) pairs; `loss` is negated so that higher is better everywhere."""
    return [(m, g) for g in grace for m in ["knn", "neg_loss_masked", *[f"ft{k}" for k in ft_lengths], "params"]]


def value(trial: dict, metric: str, epoch: int) -> float:
    if metric == "params":  # zero-cost reference: does a proxy beat "bigger model is better"?
        return float(trial["params_count"])
    if metric == "final":
        return trial["final"]
    e = trial["epochs"][epoch - 1]
    return -e["loss_masked"] if metric == "neg_loss_masked" else e[metric]


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def bootstrap_ci(x: list[float], y: list[float], reps: int, seed: int) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n, vals = len(x), []
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        r = spearman([x[i] for i in idx], [y[i] for i in idx])
        if not math.isnan(r):
            vals.append(r)
    if not vals:
        return float("nan"), float("nan")
    return float(np.percentile(vals, 5)), float(np.percentile(vals, 95))


def top_overlap(x: list[float], y: list[float]) -> float:
    """|top third by x  ∩  top third by y| / size of a third (ties broken by index)."""
    k = max(1, math.ceil(len(x) / RF))
    top = lambda v: set(sorted(range(len(v)), key=lambda i: (-v[i], i))[:k])  # noqa: E731
    return len(top(x) & top(y)) / k


def replay_asha(trials: list[dict], metric: str, grace: int, max_t: int, target: float, orders: int,
                seed: int) -> dict:
    """Ray's ASHA bracket, fed one trial at a time in random orders: how much it spends and whom it keeps."""
    from simmim_ray._compat.ray_tune import asha_bracket

    rng = random.Random(seed)
    n = len(trials)
    best = max(range(n), key=lambda i: trials[i]["final"])
    feasible = [i for i in range(n) if trials[i]["final"] >= target]
    smallest = min(feasible, key=lambda i: trials[i]["params_count"]) if feasible else None
    spent = kept_best = kept_small = regret = 0.0
    for _ in range(orders):
        bracket, rungs = asha_bracket(grace, max_t, RF)
        order = list(range(n))
        rng.shuffle(order)
        finished = []
        for i in order:
            stopped_at = max_t
            for epoch in range(1, max_t):
                if epoch not in rungs:
                    continue
                action = bracket.on_result(SimpleNamespace(trial_id=str(i)), epoch, value(trials[i], metric, epoch))
                if action == "STOP":
                    stopped_at = epoch
                    break
            spent += stopped_at
            if stopped_at == max_t:
                finished.append(i)
        kept_best += best in finished
        kept_small += smallest in finished if smallest is not None else 0
        regret += trials[best]["final"] - max(trials[i]["final"] for i in finished)
    return {"epochs_frac": spent / orders / (n * max_t), "p_best": kept_best / orders,
            "p_smallest_feasible": kept_small / orders if smallest is not None else float("nan"),
            "regret": regret / orders}


def cost(trials: list[dict], metric: str, epoch: int) -> tuple[float, float]:
    """(median seconds per evaluation, median seconds relative to the same trial's pre-training epoch)."""
    import statistics

    if metric == "params":
        return 0.0, 0.0
    key = {"knn": "knn_s", "neg_loss_masked": None}.get(metric, f"{metric}_s")
    if key is None:  # the training loss comes with the epoch
        return 0.0, 0.0
    secs = [t["epochs"][epoch - 1][key] for t in trials]
    rel = [t["epochs"][epoch - 1][key] / t["epochs"][epoch - 1]["train_s"] for t in trials]
    return statistics.median(secs), statistics.median(rel)


def analyse(res: dict, boot: int, orders: int) -> dict:
    trials, s = res["trials"], res["settings"]
    final = [t["final"] for t in trials]
    rows = []
    for metric, g in candidates(s["grace"], s["ft_lengths"]) + [("final", s["epochs"])]:
        x = [value(t, metric, g) for t in trials]
        lo, hi = bootstrap_ci(x, final, boot, seed=1) if metric != "final" else (1.0, 1.0)
        c, rel = cost(trials, metric, g) if metric != "final" else (float("nan"), float("nan"))
        rungs = [grace for grace in (g,) if grace < s["epochs"]]
        asha = (replay_asha(trials, metric, g, s["epochs"], s["target"], orders, seed=2) if rungs and metric != "final"
                else None)
        rows.append({"metric": metric, "epoch": g, "spearman": spearman(x, final), "ci": [lo, hi],
                     "top_third": top_overlap(x, final), "cost_s": c, "cost_rel_epoch": rel, "asha": asha})
    per_epoch = {m: [spearman([value(t, m, e) for t in trials], final) for e in range(1, s["epochs"] + 1)]
                 for m in ("knn", "neg_loss_masked")}
    return {"rows": rows, "per_epoch": per_epoch}


# ---- report ------------------------------------------------------------------------------------
def fmt(x: float, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(res: dict, ana: dict) -> str:
    s, trials = res["settings"], res["trials"]
    final = sorted(t["final"] for t in trials)
    lines = [f"Command: `{s['command']}`. {len(trials)} trials sampled uniformly from `{s['space']}` "
             f"(sampling seed {s['seed']}, every run with config seed {s['config_seed']}), {s['epochs']} pre-training "
             f"epochs each, in-process, 1 thread. Machine: {s['machine']}.",
             f"Eval recipe used (EvalConfig at run time): `{json.dumps(s['eval'])}`.",
             f"Final fine-tune accuracy over the trials: min {final[0]:.3f}, median {final[len(final) // 2]:.3f}, "
             f"max {final[-1]:.3f}; {sum(f >= s['target'] for f in final)} of {len(final)} reach the target "
             f"{s['target']}.", "",
             "| metric | rung epoch | Spearman vs final (90% CI) | top-third overlap | cost s (x epoch) | "
             "ASHA: epochs spent | P(best kept) | P(smallest feasible kept) | regret |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in ana["rows"]:
        a = r["asha"] or {}
        lines.append(f"| {r['metric']} | {r['epoch']} | {fmt(r['spearman'])} ({fmt(r['ci'][0])}, {fmt(r['ci'][1])}) | "
                     f"{fmt(r['top_third'])} | {fmt(r['cost_s'], '.1f')} ({fmt(r['cost_rel_epoch'])}) | "
                     f"{fmt(a.get('epochs_frac', float('nan')))} | {fmt(a.get('p_best', float('nan')))} | "
                     f"{fmt(a.get('p_smallest_feasible', float('nan')))} | {fmt(a.get('regret', float('nan')), '.3f')} |")
    lines += ["", "Spearman vs final by epoch (every epoch, both free or cheap):", "",
              "| metric | " + " | ".join(f"ep {e}" for e in range(1, s["epochs"] + 1)) + " |",
              "|---|" + "---|" * s["epochs"]]
    for m, vals in ana["per_epoch"].items():
        lines.append(f"| {m} | " + " | ".join(fmt(v) for v in vals) + " |")
    train = [e["train_s"] for t in trials for e in t["epochs"]]
    lines += ["", f"Pre-training epoch: median {sorted(train)[len(train) // 2]:.1f} s; final fine-tune "
              f"({s['eval']['epochs']} epochs): median {sorted(t['final_s'] for t in trials)[len(trials) // 2]:.1f} s.",
              "ASHA columns replay Ray's `_Bracket` (reduction factor 3, max_t = epochs) over "
              f"{s['orders']} random trial orders, one trial at a time; epochs spent is relative to running every "
              "trial to the end; regret is the best final accuracy minus the best among trials ASHA let finish. "
              "`params` (bigger is better) and `final` are references, not proxies."]
    return "\n".join(lines) + "\n"


def write_md(path: str, body: str, label: str = "main") -> None:
    """Replaces the generated block `label` of `path` (appends it if absent), keeping all other text."""
    begin, end = f"<!-- proxy_correlation:{label}:begin (generated) -->", f"<!-- proxy_correlation:{label}:end -->"
    block = f"{begin}\n{body}{end}\n"
    text = open(path).read() if os.path.exists(path) else "# Proxy metrics for early stopping\n\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 tiny trials (16 px, 2 epochs): CI check only")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--grace", type=int, nargs="+", default=None, help="candidate rung epochs (default 1 2 3)")
    ap.add_argument("--ft-lengths", type=int, nargs="*", default=None,
                    help="short fine-tune epochs (default 3 8; none: no short fine-tunes)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every trial, e.g. eval.epochs=100 (searched keys not allowed)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "studies", "proxy_correlation.json"))
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "proxy_correlation.md"))
    ap.add_argument("--label", default="main", help="name of the generated block in --md (one per experiment)")
    ap.add_argument("--resume", action="store_true", help="keep finished trials of --out with the same settings")
    ap.add_argument("--analyse-only", action="store_true", help="re-analyse --out without training")
    args = ap.parse_args(argv)

    import torch

    from benchmarks import common
    from simmim_ray.io.configio import parse_set
    from simmim_ray.data import build_splits
    from simmim_ray.search.space import load_space

    torch.set_num_threads(1)
    space = load_space(SPACE)
    base = space.base_config().with_overrides({**(QUICK if args.quick else {}), **parse_set(args.set)})
    n = args.trials or (3 if args.quick else 16)
    grace = args.grace or ([1] if args.quick else [1, 2, 3])
    ft_lengths = args.ft_lengths if args.ft_lengths is not None else ([1] if args.quick else [3, 8])
    settings = {"space": os.path.relpath(SPACE, ROOT), "seed": args.seed, "config_seed": base.seed, "trials": n,
                "epochs": base.train.epochs, "grace": grace, "ft_lengths": ft_lengths, "quick": args.quick,
                "target": space.target_accuracy or 0.85, "eval": base.to_dict()["eval"],
                "command": common.command_line(), "machine": common.describe(common.machine_info()),
                "orders": 50 if args.quick else 500}
    res = {"settings": settings, "trials": []}
    if (args.resume or args.analyse_only) and os.path.exists(args.out):
        old = json.load(open(args.out))
        same = all(old["settings"].get(k) == settings[k] for k in ("seed", "epochs", "grace", "ft_lengths", "eval"))
        if args.analyse_only or same:
            res["trials"] = old["trials"][:n]
            if args.analyse_only:
                res["settings"] = old["settings"]  # the command that produced the numbers
    if not args.analyse_only:
        rng = random.Random(args.seed)
        points = [sample(space, rng) for _ in range(n)]
        splits = build_splits(base)  # depends on the seed and labelled fraction only: shared by all trials
        for i in range(len(res["trials"]), n):
            cfg = base.with_overrides(points[i])
            print(f"trial {i + 1}/{n}: {points[i]}", flush=True)
            rec, secs = timed(lambda: run_trial(cfg, splits, grace, ft_lengths))
            res["trials"].append({"point": points[i], **rec, "trial_s": secs})
            print(f"  final accuracy {rec['final']:.3f}, params {rec['params_count']}, {secs:.0f} s", flush=True)
            with open(args.out, "w") as f:  # after every trial, so --resume can continue
                json.dump(res, f, indent=1)
    ana = analyse(res, boot=200 if args.quick else 2000, orders=res["settings"]["orders"])
    res["analysis"] = ana
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    body = markdown(res, ana)
    write_md(args.md, body, args.label)
    print(body)


if __name__ == "__main__":
    main()
