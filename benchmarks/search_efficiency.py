"""Search efficiency on digits: the service's constrained TPE + ASHA against random search + FIFO.

Both searches get the same budget of trial-epochs (pre-training epochs summed over trials) on `digits_quick` and
look for the smallest model (encoder params) whose final accuracy reaches the target. Per seed and method: the
smallest feasible size found, and the compute spent when a trial of that size first finished, counted two ways:
trial-epochs (every epoch the same, whatever the model), and FLOP-weighted trial-epochs (each epoch weighted by its
model's forward FLOPs per image: pre-training compute, since every epoch sees the same images and a training step costs
about 3x the forward pass for any of these ViTs; the final fine-tunes, proportional too, are left out).
"Compute to match" is what TPE + ASHA spent to first finish a feasible trial at least as small as random's best.

Tune runs the real `ConstrainedOptunaSearch` (sampler tpe / random), `initial_points` (the service's size-ladder
warm start, tpe+asha only) and `make_scheduler` (ASHA / FIFO) from `simmim_ray/search/`. Full Ray Train trials
cost ~9 s of start-up each on this machine (benchmarks/trial_overhead.py), so each trial is an in-process
function trainable that runs `PretrainRun` with world_size=1 and reports per epoch exactly like the Train worker
(proxy_knn, params, flops, epoch; accuracy at the end, done).

    python benchmarks/search_efficiency.py            # 3 seeds, budget = the space's trials x epochs each
    python benchmarks/search_efficiency.py --quick    # 1 seed, tiny images, 2 epochs, small budget (CI)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from simmim_ray.search.settings import SearchSettings, default  # noqa: E402

METHODS = {"tpe+asha": ("tpe", "asha"), "random+fifo": ("random", "fifo")}
QUICK = {"model.img_size": 16, "train.epochs": 2, "eval.epochs": 2, "train.warmup_epochs": 1}
QUICK_TARGET = 0.1  # 2 epochs at 16 px give final accuracies of 0.08-0.15: something to find in CI
# A search trial has 2 data-parallel workers; the in-process trial uses their global batch, so it takes the same
# optimiser steps at the same learning rate (lr scales with the global batch).
WORKERS = 2
# tpe+asha starts with the service's size ladder (`--warm-start`, same default); the peer does not
WARM_START = default("warm_start")


def trial_fn(params: dict, base: dict | None = None, splits=None) -> None:
    """One trial, in the Tune actor: the Train worker's per-epoch reports without Ray Train around it."""
    import torch
    from ray import tune

    from simmim_ray.config import Config
    from simmim_ray.engine.run import PretrainRun

    torch.set_num_threads(1)
    cfg = Config.from_dict(base).with_overrides(params)
    run = PretrainRun(cfg, splits=splits)
    size = run.size()
    while run.epoch < cfg.train.epochs:
        metrics = run.train_epoch()
        metrics.update(run.proxy())
        metrics.update(size)
        final = run.epoch == cfg.train.epochs
        if final:
            metrics.update(run.final_eval())
        metrics["done"] = final
        tune.report(metrics)


def ledger_callback(budget: int, target: float, size_metric: str):
    """Counts trial-epochs as results arrive; stops the experiment at the budget; logs each finished trial."""
    from ray import tune

    class Ledger(tune.Callback, tune.Stopper):
        def __init__(self) -> None:
            self.epochs = 0
            self.flops = 0.0  # sum over trial-epochs of the trial's forward FLOPs per image
            self.trials: dict[str, dict] = {}

        # Callback
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.epochs += 1
            self.flops += float(result.get("flops") or 0.0)
            t = self.trials.setdefault(trial.trial_id, {"epochs": 0, "params": dict(trial.config)})
            t["epochs"] += 1
            t["size"] = result.get(size_metric)
            if "val_accuracy" in result and result.get("done"):
                t.update(accuracy=result["val_accuracy"], feasible=result["val_accuracy"] >= target,
                         finished_at_budget=self.epochs, finished_at_flops=self.flops, finished_at=time.time())

        # Stopper
        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.epochs >= budget

    return Ledger()


def run_search(method: str, seed: int, budget: int, base, space, splits_ref, work: str,
               warm_start: int = WARM_START) -> dict:
    from ray import tune

    from simmim_ray.search.driver import initial_points, make_scheduler
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.space import to_optuna

    sampler, scheduler = METHODS[method]
    s = SearchSettings(space_path="", name=f"{method}-{seed}", root=work, trials=10_000,
                       target_accuracy=space.target_accuracy, size_metric=space.size_metric, scheduler=scheduler,
                       sampler=sampler, seed=seed, warm_start=warm_start if method == "tpe+asha" else 0)
    points = initial_points(s, space, base)
    searcher = ConstrainedOptunaSearch(to_optuna(space), s.size_metric, s.target_accuracy, seed=seed,
                                       sampler=sampler, points_to_evaluate=points or None)
    ledger = ledger_callback(budget, s.target_accuracy, s.size_metric)
    trainable = tune.with_resources(tune.with_parameters(trial_fn, base=base.to_dict(), splits=splits_ref),
                                    {"cpu": 1})
    started = time.time()
    tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(s, base, points),
                                                      num_samples=s.trials, max_concurrent_trials=2),
               run_config=tune.RunConfig(name=s.name, storage_path=work, stop=ledger, callbacks=[ledger],
                                         verbose=0, failure_config=tune.FailureConfig(max_failures=0))).fit()
    return summarise(ledger, budget, time.time() - started)


def summarise(ledger, budget: int, wall: float) -> dict:
    trials = list(ledger.trials.values())
    done = sorted((t for t in trials if "accuracy" in t), key=lambda t: t["finished_at_budget"])
    feasible = [t for t in done if t["feasible"]]
    best = min((t["size"] for t in feasible), default=None)
    first = next((t for t in feasible if t["size"] == best), None)
    return {"budget": budget, "spent": ledger.epochs, "trials": len(trials), "completed": len(done),
            "feasible": len(feasible), "best_size": best,
            "compute_to_best": first["finished_at_budget"] if first else None,
            "flops_to_best": first["finished_at_flops"] if first else None,
            "best_accuracy": first["accuracy"] if first else None, "wall_s": wall,
            # (compute, size) at every feasible finish: when each method first got at least this small
            "feasible_log": [(t["finished_at_budget"], t["size"], t["accuracy"], t["finished_at_flops"])
                             for t in feasible],
            "all": [{k: t.get(k) for k in ("epochs", "size", "accuracy")} for t in trials]}


def compute_to_reach(summary: dict, size: float | None, flops: bool = False) -> float | None:
    """Trial-epochs (or FLOP-weighted trial-epochs) a search had spent when it first finished a feasible trial of
    size <= `size`."""
    if size is None:
        return None
    return next((f if flops else c for c, s, _, f in summary["feasible_log"] if s <= size), None)


def fmt_size(x) -> str:
    return "none" if x is None else f"{x:,.0f}"


def report(runs: dict, seeds: list[int], budget: int, base, space, info: dict, warm_start: int = WARM_START) -> str:
    m, t = base, base.train
    lines = [f"Space `digits_quick` ({len(space.params)} searched keys; {t.epochs} pre-training epochs per full "
             f"trial, {base.eval.epochs}-epoch {base.eval.protocol} on {base.eval.labeled_fraction:.0%} labels at "
             f"the end, {m.model.img_size} px, global batch {t.batch_size} as 2 workers x "
             f"{t.batch_size // WORKERS}), target accuracy >= {space.target_accuracy:g}, minimise "
             f"{space.size_metric}. Budget {budget} "
             f"trial-epochs per search (= {budget // t.epochs} full trials), 2 trials at a time, in-process trials "
             "(one torch thread each), local Ray with num_cpus=2. ASHA as the search driver builds it: on "
             f"`proxy_knn`, grace period {min(2, t.epochs)} epochs, reduction factor 3. The service starts with "
             f"{warm_start} size-ladder point(s) (`--warm-start`: the smallest architecture of the space, then "
             "about 2x larger each; other keys at the config defaults; ASHA lets them finish), then multivariate "
             "TPE (4 start-up trials, the ladder counted); random search + FIFO has neither.", "",
             "| seed | method | trials (finished) | feasible | smallest feasible size | trial-epochs to reach it "
             "| trial-epochs to reach random's best "
             "| FLOP-weighted: forward MFLOP/image x epochs, to reach random's best | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    ratios, flop_ratios, same_or_smaller = [], [], []
    for seed in seeds:
        rnd, tpe = runs[(seed, "random+fifo")], runs[(seed, "tpe+asha")]
        match = compute_to_reach(tpe, rnd["best_size"])
        match_flops = compute_to_reach(tpe, rnd["best_size"], flops=True)
        for method in METHODS:
            r = runs[(seed, method)]
            reach = match if method == "tpe+asha" else r["compute_to_best"]
            reach_flops = match_flops if method == "tpe+asha" else r["flops_to_best"]
            lines.append(f"| {seed} | {method} | {r['trials']} ({r['completed']}) | {r['feasible']} | "
                         f"{fmt_size(r['best_size'])} | {r['compute_to_best'] or '-'} | {reach or '-'} | "
                         f"{f'{reach_flops / 1e6:.1f}' if reach_flops else '-'} | {r['wall_s']:.0f} |")
        if rnd["best_size"] is not None:
            same_or_smaller.append(tpe["best_size"] is not None and tpe["best_size"] <= rnd["best_size"])
            ratios.append(match / rnd["compute_to_best"] if match else math.inf)
            flop_ratios.append(match_flops / rnd["flops_to_best"] if match_flops else math.inf)

    def verdict(rs: list[float]) -> str:
        finite = [r for r in rs if math.isfinite(r)]
        return ((", ".join(f"{r:.2f}x" if math.isfinite(r) else "never" for r in rs) or "n/a") +
                (f" (median {common.median(rs):.2f}x)" if finite else "") + "; goal (the same or a smaller "
                "feasible size with <= 0.5x the compute, every seed): " +
                ("met" if rs and all(same_or_smaller) and all(r <= 0.5 for r in rs) else "not met"))

    lines += ["", f"TPE + ASHA found a feasible model as small as random + FIFO's best, or smaller, in "
              f"{sum(same_or_smaller)} of {len(same_or_smaller)} seeds where random found one. Compute to match "
              f"random's best, as a fraction of random's, in trial-epochs: {verdict(ratios)}; in FLOP-weighted "
              f"trial-epochs: {verdict(flop_ratios)}.",
              f"Load average {info['load_avg_1m']} at start and {os.getloadavg()[0]:.1f} at the end on "
              f"{info['cores']} cores (shared with other jobs): wall seconds move with it, trial-epochs do not."]
    accs = [t["accuracy"] for r in runs.values() for t in r["all"] if t.get("accuracy") is not None]
    share = sum(a >= space.target_accuracy for a in accs) / max(1, len(accs))
    lines.append(f"{share:.0%} of the {len(accs)} finished trials met the target (final accuracies "
                 f"{min(accs, default=0):.2f}-{max(accs, default=0):.2f})" +
                 ("; at 0% or 100% the target does not separate the configurations, so the comparison says "
                  "little." if share in (0.0, 1.0) else "."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 16 px, 2 epochs, budget 8 trial-epochs")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; 1 with --quick)")
    ap.add_argument("--budget", type=int, default=None,
                    help="trial-epochs per search (default: the space's trials x epochs)")
    ap.add_argument("--target", type=float, default=None,
                    help=f"accuracy target (default: the space's; {QUICK_TARGET} with --quick)")
    ap.add_argument("--warm-start", type=int, default=WARM_START,
                    help=f"size-ladder points for tpe+asha (default {WARM_START}, the service's; 0: plain TPE)")
    ap.add_argument("--raw", default=None, help="write every trial's outcome to this JSON file")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    import ray

    from simmim_ray.data.splits import build_splits
    from simmim_ray.train.launch import apply_ray_env_defaults
    from simmim_ray.train.ray_init import start_local
    from simmim_ray.cli.search import space_file
    from simmim_ray.search.space import load_space

    space = load_space(space_file("digits_quick"))
    base = space.base_config().with_overrides({"train.log_images": False, **(QUICK if args.quick else {})})
    base = base.with_overrides({"train.batch_size": WORKERS * base.train.batch_size,
                                "eval.batch_size": WORKERS * base.eval.batch_size})
    space.target_accuracy = args.target or (QUICK_TARGET if args.quick else space.target_accuracy)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    budget = args.budget or (8 if args.quick else (space.trials or 12) * base.train.epochs)
    info = common.machine_info()
    print(common.describe(info), flush=True)
    apply_ray_env_defaults()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    work = tempfile.mkdtemp(prefix="searcheff_")
    runs = {}
    try:
        start_local(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="rs", dir="/tmp"), log_to_driver=False)
        splits = build_splits(base)  # once; every trial reads it from the object store
        for seed in seeds:
            for method in METHODS if seed % 2 == 0 else reversed(list(METHODS)):
                r = run_search(method, seed, budget, base, space, splits, work, args.warm_start)
                runs[(seed, method)] = r
                print(f"seed {seed} {method}: {r['trials']} trials ({r['completed']} finished, {r['feasible']} "
                      f"feasible), best {space.size_metric} {fmt_size(r['best_size'])} after "
                      f"{r['compute_to_best']} of {r['spent']} trial-epochs, {r['wall_s']:.0f} s", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({f"{s}/{m}": r for (s, m), r in runs.items()}, f, indent=1)
    body = report(runs, seeds, budget, base, space, info, args.warm_start)
    common.publish("search_efficiency", body, args, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
