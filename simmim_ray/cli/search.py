"""`simmim-ray search`: flags, the experiment's settings, the checks before Ray starts, then the driver."""
from __future__ import annotations

from simmim_ray.cli.args import int_at_least, positive_int, resource_amount
from simmim_ray.cli.validate import seed_flag, space_file, validate_search
from simmim_ray.metrics import LOSS, LOSS_MASKED, LOSS_VISIBLE, PROXY_KNN

__all__ = ["add_parser", "run", "space_file"]

# what every trial reports each epoch (engine/pretrain.py's loss terms, engine/run.py's proxy); another name would
# leave ASHA without its metric, which it does not report: it would silently stop nothing
ASHA_METRICS = (PROXY_KNN, LOSS, LOSS_MASKED, LOSS_VISIBLE)


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="constrained search for the smallest backbone meeting a target accuracy")
    s.add_argument("space", nargs="?", default="digits_quick",
                   help="search space YAML (a path, or the name of one in search_spaces/)")
    s.add_argument("--trials", type=positive_int("--trials"), default=None)
    s.add_argument("--target-accuracy", type=float, default=None)
    s.add_argument("--size-metric", choices=("params", "flops"), default=None)
    s.add_argument("--scheduler", choices=("asha", "fifo"), default="asha")
    s.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    s.add_argument("--asha-metric", default="proxy_knn", choices=ASHA_METRICS,
                   help="per-epoch metric ASHA ranks trials on")
    s.add_argument("--grace-period", type=positive_int("--grace-period"), default=2)
    s.add_argument("--max-concurrent", type=positive_int("--max-concurrent"), default=None)
    s.add_argument("--workers-per-trial", type=positive_int("--workers-per-trial"), default=2)
    s.add_argument("--cpus-per-worker", type=resource_amount("--cpus-per-worker"), default=1.0)
    s.add_argument("--gpus-per-worker", type=resource_amount("--gpus-per-worker"), default=1.0)
    s.add_argument("--gpu", action="store_true")
    s.add_argument("--max-failures", type=int_at_least("--max-failures", 0), default=1,
                   help="Train worker-group restarts per trial (0: none; never unlimited)")
    s.add_argument("--storage-path", default="experiments", help="local dir or URI (s3://, gs://, file://)")
    s.add_argument("--name", default=None, help="experiment name (default: the space's name)")
    s.add_argument("--storage", default="", help="Optuna storage URL (default sqlite:///<experiment>/study.db)")
    s.add_argument("--points", default="", help="YAML list of configs to try first")
    s.add_argument("--warm-start", type=int_at_least("--warm-start", 0), default=3, metavar="N",
                   help="first try N points of a size ladder: the smallest architecture of the space, then "
                        "about 2x larger each (capped at half the trials; 0: off, TPE starts at random)")
    s.add_argument("--config", default=None, help="base config YAML under the space")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--seed", type=seed_flag, default=0, help="sampler seed, in [0, 2**32)")
    s.add_argument("--resume", default=None, metavar="DIR", help="continue the experiment in DIR")
    s.add_argument("--address", default=None, help="Ray address: auto, ray://HOST:PORT (default: local)")


def run(args) -> int:
    from simmim_ray.search.driver import run_search
    from simmim_ray.train.ray_init import init_ray

    plan = validate_search(args)  # config, space, points, paths, data, resources: all before Ray starts
    init_ray(plan.settings.address or None, log_to_driver=False)
    return run_search(plan.settings, plan.space, plan.base, resume=plan.resume)
