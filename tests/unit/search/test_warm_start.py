"""The size-ladder warm start: the first points a search tries are the smallest architectures, climbing in size."""
from __future__ import annotations

import itertools
import os

import pytest
import repo_root
import yaml

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.driver import initial_points
from simmim_ray.search.space import decode, load_space, parse_space
from simmim_ray.search.size import encoder_size
from simmim_ray.search.warm_start import size_ladder
from simmim_ray.models.factory import build_encoder, count_params, encoder_flops

SPACES = os.path.join(repo_root.REPO, "search_spaces")


# A digits space that searches the recipe keys too (masking, loss), which the ladder must hold at the recipe's values
LADDER_SPACE = {"fixed": {"train.epochs": 6},
                "params": {"model.embed_dim": {"int": [16, 96], "step": 16}, "model.depth": {"int": [1, 4]},
                           "model.num_heads": {"choice": [1, 2, 4]}, "model.mlp_ratio": {"choice": [1.0, 2.0]},
                           "mask.ratio": {"uniform": [0.4, 0.8]}, "mask.patch_size": {"choice": [4, 8]},
                           "loss.visible_weight": {"uniform": [0.0, 0.3]}, "loss.fgbg_weight": {"uniform": [0.0, 0.5]},
                           "loss.type": {"choice": ["l1", "smooth_l1"]}}}


@pytest.fixture(scope="module")
def digits_quick():
    space = parse_space(LADDER_SPACE, "digits_quick")
    return space, space.base_config()


def test_the_bundled_default_space_has_a_ladder():
    space = load_space(os.path.join(SPACES, "digits_quick.yaml"))
    points = size_ladder(space, space.base_config(), 3, "params")
    sizes = [encoder_size(space.base_config().with_overrides(decode(p)), "params") for p in points]
    assert len(points) == 3 and all(b >= 2 * a for a, b in zip(sizes, sizes[1:])), sizes


def brute_force_smallest(space, base, metric: str) -> int:
    arch = [p for p in space.params if p.key.startswith("model.") and p.kind in ("int", "choice")]
    sizes = []
    for combo in itertools.product(*[p.candidates() for p in arch]):
        try:
            cfg = base.with_overrides(dict(zip([p.key for p in arch], combo)))
        except UserError:  # e.g. heads not dividing the width
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


def test_rungs_differ_in_size_only_under_the_recipe(digits_quick):
    space, base = digits_quick
    points = size_ladder(space, base, 3, "params", seed=1)
    recipe = {"mask.ratio": base.mask.ratio, "mask.patch_size": base.mask.patch_size, "loss.type": base.loss.type,
              "loss.visible_weight": base.loss.visible_weight, "loss.fgbg_weight": base.loss.fgbg_weight}
    assert all({k: p[k] for k in recipe} == recipe for p in points)
    assert size_ladder(space, base, 3, "params", seed=2) == points  # nothing random in a small space
    # a recipe value outside the searched range gives way to the range's middle
    narrow = parse_space({"params": {"model.depth": {"int": [1, 3]}, "mask.ratio": {"uniform": [0.7, 0.9]},
                                     "loss.type": {"choice": ["smooth_l1", "l2"]},
                                     "train.warmup_epochs": {"int": [3, 9], "step": 2}}}, "n")
    (low, *_) = size_ladder(narrow, Config(), 1, "params")
    assert low == {"model.depth": 1, "mask.ratio": pytest.approx(0.8), "loss.type": "l2",
                   "train.warmup_epochs": 5}


def test_ladder_off_when_asked_or_nothing_changes_size():
    space = load_space(os.path.join(SPACES, "digits_quick.yaml"))
    assert size_ladder(space, space.base_config(), 0, "params") == []
    no_model = parse_space({"params": {"mask.ratio": {"uniform": [0.3, 0.8]}}}, "m")
    assert size_ladder(no_model, Config(), 3, "params") == []


def test_initial_points_put_the_users_first_and_cap_the_ladder(digits_quick, tmp_path):
    space, base = digits_quick
    user = {**size_ladder(space, base, 3, "params")[2], "mask.ratio": 0.5}
    path = tmp_path / "points.yaml"
    path.write_text(yaml.safe_dump([decode(user)]))

    def s(**kw):
        return SearchSettings(space_path="s", name="n", root="/tmp/x", target_accuracy=0.5, **kw)

    assert len(initial_points(s(trials=8, warm_start=3), space, base)) == 3
    assert len(initial_points(s(trials=4, warm_start=3), space, base)) == 2  # at most half the trials
    assert initial_points(s(trials=8, warm_start=0), space, base) == []
    assert initial_points(s(trials=8), space, base) == []  # off by default (benchmarks/RESULTS.md, search_efficiency)
    pts = initial_points(s(trials=8, points=str(path), warm_start=3), space, base)
    assert pts[0] == user and len(pts) == 4
