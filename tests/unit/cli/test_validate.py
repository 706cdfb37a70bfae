"""The validation pass before Ray starts (simmim_ray/cli/validate.py): what reaches the workers holds absolute
paths, and `train` on an existing --output resumes only the same config."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from data_factory import make_image_folder
from simmim_ray.cli import main


class Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """Replaces Ray's start and the trainer/driver: records what would have been sent to the workers."""
    import simmim_ray.cli.train as train_cmd
    import simmim_ray.search.driver as driver
    import simmim_ray.train.launch as launch
    import simmim_ray.train.ray_init as ray_init

    seen = {}

    def make_trainer(cfg, res, storage_path, name, tb_dir, **kw):
        seen.update(cfg=cfg, storage_path=storage_path, tb_dir=tb_dir)
        raise Stop

    def run_search(s, space, base, exp, resume):
        seen.update(cfg=base, settings=s)
        raise Stop

    monkeypatch.setattr(train_cmd, "init_ray", lambda *a, **k: None)
    # the epoch lines' queue is a Ray actor: the run stops before any epoch anyway
    monkeypatch.setattr(train_cmd, "EpochFeed", lambda epochs: contextlib.nullcontext(SimpleNamespace(queue=None)))
    monkeypatch.setattr(ray_init, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(launch, "make_trainer", make_trainer)
    monkeypatch.setattr(driver, "run_search", run_search)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return seen


def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except Stop:
        rc = "started"
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def test_train_sends_absolute_paths(tmp_path, monkeypatch, capsys, captured):
    make_image_folder(str(tmp_path / "data" / "imgs"), classes=2, per_class=20, corrupt=0, truncated=0)
    (tmp_path / "c.yaml").write_text("train: {epochs: 1}\n")
    monkeypatch.chdir(tmp_path / "data")
    rc, err = run_cli(["train", "--config", "../c.yaml", "--set", "data.source=imagefolder",
                       "--set", "data.path=imgs", "--output", "../out"], capsys)
    assert rc == "started", err
    assert captured["cfg"].data.path == str(tmp_path / "data" / "imgs")
    assert captured["storage_path"] == str(tmp_path / "out")
    assert captured["tb_dir"] == str(tmp_path / "out" / "tb")


def test_search_sends_absolute_paths(tmp_path, monkeypatch, capsys, captured):
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=20, corrupt=0, truncated=0)
    (tmp_path / "s.yaml").write_text("params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    (tmp_path / "points.yaml").write_text("- {mask.ratio: 0.5}\n")
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(["search", "s.yaml", "--target-accuracy", "0.5", "--storage-path", "exps", "--points",
                       "points.yaml", "--set", "data.source=imagefolder", "--set", "data.path=imgs",
                       "--study-db", "sqlite:///study.db"], capsys)
    assert rc == "started", err
    s = captured["settings"]
    assert captured["cfg"].data.path == str(tmp_path / "imgs")
    assert (s.root, s.space_path, s.points) == (str(tmp_path / "exps"), str(tmp_path / "s.yaml"),
                                                   str(tmp_path / "points.yaml"))
    assert s.study_db == f"sqlite:///{tmp_path / 'study.db'}"  # 4 slashes: absolute
    # settings.json keeps the absolute path: a --resume from another directory reads the same data
    assert s.overrides[-1] == f"data.path={tmp_path / 'imgs'}"


def test_train_rerun_with_changed_config_is_refused_before_writing(tmp_path, capsys, captured):
    out = tmp_path / "out"
    assert run_cli(["train", "--output", str(out), "--set", "train.epochs=3"], capsys)[0] == "started"
    saved = (out / "config.yaml").read_text()
    (out / "train").mkdir()  # as a run leaves it
    assert run_cli(["train", "--output", str(out), "--set", "train.epochs=3"], capsys)[0] == "started"  # resumes
    rc, err = run_cli(["train", "--output", str(out), "--set", "train.epochs=5", "--set", "seed=1"], capsys)
    assert rc == 2
    assert err.strip() == (f"simmim-ray: error: --output '{out}' holds a run with another config (seed: 0 -> 1, "
                           f"train.epochs: 3 -> 5); the same config resumes it, a changed one needs another --output")
    assert (out / "config.yaml").read_text() == saved


def test_train_refuses_a_foreign_or_broken_output(tmp_path, capsys, captured):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rc, err = run_cli(["train", "--output", str(foreign)], capsys)
    assert rc == 2 and "is not empty and holds no `simmim-ray train` run (no config.yaml)" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("model: {embed_dim: [\n")
    rc, err = run_cli(["train", "--output", str(broken)], capsys)
    assert rc == 2 and "holds a config.yaml that is no valid config" in err and len(err.splitlines()) == 1


def test_train_workers_beyond_the_machine(tmp_path, capsys, captured):
    rc, err = run_cli(["train", "--workers", "1000", "--output", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--workers x --cpus-per-worker = 1000 CPUs, but this machine" in err
    assert not (tmp_path / "o").exists()
    # joining a cluster (which may autoscale) is not checked against this machine
    rc, _ = run_cli(["train", "--workers", "1000", "--address", "auto", "--output", str(tmp_path / "o")], capsys)
    assert rc == "started"


def test_space_grace_period_is_the_default_and_the_flag_wins(tmp_path, monkeypatch, capsys, captured):
    """ASHA's first rung belongs with the space's recipe (a 60-epoch recipe pruned at epoch 2 stops deep models on
    noise), so the space may set it; --grace-period still overrides."""
    (tmp_path / "s.yaml").write_text("grace_period: 20\nfixed:\n  train.epochs: 60\n"
                                     "params:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    (tmp_path / "bad.yaml").write_text("grace_period: 0\nparams:\n  mask.ratio: {uniform: [0.4, 0.8]}\n")
    monkeypatch.chdir(tmp_path)
    common = ["--target-accuracy", "0.5", "--storage-path", "exps"]
    assert run_cli(["search", "s.yaml", *common], capsys)[0] == "started"
    assert captured["settings"].grace_period == 20
    assert run_cli(["search", "s.yaml", *common, "--name", "other", "--grace-period", "3"], capsys)[0] == "started"
    assert captured["settings"].grace_period == 3
    rc, err = run_cli(["search", "bad.yaml", *common], capsys)
    assert rc == 2 and "`grace_period >= 1` must hold, but got 0" in err
