"""Search spaces are data: YAML with dotted keys that map one-to-one onto Config fields.

    target_accuracy: 0.85          # optional; --target-accuracy wins
    size_metric: params            # params | flops
    trials: 12                     # optional default for --trials
    budget: 480                    # optional default for --budget (trial-epochs: compute, not a count of trials)
    grace_period: 6                # optional default for --grace-period (the first early-stopping rung, in epochs)
    fixed:  {train.epochs: 8}      # plain values applied to every trial
    params:                        # one distribution per key
      model.embed_dim: {int: [32, 96], step: 32}
      loss.visible_weight: {uniform: [0.0, 0.5]}
      train.base_lr: {loguniform: [5e-4, 5e-3]}
      loss.type: {choice: [l1, smooth_l1]}

Validated against the config schema before Ray starts, including every combination of discrete model choices.
"""
from __future__ import annotations

import itertools
import json
import math
import typing
import os
import random
from dataclasses import dataclass, field
from typing import Any

from simmim_ray.config import Config, coerce, field_type
from simmim_ray.errors import UserError, excerpt
from simmim_ray.io.configio import read_yaml

DIST_KINDS = ("uniform", "loguniform", "int", "choice")
MAX_CHOICES = 1000
# what selects the data: one dataset per search, checked (and its path made absolute) on the driver
DATA_KEYS = ("data.source", "data.path", "data.download", "data.image_column", "data.label_column",
             "data.mask_column")
TOP_KEYS = ("target_accuracy", "size_metric", "trials", "budget", "grace_period", "fixed", "params")


@dataclass
class Param:
    key: str
    kind: str  # uniform | loguniform | int | choice
    low: float | int | None = None
    high: float | int | None = None
    step: int = 1
    log: bool = False
    choices: list[Any] = field(default_factory=list)

    def candidates(self) -> list[Any]:
        """Values used to check model validity: every choice / int value (capped), endpoints of floats."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            # evenly spaced, computed rather than listed: a range of 10^14 values must not be built
            n = (int(self.high) - int(self.low)) // self.step + 1
            picks = range(n) if n <= 65 else sorted({i * (n - 1) // 64 for i in range(65)})
            return [int(self.low) + i * self.step for i in picks]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        """Whether the distribution can propose `value` (a decoded value, as a config takes it)."""
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _is_num(value):
            return False
        if self.kind == "int":
            return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {self.choices}"
        if self.kind == "int":
            return f"int [{self.low}, {self.high}] step {self.step}" + (" log" if self.log else "")
        return f"{self.kind} [{self.low}, {self.high}]"


@dataclass
class SearchSpace:
    name: str
    params: list[Param]
    fixed: dict[str, Any]
    target_accuracy: float | None = None
    size_metric: str = "params"
    trials: int | None = None
    grace_period: int | None = None  # the first early-stopping rung fits the recipe's length: it belongs with `fixed:`
    budget: int | None = None  # trial-epochs (SearchSettings.budget_epochs): it too fits the recipe's length

    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def base_config(self, base: Config | None = None) -> Config:
        return (base or Config()).with_overrides(self.fixed)


def parse_space(d: Any, name: str, base: Config | None = None) -> SearchSpace:
    where = f"space {excerpt(name)}"
    if not isinstance(d, dict):
        raise UserError(f"{where}: must be a mapping with `params`, but got {type(d).__name__}")
    for k in d:
        if k not in TOP_KEYS:
            raise UserError(f"{where}: unknown key `{_key(k)}` (allowed: {', '.join(TOP_KEYS)})")
    fixed = d.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"{where}: `fixed` must be a mapping of dotted config keys")
    for key, value in fixed.items():
        try:
            t = field_type(key)
        except UserError as e:  # say that the key came from the space's `fixed:`
            raise UserError(f"{where}: fixed: {e}") from None
        fixed[key] = coerce(key, t, value)
    raw = d.get("params") or {}
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{where}: `params` must be a non-empty mapping of dotted config keys to distributions")
    params = [_parse_param(key, spec) for key, spec in raw.items()]
    overlap = set(fixed) & {p.key for p in params}
    if overlap:
        raise UserError(f"{where}: keys both fixed and searched: {', '.join(sorted(overlap))}")
    target = d.get("target_accuracy")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not 0 < target <= 1):
        raise UserError(f"{where}: `0 < target_accuracy <= 1` must hold, but got {excerpt(target)}")
    size_metric = d.get("size_metric", "params")
    if size_metric not in ("params", "flops"):
        raise UserError(f"{where}: `size_metric` must be one of params, flops, but got {excerpt(size_metric)}")
    trials = d.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise UserError(f"{where}: `trials >= 1` must hold, but got {excerpt(trials)}")
    grace = d.get("grace_period")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 1):
        raise UserError(f"{where}: `grace_period >= 1` must hold, but got {excerpt(grace)}")
    budget = d.get("budget")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
        raise UserError(f"{where}: `budget >= 1` (trial-epochs) must hold, but got {excerpt(budget)}")
    space = SearchSpace(name, params, fixed, None if target is None else float(target), size_metric, trials, grace,
                        budget)
    try:
        base_cfg = space.base_config(base)
    except UserError as e:
        raise UserError(f"{where}: fixed values make an invalid config: {e}") from None
    check_combinations(space, base_cfg)
    return space


def load_space(path: str, base: Config | None = None) -> SearchSpace:
    name = os.path.splitext(os.path.basename(path))[0]
    return parse_space(read_yaml(path, "search space"), name, base)


def _key(k: Any) -> str:
    return excerpt(k)[1:-1] if isinstance(k, str) else excerpt(k)


def _parse_param(key: str, spec: Any) -> Param:
    try:
        t = field_type(key)
    except UserError as e:  # say that the key came from the space's `params:`
        raise UserError(f"params.{_key(key)}: {e}") from None
    if key in DATA_KEYS:
        raise UserError(f"params.{key}: the data is not searched (trials compare on one dataset, checked before "
                        f"the search starts); set it under `fixed:` or with --set")
    if not isinstance(spec, dict):
        raise UserError(f"params.{key}: must be a distribution like {{uniform: [low, high]}} "
                        f"(fixed values go under `fixed`), but got {excerpt(spec)}")
    kinds = [k for k in spec if k in DIST_KINDS]
    extra = [k for k in spec if k not in DIST_KINDS + ("step", "log")]
    if len(kinds) != 1 or extra:
        raise UserError(f"params.{key}: exactly one of {', '.join(DIST_KINDS)} (plus step/log for int) "
                        f"must be given, but got {excerpt(sorted(map(str, spec)), 120)}")
    kind = kinds[0]
    arg = spec[kind]
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise UserError(f"params.{key}: `choice` must be a non-empty list, but got {excerpt(arg)}")
        if len(arg) > MAX_CHOICES:
            raise UserError(f"params.{key}: `choice` must have at most {MAX_CHOICES} values, but got {len(arg)}")
        return Param(key, kind, choices=[coerce(key, t, v) for v in arg])
    if not (isinstance(arg, list) and len(arg) == 2 and all(_is_num(v) for v in arg)):
        raise UserError(f"params.{key}: `{kind}` must be [low, high] finite numbers, but got {excerpt(arg)}")
    low, high = arg
    if kind == "int":
        if t is not int or not all(isinstance(v, int) for v in arg):
            raise UserError(f"params.{key}: `int` needs an int field and int bounds, but got {excerpt(arg)} "
                            f"for {t}")
        step = spec.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise UserError(f"params.{key}: `step >= 1` must hold, but got {excerpt(step)}")
        if not isinstance(spec.get("log", False), bool):
            raise UserError(f"params.{key}: `log` must be true or false, but got {excerpt(spec['log'])}")
        if low > high:
            raise UserError(f"params.{key}: `low <= high` must hold, but got low={low}, high={high}")
        if (high - low) % step:
            raise UserError(f"params.{key}: `(high - low) % step == 0` must hold, but got "
                            f"({high} - {low}) % {step}")
        log = bool(spec.get("log", False))
        if log and (low < 1 or step != 1):
            raise UserError(f"params.{key}: log int needs `low >= 1` and step 1, but got low={low}, step={step}")
        return Param(key, kind, low, high, step=step, log=log)
    if t is not float:
        raise UserError(f"params.{key}: `{kind}` needs a float field, but the field is {t.__name__}")
    if "step" in spec or "log" in spec:
        raise UserError(f"params.{key}: step/log apply to `int` only")
    if not low < high:
        raise UserError(f"params.{key}: `low < high` must hold, but got low={low}, high={high}")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"params.{key}: `low > 0` must hold for loguniform, but got low={low}")
    return Param(key, kind, float(low), float(high))


def _is_num(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float's range: no distribution can take it
        return False


def check_combinations(space: SearchSpace, base: Config, limit: int = 4096) -> None:
    """Every combination of candidate values must give a valid config (e.g. heads dividing width).

    Each range's ends first (so a message names the end that breaks a rule), then up to `limit` corners, then
    every combination when there are at most `limit`, else a fixed random sample of that many. Bounded: a space
    of 40 ranges has 2^40 corners.
    """
    values = [p.candidates() for p in space.params]
    first = [v[0] for v in values]
    ends = ([*first[:i], end, *first[i + 1:]] for i, v in enumerate(values) for end in (v[0], v[-1]))
    corners = itertools.islice(itertools.product(*[[v[0], v[-1]] for v in values]), limit)
    if math.prod(len(v) for v in values) <= limit:
        rest = itertools.product(*values)
    else:
        rng = random.Random(0)
        rest = ([rng.choice(v) for v in values] for _ in range(limit))
    for combo in itertools.chain(ends, corners, rest):
        overrides = dict(zip(space.keys(), combo))
        try:
            base.with_overrides(overrides)
        except UserError as e:
            shown = ", ".join(f"{k}={excerpt(v, 30)}" for k, v in overrides.items())
            raise UserError(f"space {excerpt(space.name)}: {_cut(shown)} makes an invalid config: {e}") from None


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_optuna(space: SearchSpace) -> dict:
    """Optuna distributions keyed by the dotted config keys (used as Tune's flat param names)."""
    import optuna.distributions as od  # Optuna when a search runs: the CLI imports this module at startup

    out = {}
    for p in space.params:
        if p.kind == "choice":
            out[p.key] = od.CategoricalDistribution([encode(c) for c in p.choices])
        elif p.kind == "int":
            out[p.key] = od.IntDistribution(int(p.low), int(p.high), step=p.step, log=p.log)
        else:
            out[p.key] = od.FloatDistribution(p.low, p.high, log=p.kind == "loguniform")
    return out


def encode(value: Any) -> Any:
    """Optuna stores categorical choices of None/bool/int/float/str only: list choices (Swin `model.depths`)
    travel as JSON strings and are decoded before the config is built."""
    return json.dumps(value) if isinstance(value, list) else value


def decode(params: dict[str, Any]) -> dict[str, Any]:
    """Tune/Optuna params -> config overrides (JSON-encoded list choices back to lists)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, str) and typing.get_origin(field_type(key)) is list:
            value = json.loads(value)
        out[key] = value
    return out
