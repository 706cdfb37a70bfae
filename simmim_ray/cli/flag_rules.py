"""The command line checked as a whole, before Ray starts (cli/input_checks.py and search_checks.py call these): one
function per family of rules. A flag can be valid alone and still mean nothing (empty, a bound no one means, no
effect beside another flag, a contradiction), and the environment variables we read are input too.

EARLY families need the command line only; LATE ones the search as it will run (settings, a resumed one's
included, the space and the base config).
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from simmim_ray._compat import trial_path
from simmim_ray.config import Config
from simmim_ray.errors import UserError, excerpt
from simmim_ray.io.configio import parse_set

if TYPE_CHECKING:  # the search layer is imported by the search command only
    from simmim_ray.search.settings import SearchSettings
    from simmim_ray.search.space import SearchSpace

# flag dest -> how messages name it; string flags where an empty value is a mistake (an unset shell variable)
STRING_FLAGS = {"space": "SPACE", "name": "--name", "address": "--address", "storage_path": "--storage-path",
                "study_db": "--study-db", "storage_alias": "--storage", "points": "--points", "config": "--config",
                "output": "--output"}
MAX_CONFIRM_SEEDS = 100
MAX_FAILURES = 100
CONFIRM_FLAGS = {"confirm_seeds": "--confirm-seeds", "confirm_reseed": "--confirm-reseed",
                 "feasibility": "--feasibility"}
ASHA_FLAGS = {"grace_period": "--grace-period", "asha_metric": "--asha-metric"}
# config keys only some architectures read (models/factory.py builds ViT from depth and num_heads, Swin from depths,
# heads, window_size and drop_path): a search over one the search's architectures ignore changes nothing
ARCH_KEYS = {"model.depth": ("vit",), "model.num_heads": ("vit",), "model.depths": ("swin", "swinv2"),
             "model.heads": ("swin", "swinv2"), "model.window_size": ("swin", "swinv2"),
             "model.drop_path": ("swin", "swinv2")}


@dataclass
class Flags:
    command: str  # train | search
    args: argparse.Namespace
    settings: SearchSettings | None = None  # as the search will run (LATE)
    space: SearchSpace | None = None  # (LATE)
    base: Config | None = None  # the base Config under the space (LATE)

    def given(self, dest: str) -> bool:
        return getattr(self.args, dest, None) is not None


# ---- EARLY: the command line alone ----------------------------------------------------------------------------
def empty_values(f: Flags) -> None:
    for dest, flag in STRING_FLAGS.items():
        value = getattr(f.args, dest, None)
        if isinstance(value, str) and not value.strip():
            raise UserError(f"{flag} must not be empty (an unset shell variable?), but got {excerpt(value)}")
    for item in getattr(f.args, "set", None) or []:
        if not item.strip():
            raise UserError(f"--set must be KEY=VALUE, but got {excerpt(item)}")


def bounds(f: Flags) -> None:
    a = f.args
    if getattr(a, "confirm_seeds", None) is not None and a.confirm_seeds > MAX_CONFIRM_SEEDS:
        raise UserError(f"`--confirm-seeds <= {MAX_CONFIRM_SEEDS}` must hold (each seed is a fine-tune per candidate, "
                        f"and every report summarises each seed), but got {a.confirm_seeds}")
    if getattr(a, "max_failures", None) is not None and a.max_failures > MAX_FAILURES:
        raise UserError(f"`--max-failures <= {MAX_FAILURES}` must hold (each restart repeats a trial's start-up; a "
                        f"trial that fails this often will not run), but got {a.max_failures}")


def _positive(v: str) -> bool:
    try:
        return math.isfinite(float(v)) and float(v) > 0
    except ValueError:
        return False


def _count(v: str) -> bool:
    return v.strip().isdigit()


# name -> (check, the rule as a message says it, commands whose run reads it)
ENV_RULES: dict[str, tuple[Callable[[str], bool], str, tuple[str, ...]]] = {
    "RAY_ADDRESS": (lambda v: bool(v.strip()), "must be a Ray address (unset it to start Ray here)",
                    ("train", "search")),
    "SIMMIM_RAY_TRIAL_PATH": (lambda v: v.strip().lower() in ("auto", "lean", "public"),
                              "must be one of auto, lean, public", ("search",)),
    "TUNE_GLOBAL_CHECKPOINT_S": (lambda v: v.strip() == "auto" or _positive(v),
                                 "must be auto or a number of seconds > 0", ("search",)),
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": (_count, "must be a whole number of seconds (Tune reads it with int())",
                                       ("search",)),
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": (lambda v: v.strip() == "1", "must be 1 (a trial reports its accuracy "
                                            "only at its end; Tune's strict check would fail every trial)",
                                            ("search",)),
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": (_positive, "must be a number of seconds > 0", ("train", "search")),
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": (_positive, "must be a number of seconds > 0", ("train", "search")),
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": (lambda v: v.strip() in ("0", "1"), "must be 0 or 1", ("train", "search")),
    "TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S": (_positive, "must be a number of seconds > 0", ("train", "search")),
}


def environment(f: Flags) -> None:
    for name, (ok, rule, commands) in ENV_RULES.items():
        value = os.environ.get(name)
        if value is not None and f.command in commands and not ok(value):
            raise UserError(f"environment variable {name} {rule}, but got {excerpt(value)}")
    if f.command == "search" and os.environ.get("SIMMIM_RAY_TRIAL_PATH", "").strip().lower() == "lean":
        trial_path(say=False)  # the lean path on a Ray that lacks it: refused here, not after Ray started


NO_ANSWER_EXIT = 3  # a search without an answer, by default (cli/__init__.py)
NO_ANSWER_EXITS = (NO_ANSWER_EXIT, 0)


def exit_codes(f: Flags) -> None:
    """--no-answer-exit: 3 or 0 only. Other codes already mean something (1 a crash, 2 bad input, 130/143 a
    signal): one of them for "no answer" would make a finished search look like a failure of another kind."""
    code = getattr(f.args, "no_answer_exit", None)
    if code is not None and code not in NO_ANSWER_EXITS:
        raise UserError(f"--no-answer-exit must be 3 (a search without an answer fails) or 0 (it succeeds; `report "
                        f"--json` says `answer`), but got {code}: 1, 2, 130 and 143 mean a crash, bad input and a "
                        f"signal")


def resume_only(f: Flags) -> None:
    if f.given("trust_experiment") and not getattr(f.args, "resume", None):
        raise UserError("--trust-experiment applies to --resume only (a new search writes its own pickles)")


# ---- LATE: the search as it will run ------------------------------------------------------------------------
def no_effect(f: Flags) -> None:
    s = f.settings
    if not s.confirm:
        given = [flag for dest, flag in CONFIRM_FLAGS.items() if f.given(dest)]
        if given:
            raise UserError(f"{given[0]} has no effect with --confirm 0 (no candidate is confirmed): drop it, or "
                            f"confirm K > 0 candidates")
    if f.given("gpus_per_worker") and not s.gpu:
        raise UserError("--gpus-per-worker has no effect without --gpu: add --gpu, or drop it")
    if s.scheduler == "fifo":
        given = [flag for dest, flag in ASHA_FLAGS.items() if f.given(dest)]
        if given:
            raise UserError(f"{given[0]} has no effect with --scheduler fifo (only ASHA stops trials early): drop it, "
                            f"or use --scheduler asha")


def contradictions(f: Flags) -> None:
    s = f.settings
    if s.confirm and s.feasibility == "lower-bound" and s.confirm_seeds < 2:
        raise UserError(f"--feasibility lower-bound needs `--confirm-seeds >= 2` (a t-interval needs two seeds), but "
                        f"got --confirm-seeds {s.confirm_seeds}")


def searched_keys(f: Flags) -> None:
    """--set on a key the space searches: every trial's sampled value would override it."""
    if getattr(f.args, "resume", None):  # the search's own overrides, checked when it started
        return
    both = sorted(set(parse_set(f.settings.overrides)) & set(f.space.keys()))
    if both:
        raise UserError(f"--set {both[0]}: the space searches `{both[0]}` (params:), so each trial's sampled value "
                        f"would override it: drop the --set, or the key from the space")
    arch_keys(f.space, f.base)


def arch_keys(space, base) -> None:
    """A searched key that none of the search's architectures reads (e.g. model.window_size with model.arch=vit)."""
    arch = next((p for p in space.params if p.key == "model.arch"), None)
    archs = set(arch.choices) if arch is not None and arch.kind == "choice" else {base.model.arch}
    for p in space.params:
        users = ARCH_KEYS.get(p.key)
        if users and not archs & set(users):
            raise UserError(f"params.{p.key}: only model.arch={' or '.join(users)} reads it, but every trial of "
                            f"this space is model.arch={' or '.join(sorted(archs))}: searching it changes nothing")


EARLY = (empty_values, bounds, environment, exit_codes, resume_only)
LATE = (no_effect, contradictions, searched_keys)


def check(f: Flags, families: tuple[Callable[[Flags], None], ...]) -> None:
    for family in families:
        family(f)
