"""Search spaces are data: YAML with dotted keys that map one-to-one onto Config fields.

    target_accuracy: 0.85          # optional; --target-accuracy wins
    size_metric: params            # params | flops
    trials: 12                     # optional default for --trials
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
from simmim_ray.errors import UserError

DIST_KINDS = ("uniform", "loguniform", "int", "choice")
TOP_KEYS = ("target_accuracy", "size_metric", "trials", "fixed", "params")


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
            values = list(range(int(self.low), int(self.high) + 1, self.step))
            return values if len(values) <= 64 else values[:: max(1, len(values) // 64)] + [values[-1]]
        return [self.low, self.high]

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

    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def base_config(self, base: Config | None = None) -> Config:
        return (base or Config()).with_overrides(self.fixed)


def parse_space(d: Any, name: str, base: Config | None = None) -> SearchSpace:
    where = f"space {name!r}"
    if not isinstance(d, dict):
        raise UserError(f"{where}: must be a mapping with `params`, but got {type(d).__name__}")
    for k in d:
        if k not in TOP_KEYS:
            raise UserError(f"{where}: unknown key `{k}` (allowed: {', '.join(TOP_KEYS)})")
    fixed = d.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"{where}: `fixed` must be a mapping of dotted config keys")
    for key, value in fixed.items():
        fixed[key] = coerce(key, field_type(key), value)
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
        raise UserError(f"{where}: `0 < target_accuracy <= 1` must hold, but got {target!r}")
    size_metric = d.get("size_metric", "params")
    if size_metric not in ("params", "flops"):
        raise UserError(f"{where}: `size_metric` must be one of params, flops, but got {size_metric!r}")
    trials = d.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise UserError(f"{where}: `trials >= 1` must hold, but got {trials!r}")
    space = SearchSpace(name, params, fixed, None if target is None else float(target), size_metric, trials)
    try:
        base_cfg = space.base_config(base)
    except UserError as e:
        raise UserError(f"{where}: fixed values make an invalid config: {e}") from None
    check_combinations(space, base_cfg)
    return space


def load_space(path: str, base: Config | None = None) -> SearchSpace:
    from simmim_ray.configio import read_yaml

    name = os.path.splitext(os.path.basename(path))[0]
    return parse_space(read_yaml(path, "search space"), name, base)


def _parse_param(key: str, spec: Any) -> Param:
    try:
        t = field_type(key)
    except UserError as e:  # say that the key came from the space's `params:`
        raise UserError(f"params.{key}: {e}") from None
    if not isinstance(spec, dict):
        raise UserError(f"params.{key}: must be a distribution like {{uniform: [low, high]}} "
                        f"(fixed values go under `fixed`), but got {spec!r}")
    kinds = [k for k in spec if k in DIST_KINDS]
    extra = [k for k in spec if k not in DIST_KINDS + ("step", "log")]
    if len(kinds) != 1 or extra:
        raise UserError(f"params.{key}: exactly one of {', '.join(DIST_KINDS)} (plus step/log for int) "
                        f"must be given, but got {sorted(spec)}")
    kind = kinds[0]
    arg = spec[kind]
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise UserError(f"params.{key}: `choice` must be a non-empty list, but got {arg!r}")
        return Param(key, kind, choices=[coerce(key, t, v) for v in arg])
    if not (isinstance(arg, list) and len(arg) == 2 and all(_is_num(v) for v in arg)):
        raise UserError(f"params.{key}: `{kind}` must be [low, high] numbers, but got {arg!r}")
    low, high = arg
    if kind == "int":
        if t is not int or not all(isinstance(v, int) for v in arg):
            raise UserError(f"params.{key}: `int` needs an int field and int bounds, but got {arg!r} for {t}")
        step = spec.get("step", 1)
        if not isinstance(step, int) or step < 1:
            raise UserError(f"params.{key}: `step >= 1` must hold, but got {step!r}")
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
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_combinations(space: SearchSpace, base: Config, limit: int = 4096) -> None:
    """Every combination of candidate values must give a valid config (e.g. heads dividing width).

    Exhaustive up to `limit` combinations, else a fixed random sample of that many plus all corners.
    """
    values = [p.candidates() for p in space.params]
    total = math.prod(len(v) for v in values)
    if total <= limit:
        combos = itertools.product(*values)
    else:
        rng = random.Random(0)
        corners = itertools.product(*[[v[0], v[-1]] for v in values])
        combos = itertools.chain(corners, ([rng.choice(v) for v in values] for _ in range(limit)))
    for combo in combos:
        overrides = dict(zip(space.keys(), combo))
        try:
            base.with_overrides(overrides)
        except UserError as e:
            shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
            raise UserError(f"space {space.name!r}: {shown} makes an invalid config: {e}") from None


def to_optuna(space: SearchSpace) -> dict:
    """Optuna distributions keyed by the dotted config keys (used as Tune's flat param names)."""
    import optuna.distributions as od

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
