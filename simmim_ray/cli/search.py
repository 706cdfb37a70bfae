"""`simmim-ray search`: flags, the experiment's settings, the checks before Ray starts, then the driver.

The flags state no defaults of their own: a flag not given is None here and SearchSettings' default (or the space's
value, for --trials, --target-accuracy and --size-metric) applies. So `--resume` knows exactly which flags were given.
"""
from __future__ import annotations

import argparse
import os
import sys

from simmim_ray.cli.args import int_at_least, positive_float, positive_int
from simmim_ray.metrics import SIZE_METRICS
from simmim_ray.search import settings as st

# flag dest -> SearchSettings field, for the flags that map one to one
FIELDS = ("trials", "target_accuracy", "size_metric", "scheduler", "sampler", "asha_metric", "grace_period",
          "max_concurrent", "workers_per_trial", "cpus_per_worker", "gpus_per_worker", "gpu", "max_failures",
          "study_db", "warm_start", "seed", "address", "confirm", "confirm_seeds", "confirm_reseed", "feasibility")
# flags that define a search (settings.json and inputs/ hold them for --resume); FIELDS not in st.RESUMABLE too
DEFINING = ("space", "storage_path", "name", "points", "config", "set")


def add_parser(sub) -> None:
    d = st.default
    s = sub.add_parser("search", help="constrained search for the smallest backbone meeting a target accuracy")
    s.add_argument("space", nargs="?", default=None,
                   help=f"search space YAML (a path, or the name of one in search_spaces/; default {st.DEFAULT_SPACE})")
    s.add_argument("--trials", type=positive_int("--trials"),
                   help=f"trials in all (default: the space's `trials:`, else {d('trials')})")
    s.add_argument("--target-accuracy", type=float, help="(default: the space's `target_accuracy:`)")
    s.add_argument("--size-metric", choices=SIZE_METRICS, help="(default: the space's `size_metric:`)")
    s.add_argument("--scheduler", choices=st.SCHEDULERS, help=f"(default {d('scheduler')})")
    s.add_argument("--sampler", choices=st.SAMPLERS, help=f"(default {d('sampler')})")
    s.add_argument("--asha-metric", help=f"per-epoch metric ASHA ranks trials on (default {d('asha_metric')})")
    s.add_argument("--grace-period", type=positive_int("--grace-period"), help=f"(default {d('grace_period')})")
    s.add_argument("--max-concurrent", type=positive_int("--max-concurrent"),
                   help="trials at once (default: what the cluster can place)")
    s.add_argument("--workers-per-trial", type=positive_int("--workers-per-trial"),
                   help=f"(default {d('workers_per_trial')})")
    s.add_argument("--cpus-per-worker", type=positive_float("--cpus-per-worker"),
                   help=f"(default {d('cpus_per_worker')})")
    s.add_argument("--gpus-per-worker", type=positive_float("--gpus-per-worker"),
                   help=f"with --gpu (default {d('gpus_per_worker')})")
    s.add_argument("--gpu", action="store_true", default=None)
    s.add_argument("--max-failures", type=int_at_least("--max-failures", 0),
                   help=f"Train worker-group restarts per trial (0: none; never unlimited; default "
                        f"{d('max_failures')})")
    s.add_argument("--storage-path", help=f"where the experiment goes: local dir or URI (s3://, gs://, file://); "
                                          f"default {st.DEFAULT_ROOT}")
    s.add_argument("--name", help="experiment name (default: the space's name)")
    s.add_argument("--study-db", help="Optuna database URL (default sqlite:///<experiment>/study.db)")
    s.add_argument("--storage", dest="storage_alias", help=argparse.SUPPRESS)  # deprecated name of --study-db
    s.add_argument("--points", help="YAML list of configs to try first")
    s.add_argument("--warm-start", type=int_at_least("--warm-start", 0), metavar="N",
                   help=f"first try N points of a size ladder: the smallest architecture of the space, then "
                        f"about 2x larger each (capped at half the trials; 0: off, TPE starts at random; default "
                        f"{d('warm_start')})")
    s.add_argument("--config", help="base config YAML under the space")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--seed", type=int, help=f"(default {d('seed')})")
    s.add_argument("--resume", metavar="DIR",
                   help="continue the experiment in DIR, as it was started (with --trials, --max-concurrent, "
                        "--address and the --confirm* / --feasibility flags only)")
    s.add_argument("--address", help="Ray address: auto, ray://HOST:PORT (default: local)")
    s.add_argument("--confirm", type=int_at_least("--confirm", 0), metavar="K",
                   help=f"after the search, measure the K smallest trials feasible on validation on the test split "
                        f"with several seeds; the answer is the smallest that still meets the target (0: off, the "
                        f"validation winner is the answer, unconfirmed; default {d('confirm')})")
    s.add_argument("--confirm-seeds", type=positive_int("--confirm-seeds"), metavar="S",
                   help=f"seeds per confirmed candidate (default {d('confirm_seeds')})")
    s.add_argument("--confirm-reseed", choices=st.RESEED,
                   help=f"finetune: re-seed the fine-tune of the trial's pre-trained encoder (what best/ holds); "
                        f"pretrain: re-run the whole trial per seed (default {d('confirm_reseed')})")
    s.add_argument("--feasibility", choices=st.FEASIBILITY,
                   help=f"confirmed when the mean test accuracy over seeds, or the lower end of its 95%% "
                        f"interval, meets the target (default {d('feasibility')})")


def run(args) -> int:
    from simmim_ray.configio import load_config, parse_set
    from simmim_ray.data.check import check_data
    from simmim_ray.errors import UserError
    from simmim_ray.search.driver import load_points, run_search
    from simmim_ray.search.space import load_space
    from simmim_ray.search.study_store import check_study, optuna_storage
    from simmim_ray.train.ray_init import init_ray

    if args.storage_alias is not None:
        print("simmim-ray: warning: --storage is deprecated (it names the Optuna database): use --study-db",
              file=sys.stderr)
        if args.study_db is not None and args.study_db != args.storage_alias:
            raise UserError("--storage and --study-db name two Optuna databases; give --study-db only")
        args.study_db = args.storage_alias
    if args.resume:
        exp, s = resumed_settings(args)
        space_path, config_path = exp.input_file(s.space_path), exp.input_file(s.config_path)
    else:
        exp = s = None
        space_path, config_path = space_file(args.space or st.DEFAULT_SPACE), args.config
    overrides = list(s.overrides) if s else args.set or []
    base = load_config(config_path or None, overrides)
    space = load_space(space_path, base)
    # the space's `fixed:` values apply to every trial (and ASHA's max_t); the user's --set wins over them
    base = space.base_config(load_config(config_path or None)).with_overrides(parse_set(overrides))
    if s is None:
        exp, s = new_settings(args, space, os.path.abspath(space_path))
    check_data(base)
    if args.resume:
        check_study(s, exp)
    else:  # these are read after Ray starts; check them before
        if s.points:
            load_points(s.points, space)
        if s.study_db or not exp.is_node_local():
            optuna_storage(s, exp)
    init_ray(s.address or None, log_to_driver=False)
    return run_search(s, space, base, exp, resume=bool(args.resume))


def resumed_settings(args):
    """The experiment in --resume DIR (where it is now) and its settings; refuses flags that would change the
    search, and settings or inputs changed since it started, before anything is written."""
    from simmim_ray.errors import UserError

    d = args.resume.rstrip("/")
    exp = open_experiment(d, "--resume")
    changing = ["SPACE" if k == "space" else f"--{k.replace('_', '-')}" for k in (*DEFINING, *FIELDS)
                if k not in st.RESUMABLE and getattr(args, k) not in (None, [])]
    if changing:
        raise UserError(f"--resume {d!r} continues the search as it was started; {', '.join(changing)} would "
                        f"change it (with --resume give only "
                        f"{', '.join('--' + k.replace('_', '-') for k in st.RESUMABLE)}), or start a "
                        f"new search")
    s = exp.load_settings()
    for k in st.RESUMABLE:
        if getattr(args, k) is not None:
            setattr(s, k, getattr(args, k))
    st.check(s, "--resume")
    exp.check_unchanged(s)
    return exp, s


def open_experiment(d: str, flag: str):
    """An existing experiment named on the command line (`flag`: how messages name it)."""
    from simmim_ray.errors import UserError
    from simmim_ray.search.experiment import SETTINGS, Experiment

    try:
        exp = Experiment(d)
    except UserError as e:  # an unsupported URI: one line, not pyarrow's traceback
        raise UserError(str(e).replace("--storage-path ", f"{flag} ", 1)) from None
    if not exp.exists():
        raise UserError(f"{flag} {d!r}: not an experiment directory (no {SETTINGS})")
    return exp


def new_settings(args, space, space_path: str):
    """A new search's experiment and settings: the flags given, else the space's values, else SearchSettings'."""
    from simmim_ray.errors import UserError
    from simmim_ray.search.experiment import Experiment
    from simmim_ray.storage import resolve_storage

    target = args.target_accuracy if args.target_accuracy is not None else space.target_accuracy
    if target is None:
        raise UserError("--target-accuracy: required (or `target_accuracy:` in the space file)")
    if not 0 < target <= 1:
        raise UserError(f"`0 < --target-accuracy <= 1` must hold, but got {target}")
    root = resolve_storage(args.storage_path or st.DEFAULT_ROOT)[2]  # bad scheme, no bucket, credentials: exit 2
    given = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    s = st.SearchSettings(**{
        **given, "space_path": space_path, "name": args.name or space.name, "root": root,
        "trials": args.trials or space.trials or st.default("trials"), "target_accuracy": float(target),
        "size_metric": args.size_metric or space.size_metric,
        "points": os.path.abspath(args.points) if args.points else "",
        "config_path": os.path.abspath(args.config) if args.config else "", "overrides": tuple(args.set or ())})
    st.check(s, "search")
    exp = Experiment.at(s.root, s.name)
    if exp.exists():
        raise UserError(f"experiment {exp.uri} exists: continue it with --resume {exp.uri}, or pick another --name")
    return exp, s


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
