"""Search-space parsing and validation (no Ray)."""
from __future__ import annotations

import glob
import os

import optuna
import pytest
import repo_root
import yaml

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.space import load_space, parse_space, to_optuna

ROOT = repo_root.REPO


def ok_space(**params):
    return {"target_accuracy": 0.8, "params": params or {"model.embed_dim": {"int": [32, 64], "step": 32}}}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "search_spaces", "*.yaml"))))
def test_bundled_spaces_are_valid(path):
    space = load_space(path)
    assert space.params and space.target_accuracy is not None
    dists = to_optuna(space)
    assert set(dists) == set(space.keys())


def test_distributions_map_onto_config_fields():
    space = parse_space(ok_space(**{
        "model.embed_dim": {"int": [32, 96], "step": 32},
        "loss.visible_weight": {"uniform": [0.0, 0.5]},
        "train.base_lr": {"loguniform": [1e-4, 1e-2]},
        "loss.type": {"choice": ["l1", "l2"]},
    }), "t")
    d = to_optuna(space)
    assert d["model.embed_dim"] == optuna.distributions.IntDistribution(32, 96, step=32)
    assert d["train.base_lr"].log and d["train.base_lr"].low == 1e-4
    assert d["loss.type"].choices == ("l1", "l2")
    # each sampled point is a valid config
    cfg = Config().with_overrides({"model.embed_dim": 96, "loss.visible_weight": 0.25, "train.base_lr": 1e-3,
                                   "loss.type": "l2"})
    assert cfg.model.embed_dim == 96 and cfg.loss.type == "l2"


@pytest.mark.parametrize("params, message", [
    ({"model.no_such": {"uniform": [0, 1]}}, "unknown config key `model.no_such`"),
    ({"loss.visible_weight": {"uniform": [0.5, 0.5]}}, "`low < high` must hold"),
    ({"loss.visible_weight": {"uniform": [0.6, 0.1]}}, "`low < high` must hold"),
    ({"model.depth": {"int": [4, 2]}}, "`low <= high` must hold"),
    ({"train.base_lr": {"loguniform": [0.0, 0.1]}}, "`low > 0` must hold"),
    ({"model.depth": {"uniform": [1.0, 2.0]}}, "needs a float field"),
    ({"loss.visible_weight": {"int": [0, 2]}}, "`int` needs an int field"),
    ({"loss.type": {"choice": []}}, "`choice` must be a non-empty list"),
    ({"loss.type": {"choice": ["l1", "huber"]}}, "`loss.type` must be one of"),
    ({"model.depth": 3}, "must be a distribution"),
    ({"model.depth": {"int": [1, 4], "uniform": [0, 1]}}, "exactly one of"),
    ({"model.embed_dim": {"int": [32, 96], "step": 32}, "model.num_heads": {"choice": [2, 3]}},
     "`model.embed_dim % model.num_heads == 0` must hold"),
    ({"mask.patch_size": {"choice": [8, 6]}}, "`mask.patch_size % model.patch_size == 0` must hold"),
    ({"mask.ratio": {"uniform": [0.5, 1.0]}}, "`0 < mask.ratio < 1` must hold"),
])
def test_invalid_spaces_name_key_and_rule(params, message):
    with pytest.raises(UserError) as e:
        parse_space(ok_space(**params), "bad")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("doc, message", [
    ({"params": {"model.depth": {"int": [1, 2]}}, "bogus": 1}, "unknown key `bogus`"),
    ({"params": {}}, "`params` must be a non-empty mapping"),
    ({"params": {"model.depth": {"int": [1, 2]}}, "target_accuracy": 1.5}, "`0 < target_accuracy <= 1`"),
    ({"params": {"model.depth": {"int": [1, 2]}}, "size_metric": "latency"}, "`size_metric` must be one of"),
    ({"params": {"model.depth": {"int": [1, 2]}}, "fixed": {"model.depth": 2}}, "both fixed and searched"),
    ({"params": {"model.depth": {"int": [1, 2]}}, "fixed": {"train.epochs": "ten"}}, "`train.epochs` must be int"),
])
def test_invalid_top_level(doc, message):
    with pytest.raises(UserError) as e:
        parse_space(doc, "bad")
    assert message in str(e.value)


def test_check_command_prints_space_and_rejects_bad(tmp_path, capsys):
    from simmim_ray.cli import main

    assert main(["check", os.path.join(ROOT, "search_spaces", "digits_quick.yaml")]) == 0
    out = capsys.readouterr().out
    assert "search model.embed_dim" in out and out.strip().endswith("ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(ok_space(**{"model.num_heads": {"choice": [3]}})))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.num_heads=3" in err[0]


def test_list_choices_round_trip_through_optuna_storage(tmp_path):
    """Swin stage depths are list choices: stored as JSON strings in Optuna, decoded back for the config."""
    from simmim_ray.search.space import decode

    space = parse_space({"params": {"model.depths": {"choice": [[2, 2], [2, 4]]}},
                         "fixed": {"model.arch": "swin"}}, "swin")
    dist = to_optuna(space)["model.depths"]
    assert dist.choices == ("[2, 2]", "[2, 4]")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    t = study.ask({"model.depths": dist})
    cfg = space.base_config().with_overrides(decode(t.params))
    assert cfg.model.depths in ([2, 2], [2, 4])


def test_the_default_space_searches_architecture_masking_and_loss_weights():
    """What the service exists for: widths/depths, masking and loss weights, all discrete (so the benchmark table
    holds every configuration), a compute budget and rungs fitted to its recipe."""
    from simmim_ray.cli.input_checks import space_file
    from simmim_ray.search import settings
    from simmim_ray.search.space import load_space

    space = load_space(space_file(settings.DEFAULT_SPACE))
    keys = set(space.keys())
    assert keys & {"model.embed_dim", "model.depth"} == {"model.embed_dim", "model.depth"}
    assert keys & {"mask.ratio", "mask.patch_size"}
    assert keys & {"loss.visible_weight", "loss.fgbg_weight"}
    assert all(p.kind in ("int", "choice") for p in space.params)
    n = 1
    for p in space.params:
        n *= len(p.candidates())
    assert n >= 120
    base = space.base_config()
    assert space.budget and space.budget >= base.train.epochs  # at least one full trial
    assert space.grace_period and space.grace_period < base.train.epochs
    for p in space.params:  # every searched value reaches the config
        section, name = p.key.split(".")
        for v in p.candidates():
            assert getattr(getattr(base.with_overrides({p.key: v}), section), name) == v


@pytest.mark.parametrize("name", ["cifar10_vit", "imagenet_swin"])
def test_the_gpu_spaces_set_rungs_and_budget_for_their_own_recipe(name):
    from simmim_ray.cli.input_checks import space_file
    from simmim_ray.search.space import load_space

    space = load_space(space_file(name))
    epochs = space.base_config().train.epochs
    assert 1 < space.grace_period < epochs and epochs % space.grace_period == 0
    assert space.budget >= epochs
