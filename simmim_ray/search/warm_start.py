"""Size-ladder warm start: the first trials of a search probe the small end of the space's architectures.

The objective is lexicographic (reach the target, then be small), and what a search most needs to learn early is
where along the size axis the target starts being met. TPE's start-up trials are random, so they find the small
corner of a space late (a random point is rarely among the smallest). The ladder instead starts at the smallest
valid architecture and climbs in steps of `factor` in size: if the smallest model already meets the target the
answer is found in the first trial; otherwise each infeasible rung tells TPE (through its constraint value) that
the boundary lies above. Keys that do not change the encoder's size (mask, loss, schedule) keep the base config's
values (the recipe) where the space allows, so that the rungs differ in size only.
"""
from __future__ import annotations

import itertools
import math
import random
from typing import Any

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.size import encoder_size
from simmim_ray.search.space import Param, SearchSpace, decode, encode


def size_keys(space: SearchSpace) -> list[Param]:
    """Searched keys that can change the encoder's size: discrete `model.*` keys (floats such as drop_path
    cannot)."""
    return [p for p in space.params if p.key.startswith("model.") and p.kind in ("int", "choice")]


def _architectures(keys: list[Param], limit: int, rng: random.Random) -> list[tuple]:
    """Every combination of the size keys' values, or (past `limit`) a seeded sample plus the all-lowest one."""
    values = [p.candidates() for p in keys]
    if math.prod(len(v) for v in values) <= limit:
        return list(itertools.product(*values))
    sample = {tuple(rng.choice(v) for v in values) for _ in range(limit)}
    return sorted(sample | {tuple(v[0] for v in values)}, key=str)


def recipe_value(p: Param, base: Config) -> Any:
    """The base config's value of a non-size key where the space allows it, else the middle of its range: every
    rung then differs from the others in size only, under the recipe the user already trusts."""
    section, name = p.key.split(".", 1)
    value = getattr(getattr(base, section), name)
    if p.kind == "choice":
        return value if value in p.choices else p.choices[len(p.choices) // 2]
    if p.low <= value <= p.high and (p.kind != "int" or (value - p.low) % p.step == 0):
        return value
    if p.kind == "int":
        return p.low + (p.high - p.low) // p.step // 2 * p.step
    if p.kind == "loguniform":
        return math.sqrt(p.low * p.high)
    return (p.low + p.high) / 2


def size_ladder(space: SearchSpace, base: Config, n: int, size_metric: str, seed: int = 0, factor: float = 2.0,
                limit: int = 512) -> list[dict]:
    """Up to `n` points (searched key -> encoded value, as `points_to_evaluate` takes them): the smallest valid
    architecture, then the smallest at least `factor` times the size of the previous rung, and so on. `seed` only
    matters for spaces with more than `limit` architectures (which are then sampled)."""
    keys = size_keys(space)
    if n <= 0 or not keys:
        return []
    rng = random.Random(seed)
    others = {p.key: encode(recipe_value(p, base)) for p in space.params if p not in keys}
    sized: dict[int, dict] = {}
    for combo in _architectures(keys, limit, rng):
        point = {**{p.key: encode(v) for p, v in zip(keys, combo)}, **others}
        try:
            cfg = base.with_overrides(decode(point))
        except UserError:  # heads not dividing the width, a recipe mask patch that does not fit: never a rung
            continue
        size = encoder_size(cfg, size_metric)
        sized.setdefault(size, {k: point[k] for k in space.keys()})  # equal sizes: the first in candidate order
    points: list[dict] = []
    last = None
    for size in sorted(sized):
        if last is None or size >= factor * last:
            points.append(sized[size])
            last = size
        if len(points) == n:
            break
    return points
