"""The size-ladder warm start: the first points a search tries are the smallest architectures, climbing in size."""
from __future__ import annotations

import itertools
import os

import pytest
import yaml

from simmim_ray.config import Config
from simmim_ray.search.driver import SearchSettings, initial_points
from simmim_ray.search.space import decode, load_space, parse_space
from simmim_ray.search.warm_start import encoder_size, size_ladder
from simmim_ray.models.factory import build_encoder, count_params, encoder_flops

SPACES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "search_spaces")


@pytest.fixture(scope="module")
def digits_quick():
    space = load_space(os.path.join(SPACES, "digits_quick.yaml"))
    return space, space.base_config()


def brute_force_smallest(space, base, metric: str) -> int:
    arch = [p for p in space.params if p.key.startswith("model.") and p.kind in ("int", "choice")]
    sizes = []
    for combo in itertools.product(*[p.candidates() for p in arch]):
        try:
            cfg = base.with_overrides(dict(zip([p.key for p in arch], combo)))
        except Exception:
            continue
        enc = build_encoder(cfg.model)
        sizes.append(count_params(enc) if metric == "params" else encoder_flops(enc, cfg.model.img_size))
    return min(sizes)


@pytest.mark.parametrize("metric", ["params", "flops"])
def test_ladder_starts_at_the_smallest_architecture_and_climbs(digits_quick, metric):
    space, base = digits_quick
    points = size_ladder(space, base, 3, metric, seed=0)
    assert len(points) == 3
    cfgs = [base.with_overrides(decode(p)) for p in points]  # every point is a valid config...
    assert all(set(p) == set(space.keys()) for p in points)  # ...setting exactly the searched keys
    sizes = [encoder_size(c, metric) for c in cfgs]
    # meta-device sizes are the real ones
    real = build_encoder(cfgs[0].model)
    assert sizes[0] == (count_params(real) if metric == "params" else encoder_flops(real, cfgs[0].model.img_size))
    assert sizes[0] == brute_force_smallest(space, base, metric)
    assert all(b >= 2 * a for a, b in zip(sizes, sizes[1:])), sizes


def test_ladder_is_seeded_and_off_when_asked(digits_quick):
    space, base = digits_quick
    assert size_ladder(space, base, 3, "params", seed=1) == size_ladder(space, base, 3, "params", seed=1)
    assert size_ladder(space, base, 3, "params", seed=1) != size_ladder(space, base, 3, "params", seed=2)
    assert size_ladder(space, base, 0, "params") == []
    no_model = parse_space({"params": {"mask.ratio": {"uniform": [0.3, 0.8]}}}, "m")
    assert size_ladder(no_model, Config(), 3, "params") == []


def test_initial_points_put_the_users_first_and_cap_the_ladder(digits_quick, tmp_path):
    space, base = digits_quick
    user = {k: v for k, v in size_ladder(space, base, 3, "params", seed=5)[2].items()}
    path = tmp_path / "points.yaml"
    path.write_text(yaml.safe_dump([decode(user)]))

    def s(**kw):
        return SearchSettings(space_path="s", name="n", storage="/tmp/x", target_accuracy=0.5, **kw)

    assert len(initial_points(s(trials=8), space, base)) == 3
    assert len(initial_points(s(trials=4), space, base)) == 2  # at most half the trials
    assert initial_points(s(trials=8, warm_start=0), space, base) == []
    pts = initial_points(s(trials=8, points=str(path)), space, base)
    assert pts[0] == user and len(pts) == 4
