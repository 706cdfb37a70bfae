"""Data-parallel scaling: training images/s on digits with 1 and 2 Ray Train (DDP) workers on one node.

A private local Ray (num_cpus = 2, own temp dir) runs `TorchTrainer` jobs whose workers run the real per-rank loop
(`PretrainRun.train_epoch`: data loading and augmentation, forward, backward, all-reduce, AdamW). Global images/s
= images of all ranks / the slowest rank's epoch time, median over the epochs after the first. The configurations
run interleaved (ABC, CBA, ...):

- 1 worker x 1 thread, 2 workers x 1 thread each: the scaling the question asks about;
- 1 worker x 2 threads: the same two cores used by intra-op threads instead of a second process, the honest
  comparison on a 2-core machine.

    python -m benchmarks.scaling            # digits default, 4 epochs per job, 2 rounds
    python -m benchmarks.scaling --quick    # tiny model, 2 epochs, 1 round: keeps it working in CI
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

QUICK_MODEL = {"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
               "mask": {"patch_size": 8, "ratio": 0.6}}
SETUPS = [("1 worker x 1 thread", 1, 1), ("2 workers x 1 thread", 2, 1), ("1 worker x 2 threads", 1, 2)]


def loop(config: dict) -> None:
    """Per-rank: pre-train `epochs` epochs; rank 0 writes every epoch's global images and seconds to a file."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from simmim_ray.config import Config
    from simmim_ray.engine.run import PretrainRun

    cfg = Config.from_dict(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    run = PretrainRun(cfg, rank, world, torch.device("cpu"),
                      wrap=ray.train.torch.prepare_model if world > 1 else (lambda m: m))
    epochs = []
    for _ in range(cfg.train.epochs):
        m = run.train_epoch()
        images = torch.tensor([float(m["images"])], dtype=torch.float64)
        seconds = torch.tensor([m["images"] / m["images_per_s"]], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(images)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        epochs.append({"images": images.item(), "seconds": seconds.item()})
    if rank == 0:
        with open(config["out"], "w") as f:
            json.dump(epochs, f)
    ray.train.report({"epochs": len(epochs)})


def run_job(cfg_dict: dict, workers: int, threads: int, storage: str, name: str) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    out = os.path.join(storage, name + ".json")
    t0 = time.perf_counter()
    TorchTrainer(loop, train_loop_config={"cfg": cfg_dict, "threads": threads, "out": out},
                 scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
                 run_config=ray.train.RunConfig(name=name, storage_path=storage,
                                                failure_config=ray.train.FailureConfig(max_failures=0))).fit()
    wall = time.perf_counter() - t0
    with open(out) as f:
        epochs = json.load(f)
    later = epochs[1:] or epochs  # the first epoch pays for start-up (allocator, DDP buckets, thread pools)
    ips = [e["images"] / e["seconds"] for e in later]
    return {"ips": common.median(ips), "wall": wall, "train_s": sum(e["seconds"] for e in epochs)}


def start_ray(temp: str) -> None:
    from simmim_ray.train.launch import apply_ray_env_defaults

    apply_ray_env_defaults()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    from simmim_ray.train.ray_init import start_local

    start_local(num_cpus=2, temp_dir=temp, log_to_driver=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 2 epochs, 1 round")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per job (default 4; 2 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; 1 with --quick)")
    ap.add_argument("--results", default=None, help="RESULTS.md to update (default benchmarks/RESULTS.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    from simmim_ray.config import Config

    epochs = args.epochs or (2 if args.quick else 4)
    rounds = args.rounds or (1 if args.quick else 2)
    over = {**(QUICK_MODEL if args.quick else {}),
            "train": {"epochs": epochs, "warmup_epochs": 1, "log_images": False}, "eval": {"proxy": "none"}}
    cfg = Config.from_dict(over)
    info = common.machine_info()
    print(common.describe(info), flush=True)

    import ray

    temp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    storage = tempfile.mkdtemp(prefix="scaling_")
    setups = SETUPS[:2] if args.quick else SETUPS  # --quick: each job costs ~15 s of Ray start-up
    res: dict[str, list[dict]] = {name: [] for name, _, _ in setups}
    try:
        start_ray(temp)
        for r in range(rounds):
            for name, workers, threads in setups if r % 2 == 0 else reversed(setups):
                out = run_job(cfg.to_dict(), workers, threads, storage, f"r{r}_{workers}w{threads}t")
                res[name].append(out)
                print(f"round {r}: {name}: {out['ips']:.0f} images/s (job wall {out['wall']:.1f} s, "
                      f"training {out['train_s']:.1f} s)", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)

    base = common.median([o["ips"] for o in res[SETUPS[0][0]]])
    m = cfg.model
    lines = [f"Digits, ViT {m.img_size} px, patch {m.patch_size}, width {m.embed_dim}, depth {m.depth}; batch "
             f"{cfg.train.batch_size} per worker (global batch grows with workers); {epochs} epochs per job, the "
             f"first not counted; {rounds} interleaved round(s). Local Ray, one node, num_cpus=2, one CPU per "
             "worker. Images/s count the whole per-rank loop: loading and augmenting images (in the worker, no "
             "loader processes), forward, backward, gradient all-reduce (gloo), AdamW.", "",
             "| setup | images/s (median over rounds) | vs 1 worker x 1 thread | job wall s (incl. Ray start-up) |",
             "|---|---|---|---|"]
    for name, _, _ in setups:
        ips = common.median([o["ips"] for o in res[name]])
        wall = common.median([o["wall"] for o in res[name]])
        lines.append(f"| {name} | {ips:.0f} | {ips / base:.2f}x | {wall:.1f} |")
    two_w = common.median([o["ips"] for o in res[SETUPS[1][0]]])
    threads = (f"; spending the second core on intra-op threads instead gives "
               f"{common.median([o['ips'] for o in res[SETUPS[2][0]]]) / base:.2f}x" if len(setups) > 2 else "")
    load = info["load_avg_1m"]
    state = "idle" if load < 1 else "shared with other jobs"
    lines += ["", f"On this machine ({info['cores']} cores, {state}: load average {load} at start) two workers "
              f"give {two_w / base:.2f}x one worker{threads}. Two cores bound "
              "both: this says whether DDP works here and what it costs, not how it scales on a cluster, where "
              "each worker has its own cores or GPU."]
    common.publish("scaling", "\n".join(lines), args, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
