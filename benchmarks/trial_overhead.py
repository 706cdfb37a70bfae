"""Fixed cost of one search trial: a whole trial's wall time minus the time its workers spend training.

Local Ray (num_cpus=2), one trial at a time as `simmim-ray search` runs them, trials of one point of the
`digits_quick` space with 2 Train V2 workers x 1 CPU each, in two kinds:

- naive: Train V2 out of the box: `TorchTrainer` with Ray's defaults (controller health check every 2 s, preemption
  watcher on), each worker loads the data itself, saves model + optimiser and reports every epoch, the trial ends
  when `fit()` returns;
- ours:  the service's own trial (`simmim_ray.search.trial.trial.make_trial_fn`, built in the driver as the search does),
  on the trial path this Ray gives (simmim_ray/_compat) or the one SIMMIM_RAY_TRIAL_PATH=lean|public forces; the
  result goes to the section `trial_overhead (<path> path)`.

Each kind runs in its own Tune experiments (ours with the search driver's Tune settings), interleaved naive, ours,
ours, naive. A trial's wall time is the time between consecutive trial completions seen by the Tune driver; the
first trial of each experiment also pays Tune's start and is not counted. So a trial's wall time holds everything a
sequential search pays per trial: scheduling, the trial actor, the Train controller, placement group, worker
processes, imports, data, training, checkpoints, reports and teardown. Training = rank 0's pre-training +
evaluation seconds. CPU seconds of every process are measured too: unlike wall time they barely move when other
jobs load the machine.

    python -m benchmarks.trial_overhead            # 6 epochs, 2 rounds x 3 trials per kind, ~10 min on 2 cores
    python -m benchmarks.trial_overhead --quick    # tiny model, 2 epochs, 2 trials per kind (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.naive_trial import naive_trial
from benchmarks.overhead_probes import dump_actors, import_seconds
from benchmarks.proc_meter import CpuMeter

# a mid-sized point of search_spaces/digits_quick.yaml
POINT = {"model.embed_dim": 48, "model.depth": 2, "model.num_heads": 2, "model.mlp_ratio": 2.0,
         "mask.ratio": 0.6, "mask.patch_size": 8, "loss.visible_weight": 0.1, "loss.fgbg_weight": 0.2,
         "loss.type": "l1"}
QUICK = {"model.img_size": 16, "model.embed_dim": 32, "train.epochs": 2, "eval.epochs": 2}
# (label, how it is computed from one trial's timeline); the rows sum to the trial's wall time
PHASES = [
    ("Tune: schedule trial, start trial actor", "sched"),
    ("controller + placement group + worker processes spawned", "spawn"),
    ("worker process start -> train loop (Ray worker, imports, Train backend, process group)", "worker_init"),
    ("data + model setup in the loop", "setup"),
    ("pre-training (useful)", "train"),
    ("evaluation: k-NN proxy each epoch + final fine-tune (useful)", "eval"),
    ("checkpoint save + report, epochs before the last", "ckpt"),
    ("other per-epoch work in the loop (TensorBoard, bookkeeping)", "loop_other"),
    ("last report -> fit() returns (report polling, worker shutdown)", "teardown"),
    ("fit() returns -> Tune sees the trial complete", "finish"),
]


def make_trainable(variant: str, trial_cfg: dict, point: dict, ours_fn, storage: str, marks: str):
    from ray import tune

    def bench_trial(config: dict) -> None:
        name = tune.get_context().get_trial_name()
        mark = {"fn_entered": time.time()}
        with open(os.path.join(marks, name + ".json"), "w") as f:
            json.dump(mark, f)
        if variant == "naive":
            naive_trial(trial_cfg, f"{storage}/naive_runs", name)
        else:
            ours_fn(dict(point))
        # not reached when Tune ends the trial on a result with `done: True` (ours): it then tears down meanwhile
        with open(os.path.join(marks, name + ".json"), "w") as f:
            json.dump({**mark, "fit_returned": time.time()}, f)

    return bench_trial


def timeline_callback(cpu: CpuMeter):
    from ray.tune import Callback

    class Timeline(Callback):
        def __init__(self) -> None:
            self.done: list[dict] = []

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done.append({"name": trial.custom_trial_name or str(trial), "completed": time.time(),
                              "cpu": cpu.snapshot(), "result": dict(trial.last_result or {})})

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            raise RuntimeError(f"benchmark trial {trial} failed; see {trial.error_file}")

    return Timeline()


def phases(trial: dict, since: float, marks: dict) -> dict:
    r = trial["result"]
    p = {"wall": trial["completed"] - since}
    p["sched"] = marks["fn_entered"] - since
    p["spawn"] = r["process_started_at"] - marks["fn_entered"]
    p["worker_init"] = r["loop_started_at"] - r["process_started_at"]
    p["setup"] = r["setup_seconds"]
    p["train"], p["eval"], p["ckpt"] = r["train_seconds"], r["eval_seconds"], r["checkpoint_seconds"]
    in_loop = r["reported_at"] - r["loop_started_at"]
    p["loop_other"] = in_loop - p["setup"] - p["train"] - p["eval"] - p["ckpt"]
    returned = marks.get("fit_returned", trial["completed"])
    p["teardown"] = returned - r["reported_at"]
    p["finish"] = trial["completed"] - returned
    p["loop"] = r["loop_seconds"]
    p["overhead"] = p["wall"] - p["loop"]
    p["data"] = r.get("data_seconds", float("nan"))
    p["loop_cpu"] = r["loop_cpu_seconds"] * 2  # rank 0's, for both ranks (they run the same steps)
    return p


def base_config(quick: bool, epochs: int | None):
    """(search base config, the searched point): the space's fixed values, no image grids."""
    from simmim_ray.cli.search import space_file
    from simmim_ray.search.space import load_space

    space = load_space(space_file("digits_quick"))
    over = {**space.fixed, "train.log_images": False}
    point = dict(POINT)
    if quick:
        over.update({k: v for k, v in QUICK.items() if not k.startswith("model.")})
        point.update({k: v for k, v in QUICK.items() if k.startswith("model.")})
    if epochs:
        over["train.epochs"] = epochs
    return space.base_config().with_overrides(over), point


def run_tuner(variant: str, tag: str, n: int, cfg, point: dict, work: str, cpu: CpuMeter,
              reuse: bool) -> list[dict]:
    """One Tune experiment of `n` trials of one kind, one at a time; per trial its phases and CPU seconds."""
    from ray import tune

    from simmim_ray.train.launch import Resources
    from simmim_ray.search.trial.trial import make_trial_fn, trial_name

    storage, marks = os.path.join(work, tag), os.path.join(work, tag, "marks")  # fresh per experiment
    os.makedirs(marks, exist_ok=True)
    ours_fn = None
    if variant == "ours":  # built in the driver, as `simmim-ray search` does (loads and shares the data)
        ours_fn = make_trial_fn(cfg.to_dict(), Resources(workers=2, cpus_per_worker=1.0, threads=1),
                                os.path.join(storage, "ours"), max_failures=1)
    trainable = make_trainable(variant, cfg.with_overrides(point).to_dict(), point, ours_fn, storage, marks)
    timeline = timeline_callback(cpu)
    started, cpu0 = time.time(), cpu.snapshot()
    tune.Tuner(tune.with_resources(trainable, {"memory": 64 * 1024 * 1024}),  # what the search driver asks
               param_space={"i": tune.grid_search(list(range(n)))},
               tune_config=tune.TuneConfig(max_concurrent_trials=1, trial_name_creator=trial_name,
                                           trial_dirname_creator=trial_name, reuse_actors=reuse),
               run_config=tune.RunConfig(name=variant, storage_path=storage, callbacks=[timeline], verbose=0,
                                         failure_config=tune.FailureConfig(max_failures=0))).fit()
    rows, since = [], started
    for t in timeline.done:
        with open(os.path.join(marks, t["name"] + ".json")) as f:
            row = {"variant": variant, **phases(t, since, json.load(f))}
        row["cpu"] = {k: v - cpu0.get(k, 0.0) for k, v in t["cpu"].items()}
        row["cpu_all"] = sum(row["cpu"].values())
        row["cpu_overhead"] = row["cpu_all"] - row["loop_cpu"]
        rows.append(row)
        since, cpu0 = t["completed"], t["cpu"]
    return rows


def measure(cfg, point: dict, rounds: int, per_tuner: int, reuse: bool) -> list[dict]:
    """ABBA rounds of (naive, ours) Tune experiments in one local Ray; the first trial of each is a warm-up."""
    import ray

    from simmim_ray.train.launch import apply_ray_env_defaults
    from simmim_ray.train.ray_init import start_local

    apply_ray_env_defaults()  # what `simmim-ray search` does before starting Ray; naive trials undo it
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    work = tempfile.mkdtemp(prefix="overhead_")
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    cpu = CpuMeter()
    rows = []
    try:
        start_local(num_cpus=2, temp_dir=ray_tmp, log_to_driver=False)
        for r in range(rounds):
            for variant in ("naive", "ours") if r % 2 == 0 else ("ours", "naive"):
                got = run_tuner(variant, f"{variant}{r}", per_tuner, cfg, point, work, cpu,
                                reuse and variant == "ours")
                for i, row in enumerate(got):
                    row["warmup"] = i == 0
                    print(f"round {r} {variant:5s} trial {i}{' (warm-up)' if i == 0 else ''}: wall "
                          f"{row['wall']:.1f} s, training {row['loop']:.1f} s, fixed {row['overhead']:.1f} s, "
                          f"CPU {sum(row['cpu'].values()):.1f} s | " +
                          " ".join(f"{k}={row[k]:.1f}" for _, k in PHASES), flush=True)
                rows += got
        if os.environ.get("OVERHEAD_DUMP_ACTORS"):
            dump_actors(os.environ["OVERHEAD_DUMP_ACTORS"])
    finally:
        ray.shutdown()
        cpu.stop.set()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return rows


WHY = """What ours changes, row by row (the lean path; the public path keeps only the actor-free changes: shared
data, 0.2 s polls, no preemption watcher, the final report's `done`, TensorBoard on rank 0): Tune reuses the trial actor (`reuse_actors`; the trial function aborts its
Train run when Tune stops the trial, `simmim_ray/search/trial/stop.py`, so a pruned trial hands its actor over at
once): no trial process to start and no torch import in it (Tune: start trial actor); no dataset manager actor when
the run has no Ray Datasets (CPU table); the driver loads the data once and shares it through the object store
(data + model setup; no scikit-learn import in the workers); the Train controller never imports torch
(`simmim_ray/_compat/ray_train.py`: Ray's torch backend steps are sent to the workers as functions of a light module
that call Ray's worker-side functions there; about 1.5 CPU-seconds less in the controller, which the workers' start
got back: controller row and CPU table); Train's reports reach Tune through Ray's KV store
(`simmim_ray/search/trial/relay.py`), not a queue actor started per trial (CPU table: no _QueueActor); the
controller polls every 0.2 s instead of 2 s
(checkpoint + report: a report can wait for the next poll); the final report carries `done`, so Tune ends the trial
there instead of waiting for the next poll and the worker group's shutdown (last report -> fit() returns; the last
row goes negative when Tune has ended the trial before `fit()` returns, and the rest of that shutdown delays the
next trial's reuse of the actor, in its first row); no preemption watcher process (CPU table); only rank 0 imports
TensorBoard. Checkpoints of these small models cost ~0.1 s per epoch: lighter ones would give nothing.

What is left is Train V2's per-run processes: each `fit()` starts a controller, a placement-group cleaner, a
synchronization actor and the two workers, each 1-2 CPU seconds of Python + Ray start-up, and
each worker imports
ray.train (pandas), torch and torch._dynamo (which every torch optimiser imports on construction; torchvision pulls it
in first) before its loop starts: see the CPU table and the import line, against 2 cores. Train V2 cannot keep a
worker group across `fit()` calls, so none of this can be reused between trials. Tried and not adopted: keeping
Ray's torch backend but importing it in a controller thread while the workers start (the controller placed its
workers 1.1 s sooner, but its import then shared the 2 cores with the workers' start: fit() wall time unchanged
over 9 + 9 interleaved fits);
`RAY_preload_python_modules=torch` (every new Ray process, the helper actors too, then imports torch: actors created
after the raylet's first prestarted processes take 1.6 s to be ready instead of 0.4 s, which moves the cost rather than
removing it); running without Train's placement-group cleaner (1.2-1.5 s less per trial here) would leak the
workers' CPUs whenever a controller dies with its trial actor: placement groups outlive their creator actor (checked:
still CREATED 15 s after the creator was killed); a controller health check every 0.1 s instead of 0.2 s (no
measurable change in a fit()'s wall time, 4 fits each). On this machine the trial's own training must last about 3x its
fixed cost for 75% of the time to be training."""


def report(rows: list[dict], cfg, point: dict, imports: dict, info: dict, reuse: bool) -> str:
    counted = [r for r in rows if not r["warmup"]]
    by = {v: [r for r in counted if r["variant"] == v] for v in ("naive", "ours")}
    med = {v: {k: common.median([r[k] for r in rs]) for k in rs[0] if k not in ("variant", "cpu", "warmup")}
           for v, rs in by.items()}
    kinds = sorted({k for r in counted for k in r["cpu"]}, key=lambda k: -sum(r["cpu"].get(k, 0) for r in counted))
    cpu = {v: {k: common.median([r["cpu"].get(k, 0.0) for r in rs]) for k in kinds} for v, rs in by.items()}
    m, t = cfg.with_overrides(point).model, cfg.train
    n, o = med["naive"], med["ours"]
    lines = [f"One point of `digits_quick` (ViT {m.img_size} px, width {m.embed_dim}, depth {m.depth}; "
             f"{t.epochs} pre-training epochs with the k-NN proxy after each, {cfg.eval.epochs}-epoch "
             f"{cfg.eval.protocol} at the end), 2 Train workers x 1 CPU, local Ray with num_cpus=2, one trial at a "
             f"time. Each kind runs in its own Tune experiment (ours with the search driver's settings"
             f"{', reuse_actors=True' if reuse else ''}); the first trial of each experiment is a warm-up (it "
             f"also pays for Tune's start) and is not counted. {len(by['naive'])} + {len(by['ours'])} counted "
             "trials, experiments interleaved naive/ours/ours/naive; medians, seconds of wall time:", "",
             "| phase | naive | ours |", "|---|---|---|"]
    lines += [f"| {label} | {n[key]:.1f} | {o[key]:.1f} |" for label, key in PHASES]
    lines += [f"| **trial wall time** | {n['wall']:.1f} | {o['wall']:.1f} |",
              f"| training loop (pre-training + evaluation) | {n['loop']:.1f} | {o['loop']:.1f} |",
              f"| **fixed cost = wall - training loop** | {n['overhead']:.1f} | {o['overhead']:.1f} |",
              f"| share of the trial in training | {n['loop'] / n['wall']:.0%} | {o['loop'] / o['wall']:.0%} |",
              f"| of which data loading per worker (in setup) | {n['data']:.2f} | {o['data']:.2f} |", "",
              "CPU seconds per trial (all processes of this Ray instance and the driver, by process kind; on 2 "
              "cores the training loop can use at most 2 x its wall time):", "",
              "| process | naive | ours |", "|---|---|---|"]
    lines += [f"| {k} | {cpu['naive'][k]:.1f} | {cpu['ours'][k]:.1f} |" for k in kinds if
              max(cpu["naive"][k], cpu["ours"][k]) >= 0.1]  # medians per kind: they need not add up
    lines += [f"| **all** | {n['cpu_all']:.1f} | {o['cpu_all']:.1f} |",
              f"| of which the training loop (both workers) | {n['loop_cpu']:.1f} | {o['loop_cpu']:.1f} |",
              f"| **overhead CPU seconds** | {n['cpu_overhead']:.1f} | {o['cpu_overhead']:.1f} |"]
    ratio = n["overhead"] / max(o["overhead"], 1e-9)
    lines += ["", "Imports in a fresh interpreter during this run, wall (CPU) s: " +
              ", ".join(f"{k} {w:.1f} ({c:.1f})" for k, (w, c) in imports.items()) + ".", "",
              f"Fixed cost per trial: naive {n['overhead']:.1f} s, ours {o['overhead']:.1f} s (naive / ours = "
              f"{ratio:.2f}x); share of trial time in training: naive {n['loop'] / n['wall']:.0%}, ours "
              f"{o['loop'] / o['wall']:.0%}. Goals: fixed cost <= 8 s " +
              ("met" if o["overhead"] <= 8 else "not met") + "; >= 75% of the trial in training " +
              ("met" if o["loop"] >= 0.75 * o["wall"] else "not met") +
              f". Load average {info['load_avg_1m']} at start and "
              f"{os.getloadavg()[0]:.1f} at the end on {info['cores']} cores: other jobs shared the CPUs, which "
              "stretches every phase, process starts and imports most.", "", WHY]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 epochs, one round of 2 trials per kind")
    ap.add_argument("--rounds", type=int, default=None, help="naive/ours rounds, ABBA (default 2; 1 with --quick)")
    ap.add_argument("--trials", type=int, default=None,
                    help="trials per Tune experiment, the first a warm-up (default 3; 2 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="pre-training epochs per trial (default: the space's)")
    ap.add_argument("--reuse-actors", choices=("driver", "yes", "no"), default="driver",
                    help="Tune actor reuse for ours (default: what the search driver does)")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    cfg, point = base_config(args.quick, args.epochs)
    rounds = args.rounds or (1 if args.quick else 2)
    per_tuner = max(2, args.trials or (2 if args.quick else 3))
    from simmim_ray._compat import trial_path

    path = trial_path()
    reuse = ours_reuse_actors(path) if args.reuse_actors == "driver" else args.reuse_actors == "yes"
    info = common.machine_info()
    print(common.describe(info), flush=True)
    imports = import_seconds()
    rows = measure(cfg, point, rounds, per_tuner, reuse)
    body = f"Trial path of ours: **{path}** (simmim_ray/_compat).\n\n" + report(rows, cfg, point, imports, info, reuse)
    common.publish(f"trial_overhead ({path} path)", body, args, info)
    return 0


def ours_reuse_actors(path: str) -> bool:
    """Whether `simmim-ray search` keeps Tune's trial actors between trials (its TuneConfig) on `path`."""
    from simmim_ray.search import driver

    return driver.reuse_actors(path == "lean")


if __name__ == "__main__":
    sys.exit(main())
