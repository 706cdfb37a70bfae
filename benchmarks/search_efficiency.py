"""Search efficiency on the default digits search: compute to a confirmed answer, the service's constrained TPE +
ASHA against random search + FIFO, median over seeds.

Both searches get the same budget of trial-epochs (the space's trials x pre-training epochs) on `digits_quick` as
the search runs it (its fixed keys, its target, its ASHA grace period) and look for the smallest model whose
accuracy reaches the target. The answer is the service's: the `--confirm` smallest trials feasible on validation
are fine-tuned again with `--confirm-seeds` fresh seeds and measured on test; the winner is the smallest whose mean
test accuracy meets the target. Compute is measured CPU seconds (one thread per trial): every epoch, proxy and
fine-tune the search ran, plus the confirmation fine-tunes of every candidate (all K, as the service runs them side
by side). "Compute to a confirmed answer of size S": the least compute after which stopping the search and
confirming would have answered with a model of size <= S. Per seed, TPE + ASHA's compute to reach random + FIFO's
answer size over random's compute to its own answer; the goal is a median <= 0.5x.

The searches run in virtual time over measured traces (search_sim.py, search_traces.py): the service's own searcher
and scheduler decide, each configuration is trained once (deterministic for a configuration) and its trace reused by
every search that picks it, and one trial runs at a time, as the default search runs on this 2-core machine.
Traces are kept in `--traces` (reused by later runs of the same recipe).

    python benchmarks/search_efficiency.py            # 5 seeds, the default search's recipe
    python benchmarks/search_efficiency.py --quick    # 1 seed, 2 epochs, small budget (CI)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from simmim_ray.search.settings import SearchSettings, default  # noqa: E402

METHODS = {"tpe+asha": ("tpe", "asha"), "random+fifo": ("random", "fifo")}
QUICK = {"train.epochs": 2, "eval.epochs": 2, "train.warmup_epochs": 1}
QUICK_TARGET = 0.1  # 2 epochs give accuracies of 0.1-0.3: something to find in CI
# A search trial has 2 data-parallel workers; the traced trial uses their global batch, so it takes the same
# optimiser steps at the same learning rate (lr scales with the global batch).
WORKERS = 2
# trials at a time: the default search on 2 cores runs 1 trial of 2 workers at a time (what ASHA and TPE see in
# order); the compute counted is the same whatever the split
SLOTS = 1
TRACES = os.path.join(os.path.expanduser("~"), ".cache", "simmim-ray", "search-traces")


def recipe(quick: bool):
    from simmim_ray.cli.search import space_file
    from simmim_ray.search.space import load_space

    space = load_space(space_file("digits_quick"))
    base = space.base_config().with_overrides({"train.log_images": False, **(QUICK if quick else {})})
    base = base.with_overrides({"train.batch_size": WORKERS * base.train.batch_size,
                                "eval.batch_size": WORKERS * base.eval.batch_size})
    if quick:
        space.target_accuracy = QUICK_TARGET
    return space, base


def run_one(task: tuple) -> dict:
    """One (seed, method) search and its answers; runs in a pool process."""
    import optuna

    from benchmarks.search_sim import simulate
    from benchmarks.search_traces import TraceStore
    from simmim_ray.search.confirm import confirm_seeds
    from simmim_ray.search.driver import initial_points, make_scheduler
    from simmim_ray.search.searcher import ConstrainedOptunaSearch
    from simmim_ray.search.space import decode, to_optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed, method, quick, traces, k, n_seeds, variant = task
    space, base = recipe(quick)
    sampler, scheduler = METHODS[method]
    s = SearchSettings(space_path="", name=f"{method}-{seed}", root=traces, trials=space.trials or 8,
                       target_accuracy=space.target_accuracy, size_metric=space.size_metric, scheduler=scheduler,
                       sampler=sampler, seed=seed, grace_period=space.grace_period or default("grace_period"),
                       warm_start=default("warm_start") if method == "tpe+asha" else 0)
    if method == "tpe+asha" and variant:
        s = dataclasses.replace(s, **variant)
    points = initial_points(s, space, base)
    searcher = ConstrainedOptunaSearch(to_optuna(space), s.size_metric, s.target_accuracy, seed=seed,
                                       sampler=sampler, points_to_evaluate=points or None)
    store = TraceStore(traces)
    budget = s.trials * base.train.epochs
    sim = simulate(searcher, make_scheduler(s, base, points), lambda p: store.trial(base.with_overrides(p)),
                   base.train.epochs, budget, SLOTS)
    seeds = confirm_seeds(n_seeds, seed)

    def confirm(t) -> dict:
        runs = [store.confirmation(base.with_overrides(decode(t.config)), sd) for sd in seeds]
        accs = [r["test_accuracy"] for r in runs]
        return {"accs": accs, "mean": sum(accs) / len(accs), "cpu_s": sum(r["cpu_s"] for r in runs)}

    def answer_at(compute: float) -> dict:
        """The service's answer had the search stopped once it had spent `compute`."""
        feas = [t for t in sim.trials if t.outcome == "finished" and t.val_accuracy >= s.target_accuracy
                and t.compute_at_finish <= compute]
        cands = sorted(feas, key=lambda t: (t.trace[s.size_metric], -t.val_accuracy))[:k]
        out = {"size": None, "test_mean": None, "accs": None, "confirm_cpu_s": 0.0, "candidates": len(cands)}
        for t in cands:
            c = confirm(t)
            out["confirm_cpu_s"] += c["cpu_s"]
            if out["size"] is None and c["mean"] >= s.target_accuracy:
                out.update(size=t.trace[s.size_metric], test_mean=c["mean"], accs=c["accs"], trial=t.trial_id)
        return out

    moments = sorted({t.compute_at_finish for t in sim.trials
                      if t.outcome == "finished" and t.val_accuracy >= s.target_accuracy})
    timeline = []
    for m in moments:
        a = answer_at(m)
        epochs = max(t.epochs_at_finish for t in sim.trials if t.compute_at_finish == m)
        timeline.append({"search_cpu_s": m, "trial_epochs": epochs, **a})
    final = timeline[-1] if timeline else {"size": None}
    return {"seed": seed, "method": method, "budget": budget, "spent_epochs": sim.trial_epochs,
            "search_cpu_s": sim.compute, "virtual_wall_s": sim.wall, "timeline": timeline,
            "answer": final, "trained": store.trained, "confirmed": store.confirmed,
            "trials": [{"id": t.trial_id, "config": t.config, "outcome": t.outcome, "epochs": t.epochs_run,
                        "size": t.trace[s.size_metric], "val_accuracy": t.val_accuracy} for t in sim.trials]}


def parse_variant(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    fields = {f.name: f.type for f in dataclasses.fields(SearchSettings)}
    if not sep or key not in ("grace_period", "warm_start", "scheduler", "reduction_factor", "sampler"):
        raise SystemExit(f"--variant {text!r}: expected KEY=VALUE with KEY one of grace_period, warm_start, "
                         "scheduler, reduction_factor, sampler")
    return key, (int(value) if fields[key] in (int, "int") else value)


def reach(run: dict, size) -> dict | None:
    """The first moment of `run` whose answer is a confirmed model of size <= `size`: its timeline entry."""
    if size is None:
        return None
    return next((e for e in run["timeline"] if e["size"] is not None and e["size"] <= size), None)


def cost(e: dict | None) -> float | None:
    return None if e is None else e["search_cpu_s"] + e["confirm_cpu_s"]


def fmt(x, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def report(runs: dict, seeds: list[int], space, base, k: int, n_seeds: int, info: dict, variant: dict) -> str:
    t = base.train
    trials = space.trials or 8
    side = {key: variant.get(key, default(key)) for key in ("warm_start", "scheduler", "reduction_factor", "sampler")}
    grace = min(variant.get("grace_period", space.grace_period or default("grace_period")), t.epochs)
    ladder = (f"a size-ladder warm start of {side['warm_start']} points" if side["warm_start"]
              else "no size-ladder warm start")
    asha = (f"ASHA on `proxy_knn` with grace period {grace} and reduction factor {side['reduction_factor']}"
            if side["scheduler"] == "asha" else "FIFO")
    lines = [f"Space `digits_quick`, as the default search runs it: {len(space.params)} searched keys, "
             f"{base.model.img_size} px, {t.epochs} pre-training epochs per full trial, {base.eval.epochs}-epoch "
             f"{base.eval.protocol} on {base.eval.labeled_fraction:.0%} labels, target accuracy >= "
             f"{space.target_accuracy:g}, minimise {space.size_metric}. Budget {trials * t.epochs} trial-epochs per "
             f"search (= {trials} full trials), {SLOTS} trial(s) at a time. TPE + ASHA: "
             + ("the service's defaults" if not variant else "what-if " + ", ".join(f"{k}={v}" for k, v in
                                                                                   variant.items()))
             + f" ({ladder}, multivariate TPE with the accuracy constraint, 4 random start-up trials, {asha}); "
             f"random + FIFO: Optuna's random sampler with the same seed, every trial to the end. Answer: the {k} "
             f"smallest validation-feasible trials confirmed with {n_seeds} fine-tune seeds on test (mean >= "
             "target). Compute in measured CPU seconds, confirmation included.", "",
             "| seed | method | trials: finished / pruned / cut | feasible on val | confirmed answer: params "
             "(test mean) | CPU s to its own answer | CPU s to random's answer size | trial-epochs then |",
             "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for seed in seeds:
        rnd = runs[(seed, "random+fifo")]
        target_size = rnd["answer"]["size"]
        for method in METHODS:
            r = runs[(seed, method)]
            n = {o: sum(x["outcome"] == o for x in r["trials"]) for o in ("finished", "pruned", "cut")}
            feas = sum(x["val_accuracy"] is not None and x["val_accuracy"] >= space.target_accuracy
                       for x in r["trials"])
            a = r["answer"]
            own, match = reach(r, a["size"]), reach(r, target_size)
            ans = "none" if a["size"] is None else f"{a['size']:,.0f} ({a['test_mean']:.3f})"
            lines.append(f"| {seed} | {method} | {n['finished']} / {n['pruned']} / {n['cut']} | {feas} | {ans} | "
                         f"{fmt(cost(own))} | {fmt(cost(match))} | {fmt(match and match['trial_epochs'], 'd')} |")
        if target_size is not None:
            tpe = cost(reach(runs[(seed, "tpe+asha")], target_size))
            ratios.append(None if tpe is None else tpe / cost(reach(rnd, target_size)))
    # "never" ranks above any ratio
    med = common.median([float("inf") if r is None else r for r in ratios]) if ratios else None
    verdict = "n/a" if med is None else ("met" if med <= 0.5 else "NOT met")
    lines += ["", f"Compute to a confirmed answer as small as random + FIFO's, TPE + ASHA over random + FIFO, per seed "
              f"where random confirmed one ({len(ratios)} of {len(seeds)}): "
              + (", ".join("never" if r is None else f"{r:.2f}x" for r in ratios) or "none")
              + f"; median {'-' if med is None else 'never' if med == float('inf') else f'{med:.2f}x'} "
              f"(goal <= 0.5x: {verdict})."]
    smaller = sum(1 for seed in seeds
                  if (runs[(seed, "tpe+asha")]["answer"]["size"] or float("inf"))
                  < (runs[(seed, "random+fifo")]["answer"]["size"] or float("inf")))
    lines.append(f"TPE + ASHA's final answer was smaller than random + FIFO's in {smaller} of {len(seeds)} seeds.")
    trained = sum(r["trained"] for r in runs.values())
    lines.append(f"Configurations trained for this run: {trained} (others read from earlier traces); confirmation "
                 f"seeds measured: {sum(r['confirmed'] for r in runs.values())}. Load average {info['load_avg_1m']} "
                 f"at start, {os.getloadavg()[0]:.1f} at the end, {info['cores']} cores.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, target 0.1, fresh traces")
    ap.add_argument("--seeds", type=int, default=None, help="search seeds 0..N-1 (default 5; 1 with --quick)")
    ap.add_argument("--confirm", type=int, default=default("confirm"), help="candidates confirmed (the service's)")
    ap.add_argument("--confirm-seeds", type=int, default=None,
                    help=f"fine-tune seeds per candidate (default {default('confirm_seeds')}; 2 with --quick)")
    ap.add_argument("--traces", default=None, help=f"trace directory (default {TRACES}; a fresh one with --quick)")
    ap.add_argument("--jobs", type=int, default=2, help="searches simulated at once (each trains on one core)")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                    help="what-if: a search setting of the TPE + ASHA side (grace_period, warm_start, scheduler, "
                         "reduction_factor, sampler), repeatable; the section is then named by the variant")
    ap.add_argument("--raw", default=None, help="write every search's trials and answers to this JSON file")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)

    space, base = recipe(args.quick)
    seeds = list(range(args.seeds or (1 if args.quick else 5)))
    n_seeds = args.confirm_seeds or (2 if args.quick else default("confirm_seeds"))
    traces = args.traces or (tempfile.mkdtemp(prefix="traces_") if args.quick else TRACES)
    info = common.machine_info()
    print(common.describe(info), flush=True)
    variant = dict(parse_variant(v) for v in args.variant)
    tasks = [(seed, m, args.quick, traces, args.confirm, n_seeds, variant) for seed in seeds for m in METHODS]
    runs = {}
    try:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for r in pool.map(run_one, tasks):
                runs[(r["seed"], r["method"])] = r
                a = r["answer"]
                print(f"seed {r['seed']} {r['method']}: {len(r['trials'])} trials, answer {space.size_metric} "
                      f"{fmt(a['size'])}, search {r['search_cpu_s']:.0f} CPU s, {r['spent_epochs']} of "
                      f"{r['budget']} trial-epochs", flush=True)
    finally:
        if traces != (args.traces or TRACES):  # a fresh directory of this run (--quick)
            shutil.rmtree(traces, ignore_errors=True)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({f"{s}/{m}": r for (s, m), r in runs.items()}, f, indent=1)
    body = report(runs, seeds, space, base, args.confirm, n_seeds, info, variant)
    name = "search_efficiency" + "".join(f" {k}={v}" for k, v in variant.items())
    common.publish(name, body, args, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
