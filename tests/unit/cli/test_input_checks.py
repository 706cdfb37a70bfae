"""`train`'s validation pass (simmim_ray/cli/input_checks.py), before Ray starts: what reaches the workers holds
absolute paths, and `train` on an existing --output resumes only the same config."""
from __future__ import annotations

from data_factory import make_image_folder


def test_train_sends_absolute_paths(tmp_path, monkeypatch, cli, captured):
    make_image_folder(str(tmp_path / "data" / "imgs"), classes=2, per_class=20, corrupt=0, truncated=0)
    (tmp_path / "c.yaml").write_text("train: {epochs: 1}\n")
    monkeypatch.chdir(tmp_path / "data")
    rc, err = cli(["train", "--config", "../c.yaml", "--set", "data.source=imagefolder",
                   "--set", "data.path=imgs", "--output", "../out"])
    assert rc == "started", err
    assert captured["cfg"].data.path == str(tmp_path / "data" / "imgs")
    assert captured["storage_path"] == str(tmp_path / "out")
    assert captured["tb_dir"] == str(tmp_path / "out" / "tb")


def test_train_rerun_with_changed_config_is_refused_before_writing(tmp_path, cli, captured):
    out = tmp_path / "out"
    assert cli(["train", "--output", str(out), "--set", "train.epochs=3"])[0] == "started"
    saved = (out / "config.yaml").read_text()
    (out / "train").mkdir()  # as a run leaves it
    assert cli(["train", "--output", str(out), "--set", "train.epochs=3"])[0] == "started"  # resumes
    rc, err = cli(["train", "--output", str(out), "--set", "train.epochs=5", "--set", "seed=1"])
    assert rc == 2
    assert err.strip() == (f"simmim-ray: error: --output '{out}' holds a run with another config (seed: 0 -> 1, "
                           f"train.epochs: 3 -> 5); the same config resumes it, a changed one needs another --output")
    assert (out / "config.yaml").read_text() == saved


def test_train_refuses_a_foreign_or_broken_output(tmp_path, cli, captured):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rc, err = cli(["train", "--output", str(foreign)])
    assert rc == 2 and "is not empty and holds no `simmim-ray train` run (no config.yaml)" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("model: {embed_dim: [\n")
    rc, err = cli(["train", "--output", str(broken)])
    assert rc == 2 and "holds a config.yaml that is no valid config" in err and len(err.splitlines()) == 1


def test_train_workers_beyond_the_machine(tmp_path, cli, captured):
    rc, err = cli(["train", "--workers", "1000", "--output", str(tmp_path / "o")])
    assert rc == 2 and "--workers x --cpus-per-worker = 1000 CPUs, but this machine" in err
    assert not (tmp_path / "o").exists()
    # joining a cluster (which may autoscale) is not checked against this machine
    rc, _ = cli(["train", "--workers", "1000", "--address", "auto", "--output", str(tmp_path / "o")])
    assert rc == "started"
