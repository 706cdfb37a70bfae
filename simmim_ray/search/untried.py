"""The configurations of a space that are smaller than a size and not tried yet: where a search goes when its sampler
keeps proposing configurations that cannot beat the incumbent (search/searcher.py)."""
from __future__ import annotations

import itertools
import math
import random
from typing import Callable

import optuna

# a space of at most this many configurations is enumerated, so "none smaller is left" is exact; a larger or
# continuous one is sampled this many times
ENUMERATE_LIMIT = 100_000


def _values(d: optuna.distributions.BaseDistribution) -> list | None:
    """Every value of a discrete distribution; None for a continuous one."""
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, optuna.distributions.IntDistribution) and not d.log:
        return list(range(d.low, d.high + 1, d.step))
    return None


def smaller_untried(space: dict, tried: list[dict], size_of: Callable[[dict], float] | None, below: float | None,
                    seed: int = 0) -> dict | None:
    """A configuration of `space` (key -> Optuna distribution) not in `tried` whose size is below `below`, picked
    at random (seeded); None when there is none (exact for enumerable spaces)."""
    rng = random.Random(seed)
    seen = {_key(p) for p in tried}

    def ok(p: dict) -> bool:
        return _key(p) not in seen and (below is None or size_of is None or size_of(p) < below)

    values = {k: _values(d) for k, d in space.items()}
    if all(v is not None for v in values.values()) and math.prod(len(v) for v in values.values()) <= ENUMERATE_LIMIT:
        keys = list(space)
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
        rng.shuffle(grid)
        return next((p for p in grid if ok(p)), None)
    for _ in range(1024):
        p = {k: rng.choice(v) if v is not None else _draw(space[k], rng) for k, v in values.items()}
        if ok(p):
            return p
    return None


def _draw(d, rng: random.Random) -> float:
    if d.log:
        return math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    return rng.uniform(d.low, d.high)


def _key(p: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in p.items()))
