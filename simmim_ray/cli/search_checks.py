"""`search`'s validation pass, on the driver before Ray starts: its flags as a whole (flag_rules.py), the
experiment's settings (a new search's from the flags, the space and SearchSettings' defaults; a resumed one's as it
was started), the experiment directory, and the inputs input_checks.py checks (config, space, --points, data).
`simmim-ray search` starts Ray only with what `validate_search` returns (docs/bad_input.md lists what is refused).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simmim_ray import paths
from simmim_ray.cli import flag_rules
from simmim_ray.cli.args import int_in
from simmim_ray.cli.input_checks import check_data, check_points, space_file
from simmim_ray.config import Config
from simmim_ray.config_rules import SEED_MAX
from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.io.configio import load_config, parse_set
from simmim_ray.metrics import LOSS, LOSS_MASKED, LOSS_VISIBLE, PROXY_KNN
from simmim_ray.search import settings
from simmim_ray.search.record import db_url
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.space import SearchSpace, load_space
from simmim_ray.train.resources import check_fits, local_resources, starts_locally
from simmim_ray.train.ray_init import check_address

if TYPE_CHECKING:  # pyarrow: not at the CLI's startup
    from simmim_ray.search.record.experiment import Experiment

MAX_TRIALS = 1_000_000
# an experiment name is one directory (local or in a bucket), an Optuna study name and a Tune experiment name
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,127}")
# what every trial reports each epoch (engine/pretrain.py's loss terms, engine/run.py's proxy); another name would
# leave ASHA without its metric, which it does not report: it would silently stop nothing
ASHA_METRICS = (PROXY_KNN, LOSS, LOSS_MASKED, LOSS_VISIBLE)
# flag dest -> SearchSettings field, for the flags that map one to one
FIELDS = ("trials", "budget_epochs", "budget_seconds", "target_accuracy", "size_metric", "scheduler", "sampler",
          "asha_metric", "grace_period", "remeasure_seeds",
          "max_concurrent", "workers_per_trial", "cpus_per_worker", "gpus_per_worker", "gpu", "max_failures",
          "study_db", "warm_start", "seed", "address", "confirm", "confirm_seeds", "confirm_reseed", "feasibility")
# flags that define a search (settings.json and inputs/ hold them for --resume); FIELDS not in RESUMABLE too
DEFINING = ("space", "storage_path", "name", "points", "config", "set")


@dataclass
class SearchPlan:
    settings: SearchSettings
    space: SearchSpace
    base: Config
    exp: Experiment  # where the search runs (a resumed one: where it is now)
    resume: bool


def split_budget(args) -> None:
    """--budget parsed to (field, value): one of the two budget fields is set, the other left unset."""
    budget = getattr(args, "budget", None)
    args.budget_epochs = args.budget_seconds = None
    if budget is not None:
        setattr(args, budget[0], budget[1])


def validate_search(args) -> SearchPlan:
    from simmim_ray.search.driver import load_points  # pyarrow: not at the CLI's startup
    from simmim_ray.search.record.study_store import check_new_study, check_study

    split_budget(args)
    flag_rules.check(flag_rules.Flags("search", args), flag_rules.EARLY)
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
        space_path, config_path = space_file(args.space or settings.DEFAULT_SPACE), args.config
    overrides = list(s.overrides) if s else args.set or []
    base = load_config(config_path or None, overrides)
    space = load_space(space_path, base)
    # the space's `fixed:` values apply to every trial (and ASHA's max_t); the user's --set wins over them
    given = space.base_config(load_config(config_path or None)).with_overrides(parse_set(overrides))
    base = paths.resolve_config_paths(given)
    if s is None:
        exp, s = new_settings(args, space, space_path)
        if base.data.path != given.data.path:  # --resume from another directory must read the same data
            s.overrides += (f"data.path={base.data.path}",)
    paths.check_apart_from_data(exp.uri, f"the experiment {excerpt(exp.uri, PATH_CHARS)}", base)
    if s.scheduler in ("asha", "constraint") and s.asha_metric == PROXY_KNN and base.eval.proxy == "none":
        raise UserError(f"--asha-metric {PROXY_KNN}: needs `eval.proxy: knn` (with eval.proxy=none no trial reports "
                        f"it); use --scheduler fifo or another --asha-metric")
    flag_rules.check(flag_rules.Flags("search", args, s, space, base), flag_rules.LATE)
    if starts_locally(s.address):
        check_fits(s.workers_per_trial, s.cpus_per_worker, s.gpus_per_worker, s.gpu, local_resources(),
                   "--workers-per-trial", "this machine (Ray starts locally; join a cluster with --address for "
                   "more)", job="one trial")
    check_data(base)
    if args.resume:
        check_study(s, exp)
    else:  # these are read after Ray starts; check them before
        if s.points:
            check_points(s.points, load_points(s.points, space), space, base)
        if s.study_db or not exp.is_node_local():
            check_new_study(s, exp)
    check_address(s.address or None)
    return SearchPlan(s, space, base, exp, bool(args.resume))


def new_settings(args, space, space_path: str):
    """A new search's experiment and settings: the flags given, else the space's values, else SearchSettings'
    defaults; every path absolute, the experiment root writable, the experiment new."""
    from simmim_ray.io import storage  # pyarrow: not at the CLI's startup
    from simmim_ray.search.record.experiment import Experiment

    target = args.target_accuracy if args.target_accuracy is not None else space.target_accuracy
    if target is None:
        raise UserError("--target-accuracy: required (or `target_accuracy:` in the space file)")
    if not 0 < target <= 1:
        raise UserError(f"`0 < --target-accuracy <= 1` must hold, but got {excerpt(target)}")
    root = storage.resolve_storage(args.storage_path or settings.DEFAULT_ROOT)[2]  # bad scheme, no bucket, credentials
    if storage.is_node_local(root):
        paths.check_writable_dir(root, "--storage-path")
    name = space.name if args.name is None else args.name
    if not NAME_RE.fullmatch(name):
        flag = "--name" if args.name is not None else f"the space's name {excerpt(name)} (give --name)"
        raise UserError(f"{flag}: an experiment name must be 1-128 letters, digits and _ . + = - "
                        f"(one directory, no / or spaces), but got {excerpt(name)}")
    trials = args.trials or space.trials or settings.default("trials")
    if trials > MAX_TRIALS:
        raise UserError(f"`trials <= {MAX_TRIALS:,}` (--trials, or `trials:` in the space) must hold, but got "
                        f"{excerpt(trials)}")
    given = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if "grace_period" not in given and space.grace_period is not None:
        given["grace_period"] = space.grace_period
    if "budget_epochs" not in given and "budget_seconds" not in given and space.budget is not None:
        given["budget_epochs"] = space.budget
    if given.get("study_db"):
        db_url.check(given["study_db"], "--study-db")
        given["study_db"] = _absolute_sqlite(given["study_db"])
    s = settings.SearchSettings(**{
        **given, "space_path": paths.absolute(space_path), "name": name, "root": root, "trials": trials,
        "target_accuracy": float(target), "size_metric": args.size_metric or space.size_metric,
        "points": paths.absolute(args.points, "--points") if args.points else "",
        "config_path": paths.absolute(args.config, "--config") if args.config else "",
        "overrides": tuple(args.set or ())})
    settings.check(s, "search")
    exp = Experiment.at(s.root, s.name)
    check_new_experiment(exp)
    return exp, s


def check_new_experiment(exp) -> None:
    """A new search needs a new experiment (checked again once it holds the experiment's lease: another driver may
    have started it since)."""
    if exp.exists():
        raise UserError(f"experiment {exp.uri} exists: continue it with --resume {exp.uri}, or pick another --name")


def _absolute_sqlite(url: str) -> str:
    """sqlite:///rel.db names a file relative to this directory; settings.json must name the same file on a
    --resume from elsewhere (sqlite:////abs.db is absolute)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix or url.endswith(":memory:"):
        return url
    path = url[len(prefix):] if url.startswith(prefix + "/") else paths.absolute(url[len(prefix):], "--study-db")
    paths.require_file_if_present(path, f"--study-db {excerpt(url, PATH_CHARS)}")  # a FIFO would hang SQLite
    return prefix + path


def _flag(field: str) -> str:
    return "--budget" if field.startswith("budget_") else "--" + field.replace("_", "-")


def resumed_settings(args):
    """The experiment in --resume DIR (where it is now) and its settings; refuses flags that would change the
    search, and settings or inputs changed since it started, before anything is written."""
    d = args.resume.rstrip("/")
    exp = open_experiment(d, "--resume")
    changing = ["SPACE" if k == "space" else f"--{k.replace('_', '-')}" for k in (*DEFINING, *FIELDS)
                if k not in settings.RESUMABLE and getattr(args, k) not in (None, [])]
    if changing:
        raise UserError(f"--resume {excerpt(d, PATH_CHARS)} continues the search as it was started; "
                        f"{', '.join(changing)} would change it (with --resume give only "
                        f"{', '.join(dict.fromkeys(_flag(k) for k in settings.RESUMABLE))}), or start a new search")
    s = exp.load_settings()
    for k in settings.RESUMABLE:
        if getattr(args, k) is not None:
            setattr(s, k, getattr(args, k))
    settings.check(s, "--resume")
    exp.check_unchanged(s)
    return exp, s


def open_experiment(d: str, flag: str):
    """An existing experiment named on the command line (`flag`: how messages name it)."""
    from simmim_ray.search.record.experiment import SETTINGS, Experiment  # pyarrow: not at the CLI's startup

    if not paths.is_uri(d):
        paths.require_dir(d, f"{flag} {excerpt(d, PATH_CHARS)}")
    try:
        exp = Experiment(d)
    except UserError as e:  # an unsupported URI: one line, not pyarrow's traceback
        raise UserError(str(e).replace("--storage-path ", f"{flag} ", 1)) from None
    if not exp.exists():
        raise UserError(f"{flag} {excerpt(d, PATH_CHARS)}: not an experiment directory (no {SETTINGS})")
    return exp


def seed_flag(v: str) -> int:
    """argparse type of `search --seed`: the config's seed rule (numpy and Optuna take [0, 2**32))."""
    return int_in("--seed", 0, SEED_MAX)(v)
