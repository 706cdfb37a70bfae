"""`simmim-ray search`: flags, the experiment's settings, the checks before Ray starts, then the driver."""
from __future__ import annotations

import json
import os

from simmim_ray.cli.args import int_at_least, positive_float, positive_int


def add_parser(sub) -> None:
    s = sub.add_parser("search", help="constrained search for the smallest backbone meeting a target accuracy")
    s.add_argument("space", nargs="?", default="digits_quick",
                   help="search space YAML (a path, or the name of one in search_spaces/)")
    s.add_argument("--trials", type=positive_int("--trials"), default=None)
    s.add_argument("--target-accuracy", type=float, default=None)
    s.add_argument("--size-metric", choices=("params", "flops"), default=None)
    s.add_argument("--scheduler", choices=("asha", "fifo"), default="asha")
    s.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    s.add_argument("--asha-metric", default="proxy_knn", help="per-epoch metric ASHA ranks trials on")
    s.add_argument("--grace-period", type=positive_int("--grace-period"), default=2)
    s.add_argument("--max-concurrent", type=positive_int("--max-concurrent"), default=None)
    s.add_argument("--workers-per-trial", type=positive_int("--workers-per-trial"), default=2)
    s.add_argument("--cpus-per-worker", type=positive_float("--cpus-per-worker"), default=1.0)
    s.add_argument("--gpus-per-worker", type=positive_float("--gpus-per-worker"), default=1.0)
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
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", default=None, metavar="DIR", help="continue the experiment in DIR")
    s.add_argument("--address", default=None, help="Ray address: auto, ray://HOST:PORT (default: local)")


def run(args) -> int:
    from simmim_ray import storage as sio
    from simmim_ray.configio import load_config
    from simmim_ray.errors import UserError
    from simmim_ray.search.driver import run_search, stored_input
    from simmim_ray.search.settings import SearchSettings
    from simmim_ray.search.space import load_space
    from simmim_ray.train.ray_init import init_ray
    from simmim_ray.storage import resolve_storage

    if args.resume:
        d = args.resume.rstrip("/")
        try:
            resolve_storage(d)
        except UserError as e:
            raise UserError(str(e).replace("--storage-path ", "--resume ", 1)) from None
        if not sio.exists(sio.join(d, "settings.json")):
            raise UserError(f"--resume {d!r}: not an experiment directory (no settings.json)")
        stored = json.loads(sio.read_bytes(sio.join(d, "settings.json")))
        s = SearchSettings(**{**stored, "overrides": tuple(stored["overrides"])})
        s.space_path, s.config_path = stored_input(d, s.space_path), stored_input(d, s.config_path)
        if args.trials:
            s.trials = args.trials
    else:
        s = None
    config_path = s.config_path if s else args.config
    overrides = list(s.overrides) if s else args.set
    base = load_config(config_path or None, overrides)
    space = load_space(s.space_path if s else space_file(args.space), base)
    # the space's `fixed:` values apply to every trial (and ASHA's max_t); the user's --set wins over them
    from simmim_ray.configio import parse_set

    base = space.base_config(load_config(config_path or None)).with_overrides(parse_set(overrides))
    if s is None:
        target = args.target_accuracy if args.target_accuracy is not None else space.target_accuracy
        if target is None:
            raise UserError("--target-accuracy: required (or `target_accuracy:` in the space file)")
        if not 0 < target <= 1:
            raise UserError(f"`0 < --target-accuracy <= 1` must hold, but got {target}")
        resolve_storage(args.storage_path)  # unsupported scheme, no bucket, credentials in the URI: exit 2
        storage = sio.resolve_storage(args.storage_path)[2]
        s = SearchSettings(
            space_path=os.path.abspath(space_file(args.space)), name=args.name or space.name, storage=storage,
            trials=args.trials or space.trials or 8, target_accuracy=float(target),
            size_metric=args.size_metric or space.size_metric, scheduler=args.scheduler, sampler=args.sampler,
            asha_metric=args.asha_metric, grace_period=args.grace_period, max_concurrent=args.max_concurrent or 0,
            workers_per_trial=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
            gpus_per_worker=args.gpus_per_worker if args.gpu else 0.0, gpu=args.gpu,
            max_failures=args.max_failures, seed=args.seed, study_storage=args.storage,
            points=os.path.abspath(args.points) if args.points else "", warm_start=args.warm_start,
            config_path=os.path.abspath(args.config) if args.config else "", overrides=tuple(args.set),
            address=args.address or "")
        exp = sio.join(s.storage, s.name)
        if sio.exists(sio.join(exp, "settings.json")):
            raise UserError(f"experiment {exp} exists: continue it with --resume {exp}, or pick another --name")
    from simmim_ray.data.check import check_data

    check_data(base)
    from simmim_ray.search.driver import load_points
    from simmim_ray.search.settings import experiment_dir
    from simmim_ray.search.study_store import check_study, optuna_storage

    if args.resume:
        check_study(s, experiment_dir(s))
    else:  # these are read after Ray starts; check them before
        if s.points:
            load_points(s.points, space)
        if s.study_storage or not sio.is_node_local(s.storage):
            optuna_storage(s, experiment_dir(s))
    init_ray(s.address or None, log_to_driver=False)
    return run_search(s, space, base, resume=bool(args.resume))


def space_file(space: str) -> str:
    """A path as given, else a bundled space by name: ./search_spaces/ first, then the source checkout's."""
    if os.path.isfile(space):
        return space
    roots = ("search_spaces", os.path.join(os.path.dirname(__file__), "..", "..", "search_spaces"))
    for root in roots:
        for cand in (os.path.join(root, space), os.path.join(root, space + ".yaml")):
            if os.path.isfile(cand):
                return cand
    return space
