"""`simmim-ray search`: flags, the experiment's settings, the checks before Ray starts, then the driver.

The flags state no defaults of their own: a flag not given is None here and SearchSettings' default (or the space's
value, for --trials, --target-accuracy and --size-metric) applies. So `--resume` knows exactly which flags were given.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from simmim_ray import signals
from simmim_ray.cli.args import budget_flag, int_at_least, int_in, path_arg, positive_int, resource_amount
from simmim_ray.cli.flag_rules import NO_ANSWER_EXIT
from simmim_ray.cli.input_checks import space_file
from simmim_ray.cli.search_checks import ASHA_METRICS, check_new_experiment, seed_flag, validate_search
from simmim_ray.errors import NoFeasibleTrial, one_line
from simmim_ray.metrics import SIZE_METRICS
from simmim_ray.search import settings
from simmim_ray.train import ray_init

__all__ = ["add_parser", "run", "space_file"]


def add_parser(sub) -> None:
    d = settings.default
    s = sub.add_parser("search", help="constrained search for the smallest backbone meeting a target accuracy")
    s.add_argument("space", nargs="?", default=None, type=path_arg("SPACE", "a search space file"),
                   help=f"search space YAML (a path, or the name of one in search_spaces/; default "
                        f"{settings.DEFAULT_SPACE})")
    s.add_argument("--trials", type=positive_int("--trials"),
                   help=f"trials in all (default: the space's `trials:`, else {d('trials')})")
    s.add_argument("--budget", type=budget_flag, metavar="N|TIME",
                   help="compute after which no trial starts: trial-epochs (480) or trial wall time (900s, 15m), "
                        "summed over trials; what early stopping saves buys more configurations (default: the "
                        "space's `budget:`, else none: --trials alone)")
    s.add_argument("--target-accuracy", type=float, help="(default: the space's `target_accuracy:`)")
    s.add_argument("--size-metric", choices=SIZE_METRICS, help="(default: the space's `size_metric:`)")
    s.add_argument("--scheduler", choices=settings.SCHEDULERS,
                   help=f"constraint: stop a trial once it cannot beat the smallest feasible size or its proxy says "
                        f"it will miss the target; asha; fifo (default {d('scheduler')})")
    s.add_argument("--remeasure-seeds", type=int_in("--remeasure-seeds", 0, 16), metavar="N",
                   help=f"a final validation accuracy within 2 standard errors of the target is measured again "
                        f"with N more fine-tune seeds before it counts (0: never; default {d('remeasure_seeds')})")
    s.add_argument("--sampler", choices=settings.SAMPLERS, help=f"(default {d('sampler')})")
    s.add_argument("--asha-metric", choices=ASHA_METRICS,
                   help=f"per-epoch metric ASHA ranks trials on (default {d('asha_metric')})")
    s.add_argument("--grace-period", type=positive_int("--grace-period"), help=f"(default {d('grace_period')})")
    s.add_argument("--max-concurrent", type=positive_int("--max-concurrent"),
                   help="trials at once (default: what the cluster can place)")
    s.add_argument("--workers-per-trial", type=positive_int("--workers-per-trial"),
                   help=f"(default {d('workers_per_trial')})")
    s.add_argument("--cpus-per-worker", type=resource_amount("--cpus-per-worker"),
                   help=f"(default {d('cpus_per_worker')})")
    s.add_argument("--gpus-per-worker", type=resource_amount("--gpus-per-worker"),
                   help=f"with --gpu (default {d('gpus_per_worker')})")
    s.add_argument("--gpu", action="store_true", default=None)
    s.add_argument("--max-failures", type=int_at_least("--max-failures", 0),
                   help=f"Train worker-group restarts per trial (0: none; never unlimited; default "
                        f"{d('max_failures')})")
    s.add_argument("--storage-path", type=path_arg("--storage-path", "a directory or URI"),
                   help=f"where the experiment goes: local dir or URI (s3://, gs://, file://); "
                        f"default {settings.DEFAULT_ROOT}")
    s.add_argument("--name", help="experiment name (default: the space's name)")
    s.add_argument("--study-db", type=path_arg("--study-db", "an Optuna database URL"),
                   help="Optuna database URL (default sqlite:///<experiment>/study.db); a password in it is never "
                        "stored: --resume takes it from SIMMIM_RAY_STUDY_DB_PASSWORD")
    s.add_argument("--storage", dest="storage_alias", type=path_arg("--storage", "an Optuna database URL"),
                   help=argparse.SUPPRESS)  # deprecated name of --study-db
    s.add_argument("--points", type=path_arg("--points", "a YAML file"), help="YAML list of configs to try first")
    s.add_argument("--warm-start", type=int_at_least("--warm-start", 0), metavar="N",
                   help=f"first try N points of a size ladder: the smallest architecture of the space, then "
                        f"about 2x larger each (capped at half the trials; 0: off, TPE starts at random; default "
                        f"{d('warm_start')})")
    s.add_argument("--config", type=path_arg("--config", "a YAML config file"),
                   help="base config YAML under the space")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    s.add_argument("--seed", type=seed_flag, help=f"sampler seed, in [0, 2**32) (default {d('seed')})")
    s.add_argument("--resume", metavar="DIR", type=path_arg("--resume", "an experiment directory"),
                   help="continue the experiment in DIR, as it was started (with --trials, --max-concurrent, "
                        "--address, --trust-experiment and the --confirm* / --feasibility flags only)")
    s.add_argument("--trust-experiment", action="store_true", default=None,
                   help="with --resume: unpickle Tune's state in DIR even where this machine's searches did not "
                        "write it (docs/security.md); without it such an experiment is refused")
    s.add_argument("--address", help="Ray address: auto, ray://HOST:PORT (default: local)")
    s.add_argument("--confirm", type=int_at_least("--confirm", 0), metavar="K",
                   help=f"after the search, measure the K smallest trials feasible on validation again with fresh "
                        f"seeds; the answer is the smallest that still meets the target on validation, its test "
                        f"accuracy reported, never used to choose (0: off, the validation winner is the answer, "
                        f"unconfirmed; default {d('confirm')})")
    s.add_argument("--confirm-seeds", type=positive_int("--confirm-seeds"), metavar="S",
                   help=f"seeds per confirmed candidate (default {d('confirm_seeds')})")
    s.add_argument("--confirm-reseed", choices=settings.RESEED,
                   help=f"finetune: re-seed the fine-tune of the trial's pre-trained encoder (what best/ holds); "
                        f"pretrain: re-run the whole trial per seed (default {d('confirm_reseed')})")
    s.add_argument("--no-answer-exit", type=int_at_least("--no-answer-exit", 0), metavar="CODE",
                   help="exit status of a search that ends without an answer: 3 (default; a Ray job then shows "
                        "FAILED) or 0 (the job SUCCEEDED; `simmim-ray report DIR --json` gives `answer`); any "
                        "run, --resume included, may choose")
    s.add_argument("--feasibility", choices=settings.FEASIBILITY,
                   help=f"confirmed when the mean validation accuracy over the fresh seeds, or the lower end of "
                        f"its 95%% interval, meets the target (default {d('feasibility')})")


def run(args) -> int:
    from simmim_ray.search.driver import run_search  # pyarrow, then Ray: not at the CLI's startup
    from simmim_ray.search.record.lease import hold
    from simmim_ray.search.record.trust import verify

    plan = validate_search(args)  # config, space, points, paths, settings, data, resources: all before Ray starts
    exp = plan.exp
    # one driver per experiment, from before anything is written there; on a signal, Ray stops before the lease goes
    with hold(exp.uri), signals.stopping(lambda: resume_hint(exp), lambda e: record_interrupt(exp, e)):
        if plan.resume:
            verify(exp.uri, trusted=bool(args.trust_experiment))  # before Tuner.restore unpickles it
        else:
            check_new_experiment(exp)
        ray_init.init_ray(plan.settings.address or None, log_to_driver=False)
        return ending(lambda: run_search(plan.settings, plan.space, plan.base, exp, resume=plan.resume),
                      args.no_answer_exit, exp)


def ending(search: Callable[[], int], no_answer_exit: int | None, exp) -> int:
    """`search`'s exit status. No answer (NoFeasibleTrial) goes on to the CLI's exit 3, unless --no-answer-exit 0:
    a Ray job then reads SUCCEEDED, and Ray does not print the job's log tail (the report) a second time in its
    FAILED status message; the answer state is in the report, so one line says where to read it."""
    try:
        return search()
    except NoFeasibleTrial as e:
        if no_answer_exit is None or no_answer_exit == NO_ANSWER_EXIT:
            raise
        print(f"simmim-ray: {one_line(e)} (exit {no_answer_exit} by --no-answer-exit; the answer state: "
              f"simmim-ray report {exp.uri} --json)", file=sys.stderr, flush=True)
        return no_answer_exit


INTERRUPTED_EVENT = "search_interrupted"  # signal: the ledger says when a driver was stopped, and by what


def resume_hint(exp) -> str:
    return f"resume with: simmim-ray search --resume {exp.uri}" if exp.exists() else "nothing was started"


def record_interrupt(exp, signal_name: str) -> None:
    if exp.exists():
        exp.ledger.append(INTERRUPTED_EVENT, signal=signal_name)
