"""Search-driver decisions that need no Ray: concurrency, placement, shared storage, warm-start points."""
from __future__ import annotations

import os

import pytest
import repo_root
import yaml

from simmim_ray.config import Config
from simmim_ray.errors import UserError
from simmim_ray.search.settings import SearchSettings
from simmim_ray.search.driver import check_trials_fit, default_concurrency, load_points
from simmim_ray.search.space import parse_space


def settings(**kw) -> SearchSettings:
    return SearchSettings(space_path="s", name="n", root="/tmp/x", trials=4, target_accuracy=0.5, **kw)


@pytest.mark.parametrize("kw, cluster, expected", [
    ({}, {"CPU": 2}, 1),  # 2 workers x 1 CPU on a laptop: one trial at a time
    ({}, {"CPU": 16}, 8),
    ({"cpus_per_worker": 0.5}, {"CPU": 4}, 4),
    ({"gpu": True, "gpus_per_worker": 0.25, "workers_per_trial": 1}, {"CPU": 16, "GPU": 1}, 4),  # packed GPU
    ({"gpu": True, "gpus_per_worker": 1.0}, {"CPU": 64, "GPU": 4}, 2),  # GPUs bound it, not CPUs
])
def test_default_concurrency_follows_cluster_resources(kw, cluster, expected):
    assert default_concurrency(settings(**kw), cluster) == expected


def test_a_trial_that_can_never_be_placed_is_refused_up_front():
    with pytest.raises(UserError, match="one trial could never start"):
        check_trials_fit(settings(workers_per_trial=4), {"CPU": 2})
    with pytest.raises(UserError, match="GPUs"):
        check_trials_fit(settings(gpu=True, gpus_per_worker=1.0), {"CPU": 8, "GPU": 1})
    check_trials_fit(settings(), {"CPU": 2})


def test_points_must_name_exactly_the_searched_keys(tmp_path):
    space = parse_space({"params": {"model.depth": {"int": [1, 4]}, "mask.ratio": {"uniform": [0.3, 0.8]}}}, "p")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump([{"model.depth": 2, "mask.ratio": 0.6}]))
    assert load_points(str(good), space) == [{"model.depth": 2, "mask.ratio": 0.6}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"model.depth": 2, "model.embed_dim": 8}]))
    with pytest.raises(UserError, match="missing \\['mask.ratio'\\], unknown \\['model.embed_dim'\\]"):
        load_points(str(bad), space)


def test_search_applies_the_space_fixed_values_to_trials(monkeypatch, tmp_path):
    """The `fixed:` block reaches every trial's config and ASHA's max_t (a bug once let defaults through)."""
    import simmim_ray.search.driver as driver

    seen = {}
    monkeypatch.setattr("simmim_ray.train.ray_init.init_ray", lambda *a, **k: None)
    monkeypatch.setattr(driver, "run_search", lambda s, space, base, exp, resume: seen.update(base=base) or 0)
    from simmim_ray.cli import main

    assert main(["search", "digits_quick", "--storage-path", str(tmp_path), "--target-accuracy", "0.5"]) == 0
    fixed = yaml.safe_load(open(os.path.join(repo_root.REPO, "search_spaces",
                                             "digits_quick.yaml")))["fixed"]
    assert fixed["train.epochs"] != Config().train.epochs  # else this would not tell fixed values from defaults
    assert seen["base"].train.epochs == fixed["train.epochs"] and seen["base"].eval.epochs == fixed["eval.epochs"]


def test_tune_saves_its_state_every_2_s_on_file_systems_only(monkeypatch):
    # a trial that starts and ends between two of Tune's saves is unknown to --resume
    # (tests/scenarios/test_search_e2e.py)
    from simmim_ray.search.driver import tune_state_period

    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
    tune_state_period("s3://bucket/prefix")  # each save copies every file: keep Tune's own pace there
    assert "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ
    for local in ("/shared/experiments", "file:///shared/experiments"):
        monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
        tune_state_period(local)
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "2"
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "30")  # the user's choice wins
    tune_state_period("/shared/experiments")
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "30"


def test_a_search_resumes_only_on_the_trial_path_it_started_with(tmp_path):
    """Tune restores the actor reuse a search started with, which fits only that trial path (simmim_ray/_compat)."""
    from simmim_ray.search.driver import check_trial_path, reuse_actors

    from simmim_ray.search.record.experiment import Experiment

    exp = Experiment(str(tmp_path))
    assert reuse_actors(True) and not reuse_actors(False)
    check_trial_path(exp, lean=True, resume=False)
    assert (tmp_path / "trial_path").read_text() == "lean"
    check_trial_path(exp, lean=True, resume=True)  # same path: fine
    with pytest.raises(UserError, match=r"ran the lean trial path, but this Ray gives the public path; resume "
                                        r"with SIMMIM_RAY_TRIAL_PATH=lean"):
        check_trial_path(exp, lean=False, resume=True)
    check_trial_path(exp, lean=False, resume=False)  # a new search starts over on its own path
    assert (tmp_path / "trial_path").read_text() == "public"
