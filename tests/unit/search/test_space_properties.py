"""Property-based tests (Hypothesis) of the search-space schema: any mapping is either a space whose every
candidate makes a valid config and whose Optuna distributions build, or one short UserError line; never a
traceback, a list of 10^14 candidates, or a slow parse."""
from __future__ import annotations

import math
import time

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simmim_ray.config import Config
from simmim_ray.config_rules import leaf_fields
from simmim_ray.errors import UserError
from simmim_ray.search.space import DIST_KINDS, parse_space, to_optuna

FIELDS = sorted(leaf_fields(Config))
KEYS = st.one_of(st.sampled_from(FIELDS), st.sampled_from(["model.foo", "", "model", 1, None, "x" * 300, "a\nb"]))
NUMBERS = st.one_of(
    st.integers(-5, 200), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from([0, 1, 2, 4, 8, 16, 64, 0.0, 0.5, 1e-4, 1.0, 10**400, 160_000_000_000_000, -1, "3", None]))
VALUES = st.one_of(NUMBERS, st.text(max_size=8), st.sampled_from(["vit", "swin", "l1", "knn", [2, 2], [2, 4]]),
                   st.lists(st.integers(1, 8), max_size=3))


@st.composite
def distributions(draw):
    kind = draw(st.sampled_from(DIST_KINDS + ("junk",)))
    if kind == "choice":
        return {"choice": draw(st.one_of(st.lists(VALUES, max_size=6), VALUES))}
    if kind == "junk":
        return draw(st.one_of(VALUES, st.just({"uniform": [0, 1], "choice": [1]}), st.just({"normal": [0, 1]}),
                              st.just({1: 2, "uniform": [0, 1]})))
    spec = {kind: draw(st.one_of(st.lists(NUMBERS, min_size=2, max_size=2), VALUES))}
    if kind == "int" and draw(st.booleans()):
        spec["step"] = draw(NUMBERS)
    if kind == "int" and draw(st.booleans()):
        spec["log"] = draw(st.one_of(st.booleans(), st.sampled_from(["yes", 1, None])))
    return spec


def _range(kind, low, high, **extra):
    return st.builds(lambda a, b: {kind: sorted([a, b]), **extra}, low, high)


PLAUSIBLE = {  # searched keys with ranges near their rules (sometimes over an edge), so valid spaces are common
    "mask.ratio": _range("uniform", st.floats(0.001, 0.5), st.floats(0.5, 1.0)),
    "train.base_lr": _range("loguniform", st.floats(0, 0.1), st.floats(0.01, 1)),
    "loss.visible_weight": _range("uniform", st.floats(-0.1, 1), st.floats(1, 2)),
    "model.depth": _range("int", st.integers(1, 4), st.integers(1, 300)),
    "train.epochs": _range("int", st.integers(0, 3), st.integers(50_000, 200_000)),
    "eval.knn_k": _range("int", st.integers(0, 3), st.integers(1, 10**6), log=True),
    "model.num_heads": st.builds(lambda c: {"choice": c}, st.lists(st.sampled_from([1, 2, 4, 3]), min_size=1)),
    "loss.type": st.builds(lambda c: {"choice": c}, st.lists(st.sampled_from(["l1", "l2", "l3"]), min_size=1)),
}


@st.composite
def spaces(draw):
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(sorted(PLAUSIBLE)), min_size=1, max_size=3, unique=True))
        params = {k: draw(PLAUSIBLE[k]) for k in keys}
        return {"params": params, "target_accuracy": draw(st.sampled_from([0.5, 0.9, 1.5]))}
    d = {"params": draw(st.one_of(st.dictionaries(KEYS, distributions(), max_size=4), VALUES))}
    if draw(st.booleans()):
        d["fixed"] = draw(st.one_of(st.dictionaries(KEYS, VALUES, max_size=3), VALUES))
    for top in ("target_accuracy", "trials", "size_metric"):
        if draw(st.booleans()):
            d[top] = draw(st.one_of(NUMBERS, st.sampled_from(["params", "flops", "bytes"])))
    if draw(st.integers(0, 9)) == 0:
        d["paramz"] = 1
    return d


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces())
def test_parse_space_is_valid_or_one_line(d):
    start = time.perf_counter()
    try:
        space = parse_space(d, "prop")
    except UserError as e:
        msg = str(e)
        assert msg and "\n" not in msg and len(msg) <= 600, msg
        event("refused")
        return
    finally:
        # bounded work: no candidate lists built from huge ranges (generous for a loaded 2-core machine)
        assert time.perf_counter() - start < 20
    event("accepted")
    to_optuna(space)  # Optuna accepts every distribution
    base = space.base_config()
    for p in space.params:
        values = p.candidates()
        assert 1 <= len(values) <= max(65, len(p.choices))
        for v in values[:3] + values[-3:]:
            base.with_overrides({p.key: v})  # each end of each range is a valid config
        if p.kind in ("uniform", "loguniform"):
            assert math.isfinite(p.low) and math.isfinite(p.high) and p.low < p.high


def test_huge_int_range_is_sampled_not_listed():
    """An `int` range of 1.6e14 values: candidates are computed, not materialised (it was a MemoryError)."""
    from simmim_ray.search.space import Param

    p = Param("model.depth", "int", 1, 160_000_000_000_000, step=1)
    values = p.candidates()
    assert len(values) == 65 and values[0] == 1 and values[-1] == 160_000_000_000_000
    assert values == sorted(set(values))
    with_step = Param("model.embed_dim", "int", 16, 16 + 4 * 10**12, step=4).candidates()
    assert all((v - 16) % 4 == 0 for v in with_step) and with_step[-1] == 16 + 4 * 10**12
    assert Param("model.depth", "int", 2, 5).candidates() == [2, 3, 4, 5]
