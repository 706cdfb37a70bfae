"""The benchmark table of a search space: every configuration trained once, measured under several fine-tune seeds,
so that searches can be replayed against the known optimum (benchmarks/search_replay.py).

For each configuration of the space's discrete grid (every searched key must be a `choice` or an `int`):
- size: params and FLOPs of the encoder;
- per pre-training epoch: the early-stopping proxy (`proxy_knn`), the reconstruction loss, the CPU seconds of the
  epoch and its proxy;
- per fine-tune seed (`--ft-seeds`, seed 1 first: the one a search trial uses): validation and test accuracy and the
  CPU seconds of the fine-tune;
- on a sample of configurations (`--pretrain-sample`), the same for other pre-training seeds (the noise of the
  recipe rather than of the fine-tune).

A trial here is the Train worker's loop without Ray around it (`PretrainRun`, world size 1, one torch thread, the
2-worker global batch, so the same optimiser steps at the same learning rate as a search trial). Ground truth:
a configuration is feasible when its mean test accuracy over its fine-tune seeds meets the target; S* is the
smallest feasible size.

The table is one JSON file, rewritten atomically after each configuration under a file lock: the build resumes
where it stopped, and several processes (`--jobs`) share it without training a configuration twice.

    python -m benchmarks.search_table --jobs 2                 # build (or continue) the default space's table
    python -m benchmarks.search_table --status                 # how far it is
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks import common
from simmim_ray.metrics import FLOPS, LOSS, PARAMS, PROXY_KNN, TEST_ACCURACY, VAL_ACCURACY

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = os.path.join(HERE, "tables")
DEFAULT_SPACE = "digits_quick"
WORKERS = 2  # a search trial's data-parallel workers: the table's trial takes their global batch
FT_SEEDS = 3
PRETRAIN_SEEDS = (1, 2)  # extra pre-training seeds of the sample (the search's trials pre-train with seed 0)


def table_path(space_name: str) -> str:
    return os.path.join(TABLES, f"{space_name}.json")


def recipe(space_name: str = DEFAULT_SPACE, overrides: dict | None = None):
    """(space, base config) as a search trial of `space_name` runs: its fixed keys, the 2-worker global batch."""
    from simmim_ray.cli.search import space_file
    from simmim_ray.search.space import load_space

    space = load_space(space_file(space_name))
    base = space.base_config().with_overrides({"train.log_images": False, **(overrides or {})})
    base = base.with_overrides({"train.batch_size": WORKERS * base.train.batch_size,
                                "eval.batch_size": WORKERS * base.eval.batch_size})
    return space, base


def grid(space) -> list[dict]:
    """Every configuration of the space (searched key -> value), loss and mask keys outermost: a build stopped
    part-way has measured every architecture under the first recipe variants (a complete sub-grid)."""
    for p in space.params:
        if p.kind not in ("choice", "int"):
            raise SystemExit(f"search_table: `{p.key}` is {p.kind}; the table needs a discrete space")
    arch = [p for p in space.params if p.key.startswith("model.")]
    rest = [p for p in space.params if not p.key.startswith("model.")]
    _, base = recipe(space.name)
    recipe_values = [base.to_dict()[p.key.split(".")[0]][p.key.split(".")[1]] for p in rest]
    variants = sorted(itertools.product(*[p.candidates() for p in rest]),
                      key=lambda r: sum(v != b for v, b in zip(r, recipe_values)))  # the recipe's own first
    out = []
    for r in variants:
        for a in itertools.product(*[p.candidates() for p in arch]):
            out.append({**{p.key: v for p, v in zip(arch, a)}, **{p.key: v for p, v in zip(rest, r)}})
    return out


def config_key(point: dict) -> str:
    return json.dumps(point, sort_keys=True)


def load(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _update(path: str, fn) -> dict:
    """Applies `fn(table)` to the table on disk under its lock and writes it back atomically."""
    with common.locked(path):
        table = load(path)
        fn(table)
        common.atomic_write_json(path, table)
        return table


# ---- measuring ---------------------------------------------------------------------------------------------------
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def measure_pretrain(cfg, splits) -> tuple[dict, object]:
    """Pre-trains `cfg` epoch by epoch: per epoch {proxy_knn, loss, cpu_s}; -> (record, the run)."""
    from simmim_ray.engine.run import PretrainRun

    run = PretrainRun(cfg, splits=splits)
    epochs = []
    while run.epoch < cfg.train.epochs:
        c0 = time.process_time()
        m = run.train_epoch()
        proxy = run.proxy()[PROXY_KNN]
        epochs.append({PROXY_KNN: proxy, LOSS: float(m.get(LOSS, float("nan"))), "cpu_s": time.process_time() - c0})
    size = run.size()
    return {PARAMS: int(size[PARAMS]), FLOPS: int(size[FLOPS]), "epochs": epochs}, run


def measure_finetunes(run, seeds) -> list[dict]:
    out = []
    for seed in seeds:
        c0 = time.process_time()
        m = run.final_eval(splits=("val", "test"), seed=seed)
        out.append({"seed": seed, VAL_ACCURACY: m[VAL_ACCURACY], TEST_ACCURACY: m[TEST_ACCURACY],
                    "cpu_s": time.process_time() - c0})
    return out


def ft_seeds(n: int) -> list[int]:
    """Fine-tune seeds: 1 is what a search trial uses (config seed 0 -> 0 * 7 + 1), then 2, 3, ..."""
    return list(range(1, n + 1))


def build_one(task: tuple) -> str:
    """Measures one configuration (or one pre-training seed of it) unless the table has it; -> what it did."""
    path, space_name, key, pretrain_seed, n_ft = task
    _threads()
    table = load(path)
    row = table["configs"].get(key)
    if pretrain_seed is None and row is not None and len(row["finetune"]) >= n_ft:
        return "have"
    if pretrain_seed is not None and str(pretrain_seed) in table.get("pretrain_seeds", {}).get(key, {}):
        return "have"
    tag = hashlib.sha256(f"{key}/{pretrain_seed}".encode()).hexdigest()[:12]
    with common.locked(f"{path}.{tag}"):  # one process per configuration
        table = load(path)
        row = table["configs"].get(key)
        _, base = recipe(space_name, table.get("overrides"))
        point = json.loads(key)
        cfg = base.with_overrides({**point, "seed": pretrain_seed or 0})
        from simmim_ray.data import build_splits

        splits = build_splits(cfg)
        if pretrain_seed is None and row is not None:  # more fine-tune seeds for a measured configuration
            rec, run = measure_pretrain(cfg, splits)  # deterministic: the same encoder as before
            have = {f["seed"] for f in row["finetune"]}
            more = measure_finetunes(run, [s for s in ft_seeds(n_ft) if s not in have])
            _update(path, lambda t: t["configs"][key]["finetune"].extend(more))
            return f"+{len(more)} seeds"
        rec, run = measure_pretrain(cfg, splits)
        rec["finetune"] = measure_finetunes(run, ft_seeds(n_ft))
        if pretrain_seed is None:
            rec["point"] = point
            _update(path, lambda t: t["configs"].__setitem__(key, rec))
        else:
            _update(path, lambda t: t.setdefault("pretrain_seeds", {}).setdefault(key, {}).__setitem__(
                str(pretrain_seed), {k: rec[k] for k in ("epochs", "finetune")}))
        return "built"


def init_table(path: str, space_name: str) -> None:
    space, base = recipe(space_name)
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    common.atomic_write_json(path, {
        "space": space_name, "target_accuracy": space.target_accuracy, "size_metric": space.size_metric,
        "trials": space.trials, "budget": space.budget, "grace_period": space.grace_period,
        "epochs": base.train.epochs,
        "keys": space.keys(), "recipe": base.to_dict(), "machine": common.machine_info(), "configs": {}})


def measured_cpu_s(t: dict) -> float:
    """Every CPU second the table measured: each configuration's epochs and fine-tunes, and those of the extra
    pre-training seeds."""
    runs = [*t["configs"].values(), *(v for seeds in t.get("pretrain_seeds", {}).values() for v in seeds.values())]
    return sum(sum(e["cpu_s"] for e in r["epochs"]) + sum(f["cpu_s"] for f in r["finetune"]) for r in runs)


def status(path: str, space_name: str) -> str:
    space, _ = recipe(space_name)
    t = load(path)
    total = len(grid(space))
    sample = sum(len(v) for v in t.get("pretrain_seeds", {}).values())
    return (f"{path}: {len(t['configs'])} of {total} configurations, {sample} extra pre-training seeds, "
            f"{measured_cpu_s(t):,.0f} CPU s measured")


def cost_section(path: str, space_name: str, jobs: int) -> str:
    """RESULTS.md's record of a complete table: what it holds, its command and what it cost."""
    space, base = recipe(space_name)
    t = load(path)
    cpu, extra = measured_cpu_s(t), t.get("pretrain_seeds", {})
    seeds = sorted({len(r["finetune"]) for r in t["configs"].values()})
    return (f"`{os.path.relpath(path, common.ROOT)}`: {len(t['configs'])} of {len(grid(space))} configurations of "
            f"`{space_name}` ({', '.join(space.keys())}), each pre-trained once ({base.train.epochs} epochs, "
            f"`{PROXY_KNN}` and CPU seconds per epoch) and fine-tuned under {'/'.join(map(str, seeds))} seeds "
            f"(validation and test accuracy, CPU seconds each); {len(extra)} of them also pre-trained under seeds "
            f"{', '.join(map(str, PRETRAIN_SEEDS))} (the pre-training seed's noise: `python -m benchmarks.table_stats`)."
            f"\n\nCost: {cpu:,.0f} CPU seconds measured, one core per configuration: about {cpu / 3600 / max(1, jobs):.1f} "
            f"hours of wall time with `--jobs {jobs}` on an idle machine of {jobs} cores. The build resumes where it "
            f"stopped (run the same command again), so it can span sessions; the table is committed, and "
            f"`python -m benchmarks.search_replay` replays searches over it.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default=DEFAULT_SPACE, help="a bundled space (search_spaces/NAME.yaml)")
    ap.add_argument("--out", default=None, help="the table (default benchmarks/tables/SPACE.json)")
    ap.add_argument("--jobs", type=int, default=2, help="configurations measured at once (one core each)")
    ap.add_argument("--ft-seeds", type=int, default=FT_SEEDS, help="fine-tune seeds per configuration")
    ap.add_argument("--pretrain-sample", type=int, default=4,
                    help="configurations (spread over the grid) also pre-trained with seeds 1 and 2")
    ap.add_argument("--limit", type=int, default=0, help="measure at most this many configurations (0: all)")
    ap.add_argument("--status", action="store_true", help="print how far the table is and stop")
    ap.add_argument("--results", default=None, help="RESULTS.md to update once the table is complete")
    ap.add_argument("--no-write", action="store_true", help="write no RESULTS.md section")
    ap.set_defaults(quick=False)  # common.publish names quick runs' sections; a table has none
    args = ap.parse_args(argv)
    path = args.out or table_path(args.space)
    init_table(path, args.space)
    if args.status:
        print(status(path, args.space))
        return 0
    space, _ = recipe(args.space)
    keys = [config_key(p) for p in grid(space)]
    todo = [k for k in keys if len(load(path)["configs"].get(k, {}).get("finetune", [])) < args.ft_seeds]
    if args.limit:
        todo = todo[:args.limit]
    step = max(1, len(keys) // max(1, args.pretrain_sample))
    sample = keys[::step][:args.pretrain_sample] if args.pretrain_sample else []
    tasks = [(path, args.space, k, None, args.ft_seeds) for k in todo]
    tasks += [(path, args.space, k, s, args.ft_seeds) for k in sample for s in PRETRAIN_SEEDS]
    print(common.describe(common.machine_info()), flush=True)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for task, what in zip(tasks, pool.map(build_one, tasks)):
            print(f"[{time.time() - t0:6.0f} s] {what}: {task[2]}" + (f" pretrain seed {task[3]}" if task[3] else ""),
                  flush=True)
    print(status(path, args.space))
    if len(load(path)["configs"]) == len(keys):
        common.publish("search_table", cost_section(path, args.space, args.jobs), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
