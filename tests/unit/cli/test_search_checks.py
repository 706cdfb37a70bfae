"""`search`'s validation pass (simmim_ray/cli/search_checks.py), before Ray starts: what reaches the workers holds
absolute paths, and the space's values are defaults the flags override."""
from __future__ import annotations

from data_factory import make_image_folder


def test_search_sends_absolute_paths(tmp_path, monkeypatch, cli, captured):
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=20, corrupt=0, truncated=0)
    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    (tmp_path / "points.yaml").write_text("- {mask.ratio: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    rc, err = cli(["search", "s.yaml", "--target-accuracy", "0.5", "--storage-path", "exps", "--points",
                   "points.yaml", "--set", "data.source=imagefolder", "--set", "data.path=imgs",
                   "--study-db", "sqlite:///study.db"])
    assert rc == "started", err
    s = captured["settings"]
    assert captured["cfg"].data.path == str(tmp_path / "imgs")
    assert (s.root, s.space_path, s.points) == (str(tmp_path / "exps"), str(tmp_path / "s.yaml"),
                                                   str(tmp_path / "points.yaml"))
    assert s.study_db == f"sqlite:///{tmp_path / 'study.db'}"  # 4 slashes: absolute
    # settings.json keeps the absolute path: a --resume from another directory reads the same data
    assert s.overrides[-1] == f"data.path={tmp_path / 'imgs'}"


def test_space_grace_period_is_the_default_and_the_flag_wins(tmp_path, monkeypatch, cli, captured):
    """ASHA's first rung belongs with the space's recipe (a 60-epoch recipe pruned at epoch 2 stops deep models on
    noise), so the space may set it; --grace-period still overrides."""
    (tmp_path / "s.yaml").write_text("grace_period: 20\nfixed:\n  train.epochs: 60\n"
                                     "params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    (tmp_path / "bad.yaml").write_text("grace_period: 0\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    monkeypatch.chdir(tmp_path)
    common = ["--target-accuracy", "0.5", "--storage-path", "exps"]
    assert cli(["search", "s.yaml", *common])[0] == "started"
    assert captured["settings"].grace_period == 20
    assert cli(["search", "s.yaml", *common, "--name", "other", "--grace-period", "3"])[0] == "started"
    assert captured["settings"].grace_period == 3
    rc, err = cli(["search", "bad.yaml", *common])
    assert rc == 2 and "`grace_period >= 1` must hold, but got 0" in err
