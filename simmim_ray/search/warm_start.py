"""Size-ladder warm start: the first trials of a search probe the small end of the space's architectures.

The objective is lexicographic (reach the target, then be small), and what a search most needs to learn early is
where along the size axis the target starts being met. TPE's start-up trials are random, so they find the small
corner of a space late (a random point is rarely among the smallest). The ladder instead starts at the smallest
valid architecture and climbs in steps of `factor` in size: if the smallest model already meets the target the
answer is found in the first trial; otherwise each infeasible rung tells TPE (through its constraint value) that
the boundary lies above. Keys that do not change the encoder's size (mask, loss, schedule) take seeded random
values, as random start-up trials would.
"""
from __future__ import annotations

import itertools
import math
import random
from typing import Any

import torch

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.space import Param, SearchSpace, decode, encode


def size_keys(space: SearchSpace) -> list[Param]:
    """Searched keys that can change the encoder's size: discrete `model.*` keys (floats such as drop_path
    cannot)."""
    return [p for p in space.params if p.key.startswith("model.") and p.kind in ("int", "choice")]


@torch.no_grad()
def encoder_size(cfg: Config, metric: str) -> int:
    """Parameters or forward FLOPs of cfg's encoder, built on the meta device (no memory, no init cost)."""
    from simmim_ray.models.factory import build_encoder, count_params, encoder_flops

    with torch.device("meta"):
        enc = build_encoder(cfg.model)
    return count_params(enc) if metric == "params" else encoder_flops(enc, cfg.model.img_size)


def _architectures(keys: list[Param], limit: int, rng: random.Random) -> list[tuple]:
    """Every combination of the size keys' values, or (past `limit`) a seeded sample plus the all-lowest one."""
    values = [p.candidates() for p in keys]
    if math.prod(len(v) for v in values) <= limit:
        return list(itertools.product(*values))
    sample = {tuple(rng.choice(v) for v in values) for _ in range(limit)}
    return sorted(sample | {tuple(v[0] for v in values)}, key=str)


def _random_value(p: Param, rng: random.Random) -> Any:
    if p.kind == "choice":
        return rng.choice(p.choices)
    if p.kind == "int":
        return rng.randrange(int(p.low), int(p.high) + 1, p.step)
    if p.kind == "loguniform":
        return math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    return rng.uniform(p.low, p.high)


def size_ladder(space: SearchSpace, base: Config, n: int, size_metric: str, seed: int = 0, factor: float = 2.0,
                limit: int = 512) -> list[dict]:
    """Up to `n` points (searched key -> encoded value, as `points_to_evaluate` takes them): the smallest valid
    architecture, then the smallest at least `factor` times the size of the previous rung, and so on."""
    keys = size_keys(space)
    if n <= 0 or not keys:
        return []
    rng = random.Random(seed)
    sized: dict[int, tuple] = {}
    for combo in _architectures(keys, limit, rng):
        try:
            cfg = base.with_overrides(dict(zip([p.key for p in keys], combo)))
        except UserError:  # e.g. heads not dividing the width: the search would never run it either
            continue
        size = encoder_size(cfg, size_metric)
        sized.setdefault(size, combo)  # among equal sizes, the first in candidate order
    rungs: list[tuple] = []
    last = None
    for size in sorted(sized):
        if last is None or size >= factor * last:
            rungs.append(sized[size])
            last = size
        if len(rungs) == n:
            break
    others = [p for p in space.params if p not in keys]
    points = []
    for combo in rungs:
        for _ in range(100):  # redraw the other keys until the whole point is a valid config
            point = {p.key: encode(v) for p, v in zip(keys, combo)}
            point.update({p.key: encode(_random_value(p, rng)) for p in others})
            try:
                base.with_overrides(decode(point))
            except UserError:
                continue
            points.append({k: point[k] for k in space.keys()})
            break
    return points
