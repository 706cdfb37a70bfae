"""The ledger's schema: each event type's fields with their types and ranges, in one place. The reader
(search/record/ledger.py) keeps only the events `problem` passes; a line that fails is skipped with one warning
naming the rule. Pure Python.

What each writer puts in each event; `event` (the type) and `time` (unix seconds) are in every one:

  search_started  record/experiment.py  settings (settings.json's object), inputs ({file name: sha256}), resumed
  trial_started   record/recorder.py    trial_id, config ({dotted config key: the trial's value})
  trial_result    record/recorder.py    trial_id, result (one report of the trial: REPORT)
  trial_ended     record/recorder.py    trial_id, status (complete | pruned | error | interrupted), metrics (the
                                        final report: REPORT), checkpoint_path, error (one line), epochs, wall_s
  confirmation    answer/answer.py      trial_id, job (Train run name), mode (finetune | pretrain), seeds, runs (one
                                        RUN per seed measured), params, flops, error, started, wall_s, gpu_seconds
  baseline        answer/answer.py      name: scratch (the confirmation fields; mode scratch) or pixel_logreg
                                        (test_accuracy, test_count, labeled_images, labeled_fraction, skipped)

(paths under simmim_ray/search/)

Every number is finite, and every integer fits in 64 bits (results.parquet holds them).
REPORT (the keys are simmim_ray/metrics.py's): accuracies in [0, 1]; counts, sizes and seconds >= 0; losses finite;
each of these may be null (not measured, or not finite when written: Ledger.append writes such a number as null);
done and replayed true or false; checkpoint_path a string; any other key a JSON value whose numbers are finite.
RUN: seed, val_accuracy, test_accuracy (required), val_count, test_count, seconds, cpu_seconds, pretrain_epochs.

Required are the fields a reader cannot do without (`trial_id` of trial and confirmation events, a trial's end
`status`, a baseline's `name`); every other field is checked when present. An event type this version does not
know passes on its common fields: a newer version's events are carried, and nothing here reads them.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Callable, Mapping

from simmim_ray.errors import excerpt
from simmim_ray.metrics import (DONE, EPOCH, FLOPS, IMAGES_PER_S, LOSS, LOSS_MASKED, LOSS_VISIBLE, PARAMS, PROXY_KNN,
                                REPLAYED, SKIPPED_IMAGES, TEST_ACCURACY, TEST_COUNT, TRAIN_SECONDS, VAL_ACCURACY,
                                VAL_COUNT)
from simmim_ray.train.loop_config import SEED_JOB_MODES

SEARCH_STARTED, TRIAL_STARTED, TRIAL_RESULT, TRIAL_ENDED = (
    "search_started", "trial_started", "trial_result", "trial_ended")
CONFIRMATION, BASELINE = "confirmation", "baseline"
TRIAL_EVENTS = (TRIAL_STARTED, TRIAL_RESULT, TRIAL_ENDED)
# a trial's end (RUNNING: started, not ended). INTERRUPTED: started by a driver that was killed, and not continued
# by the search that resumed it (Tune had not saved it)
COMPLETE, PRUNED, ERROR, INTERRUPTED, RUNNING = "complete", "pruned", "error", "interrupted", "running"
STATUSES = (COMPLETE, PRUNED, ERROR, INTERRUPTED)
PIXEL_LOGREG, SCRATCH = "pixel_logreg", "scratch"  # the baselines (search/answer/baselines.py)
MODES = SEED_JOB_MODES  # a seed job's mode: a confirmation's re-seed mode, or the scratch baseline's
MAX_DEPTH = 32  # nesting of a free-form value (a report's other keys, the settings): deeper is no record of ours

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
# a trial's name is a file and directory name (ledger/<t>.jsonl, train_runs/<t>/): never `..` or hidden
TRIAL_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX = sys.float_info.max
_INT64 = 2 ** 63


def number(v: Any) -> bool:
    """A finite JSON number; an integer within 64 bits (what results.parquet holds). NaN fails both comparisons,
    and a big int is compared, never converted (which would raise)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return -_INT64 <= v < _INT64
    return isinstance(v, float) and -_MAX <= v <= _MAX


def must(path: str, what: str, value: Any) -> str:
    return f"`{path}` must be {what}, but got {excerpt(value)}"


def _at(path: str, key: Any) -> str:
    key = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else f"[{excerpt(key, 30)}]"
    return f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"


class Rule:
    what = "a JSON value"

    def problem(self, value: Any, path: str) -> str | None:
        """None when `value` (at `path`, how messages name it) passes, else the rule it breaks."""
        raise NotImplementedError


class Is(Rule):
    """A value passing `test`; `what` completes "must be ..."."""

    def __init__(self, what: str, test: Callable[[Any], bool]) -> None:
        self.what, self.test = what, test

    def problem(self, value: Any, path: str) -> str | None:
        return None if self.test(value) else must(path, self.what, value)


class Nullable(Rule):
    def __init__(self, rule: Rule) -> None:
        self.rule, self.what = rule, f"{rule.what} or null"

    def problem(self, value: Any, path: str) -> str | None:
        return None if value is None or self.rule.problem(value, path) is None else must(path, self.what, value)


class Json(Rule):
    """Any JSON value whose numbers are finite, nested at most MAX_DEPTH deep (checked without recursion)."""

    def problem(self, value: Any, path: str) -> str | None:
        stack = [(value, path, 0)]
        while stack:
            v, p, depth = stack.pop()
            if depth > MAX_DEPTH:
                return f"`{path}` must be nested at most {MAX_DEPTH} deep"
            if isinstance(v, dict):
                stack += [(x, _at(p, k), depth + 1) for k, x in v.items()]
            elif isinstance(v, list):
                stack += [(x, f"{p}[{i}]", depth + 1) for i, x in enumerate(v)]
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and not number(v):
                return must(p, "a finite number (an integer within 64 bits)", v)
        return None


class ListOf(Rule):
    def __init__(self, item: Rule) -> None:
        self.item, self.what = item, "a list"

    def problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, list):
            return must(path, self.what, value)
        return next((p for i, x in enumerate(value) if (p := self.item.problem(x, f"{path}[{i}]"))), None)


class MapOf(Rule):
    """An object whose keys match `key` (described by `key_what`) and whose values pass `value`."""

    def __init__(self, key: re.Pattern, key_what: str, value: Rule) -> None:
        self.key, self.key_what, self.value, self.what = key, key_what, value, "an object"

    def problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return must(path, self.what, value)
        for k, v in value.items():
            if not self.key.fullmatch(k):
                return f"every key of `{path}` must be {self.key_what}, but got {excerpt(k)}"
            if p := self.value.problem(v, _at(path, k)):
                return p
        return None


class Fields(Rule):
    """An object: `required` and `optional` fields by their rules, any other key by `rest`."""

    def __init__(self, required: Mapping[str, Rule] | None = None, optional: Mapping[str, Rule] | None = None,
                 rest: Rule | None = None) -> None:
        self.required, self.optional, self.rest = dict(required or {}), dict(optional or {}), rest or Json()
        self.what = "an object"

    def problem(self, value: Any, path: str) -> str | None:
        if not isinstance(value, dict):
            return must(path, self.what, value)
        missing = next((k for k in self.required if k not in value), None)
        if missing is not None:
            return f"`{_at(path, missing)}` is required, but missing"
        for k, v in value.items():
            rule = self.required.get(k) or self.optional.get(k) or self.rest
            if p := rule.problem(v, _at(path, k)):
                return p
        return None

    def extended(self, required: Mapping[str, Rule] | None = None,
                 optional: Mapping[str, Rule] | None = None) -> Fields:
        return Fields({**self.required, **(required or {})}, {**self.optional, **(optional or {})}, self.rest)


def one_of(values: tuple) -> Is:
    return Is(f"one of {', '.join(values)}", lambda v: v in values)


TEXT = Is("a string", lambda v: isinstance(v, str))
FLAG = Is("true or false", lambda v: isinstance(v, bool))
REAL = Is("a finite number", number)
AMOUNT = Is("a number >= 0", lambda v: number(v) and v >= 0)  # seconds, sizes, unix time
FRACTION = Is("a number in [0, 1]", lambda v: number(v) and 0 <= v <= 1)
COUNT = Is("an integer >= 0", lambda v: number(v) and isinstance(v, int) and v >= 0)
NAME = Is("a name ([A-Za-z0-9_.-]+)", lambda v: isinstance(v, str) and bool(NAME_RE.fullmatch(v)))
TRIAL_ID = Is("a trial name (1-128 letters, digits, _ . -, not starting with .)",
              lambda v: isinstance(v, str) and bool(TRIAL_ID_RE.fullmatch(v)))
SCALAR = Is("a string, finite number, true, false or null", lambda v: v is None or isinstance(v, (str, bool))
            or number(v))

REPORT = Fields(optional={
    **{k: Nullable(FRACTION) for k in (VAL_ACCURACY, TEST_ACCURACY, PROXY_KNN)},
    **{k: Nullable(COUNT) for k in (VAL_COUNT, TEST_COUNT, EPOCH, SKIPPED_IMAGES)},
    **{k: Nullable(AMOUNT) for k in (PARAMS, FLOPS, IMAGES_PER_S, TRAIN_SECONDS, "time_total_s")},
    **{k: Nullable(REAL) for k in (LOSS, LOSS_MASKED, LOSS_VISIBLE)},
    DONE: FLAG, REPLAYED: FLAG, "checkpoint_path": TEXT})
# validation decides (search/answer/confirm.py), test is reported: a run needs both
RUN = Fields(required={"seed": COUNT, VAL_ACCURACY: FRACTION, TEST_ACCURACY: FRACTION}, optional={
    VAL_COUNT: COUNT, TEST_COUNT: COUNT, "seconds": AMOUNT,
    "cpu_seconds": AMOUNT, "pretrain_epochs": COUNT})

COMMON = Fields(required={"event": NAME, "time": AMOUNT})
JOB = COMMON.extended(required={"trial_id": TRIAL_ID}, optional={
    "job": TEXT, "mode": one_of(MODES), "seeds": ListOf(COUNT), "runs": ListOf(RUN), "params": Nullable(AMOUNT),
    "flops": Nullable(AMOUNT), "error": TEXT, "started": AMOUNT, "wall_s": AMOUNT, "gpu_seconds": AMOUNT})
EVENTS: dict[str, Fields] = {
    SEARCH_STARTED: COMMON.extended(optional={
        "settings": Fields(), "inputs": MapOf(re.compile(r".+", re.S), "a file name", TEXT), "resumed": FLAG}),
    TRIAL_STARTED: COMMON.extended(required={"trial_id": TRIAL_ID}, optional={
        "config": MapOf(CONFIG_KEY_RE, "a dotted config key (model.embed_dim)", SCALAR)}),
    TRIAL_RESULT: COMMON.extended(required={"trial_id": TRIAL_ID, "result": REPORT}),
    TRIAL_ENDED: COMMON.extended(required={"trial_id": TRIAL_ID, "status": one_of(STATUSES)}, optional={
        "metrics": REPORT, "checkpoint_path": TEXT, "error": TEXT, "epochs": COUNT, "wall_s": AMOUNT}),
    CONFIRMATION: JOB,
}
BASELINES: dict[str, Fields] = {
    SCRATCH: JOB.extended(required={"name": one_of((SCRATCH,))}),
    PIXEL_LOGREG: COMMON.extended(required={"name": one_of((PIXEL_LOGREG,))}, optional={
        TEST_ACCURACY: Nullable(FRACTION), TEST_COUNT: COUNT, "labeled_images": COUNT,
        "labeled_fraction": Nullable(Is("a number in (0, 1]", lambda v: number(v) and 0 < v <= 1)),
        "skipped": TEXT}),
}


def problem(event: Any) -> str | None:
    """None for an event as its writer writes it; else the first rule it breaks, naming the field."""
    if not isinstance(event, dict):
        return f"must be an event (a JSON object), but got {excerpt(event)}"
    kind = event.get("event")
    rule = EVENTS.get(kind) if isinstance(kind, str) else None
    if kind == BASELINE:
        name = event.get("name")
        rule = BASELINES.get(name) if isinstance(name, str) else None
        if rule is None:
            return COMMON.problem(event, "") or (must("name", f"one of {', '.join(BASELINES)}", name)
                                                 if "name" in event else "`name` is required, but missing")
    return (rule or COMMON).problem(event, "")
