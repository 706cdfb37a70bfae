"""`simmim-ray train`: one configuration, data-parallel, final metrics in DIR/metrics.json."""
from __future__ import annotations

import json
import os
import sys

from simmim_ray import signals
from simmim_ray.cli.args import path_arg, positive_int, resource_amount
from simmim_ray.cli.input_checks import validate_train
from simmim_ray.io.configio import dump_config
from simmim_ray.train.epoch_lines import EpochFeed, data_summary, final_line
from simmim_ray.train.ray_init import init_ray


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train one configuration data-parallel under Ray Train")
    t.add_argument("--config", type=path_arg("--config", "a YAML config file"),
                   help="YAML config file (defaults: small ViT on digits)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--workers", type=positive_int("--workers"), default=2)
    t.add_argument("--gpu", action="store_true")
    t.add_argument("--cpus-per-worker", type=resource_amount("--cpus-per-worker"), default=1.0)
    t.add_argument("--output", default="runs/train", type=path_arg("--output", "a directory"),
                   help="run directory; again with the same config, the run resumes from its last checkpoint")
    t.add_argument("--address", default=None, help="Ray address: auto, ray://HOST:PORT (default: start locally)")


def run(args) -> int:
    plan = validate_train(args)  # everything the driver can refuse, before anything is written or Ray starts
    out = plan.out
    with signals.stopping(lambda: f"run the same command again to resume {out} from its last checkpoint"):
        return fit(args, plan)


def fit(args, plan) -> int:
    cfg, out = plan.cfg, plan.out
    os.makedirs(out, exist_ok=True)
    dump_config(cfg, os.path.join(out, "config.yaml"))
    print(f"simmim-ray train: {cfg.model.arch} on {data_summary(plan.summary)}, {cfg.train.epochs} epochs, "
          f"{args.workers} worker(s) -> {out}", flush=True)
    # the workers' and Ray Train's own lines (every rank's, each report's whole metrics dict) stay in Ray's
    # session logs: the driver prints one line per epoch from rank 0's queue instead (train/epoch_lines.py)
    init_ray(args.address, log_to_driver=False)

    from ray.train import TrainingFailedError  # Ray Train once Ray is up: not at the CLI's startup

    from simmim_ray.train.launch import Resources, make_trainer

    res = Resources(workers=args.workers, gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                    threads=max(1, int(args.cpus_per_worker)))
    with EpochFeed(cfg.train.epochs) as feed:
        # a single run selects nothing, so it may report the test split beside validation
        trainer = make_trainer(cfg, res, storage_path=out, name="train", tb_dir=os.path.join(out, "tb"),
                               eval_splits=("val", "test"), progress=feed.queue)
        try:
            result = trainer.fit()
        except TrainingFailedError as e:
            # the workers' tracebacks are not printed here (log_to_driver=False): name the exception that ended it
            from simmim_ray.search.progress import summarise_error

            print(f"simmim-ray: error: training failed: {str(e).splitlines()[0]}: {summarise_error(str(e))} (the "
                  f"workers' full output is in Ray's session logs)", file=sys.stderr)
            return 1
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str, bool))}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    print(final_line(metrics), flush=True)
    return 0

