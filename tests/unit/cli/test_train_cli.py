"""`simmim-ray train` bad input: exit 2, one line on stderr naming the key and the rule, no traceback, no Ray."""

import pytest

from data_factory import make_image_folder, write_parquet_shards
from simmim_ray.cli import train as train_cmd
from simmim_ray.cli import main
from simmim_ray.errors import UserError


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every case here must be rejected before Ray starts."""
    def fail(*a, **k):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(train_cmd, "init_ray", fail)


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit directly
        rc = e.code
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("simmim-ray: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    make_image_folder(str(root))
    return str(root)


def train(tmp_path, *sets: str, extra=()) -> list[str]:
    argv = ["train", "--output", str(tmp_path / "out"), *extra]
    for s in sets:
        argv += ["--set", s]
    return argv


@pytest.mark.parametrize("sets,needles", [
    (["model.foo=1"], ["unknown config key `model.foo`"]),
    (["modell.depth=1"], ["unknown config key `modell.depth`"]),
    (["model.embed_dim=abc"], ["`model.embed_dim` must be int", "'abc'"]),
    (["train.epochs=2.5"], ["`train.epochs` must be int"]),
    (["train.amp=maybe"], ["`train.amp` must be bool"]),
    (["mask.ratio=1.5"], ["`0 < mask.ratio < 1` must hold", "1.5"]),
    (["mask.ratio=0"], ["`0 < mask.ratio < 1` must hold"]),
    (["mask.patch_size=6"], ["`mask.patch_size % model.patch_size == 0` must hold", "6 % 4"]),
    (["model.img_size=36"], ["`model.img_size % mask.patch_size == 0` must hold", "36 % 8"]),
    (["model.arch=swin", "model.img_size=16", "model.patch_size=2", "model.window_size=3"],
     ["model.window_size", "must hold for Swin", "window 3"]),
    (["data.source=imagefolder", "data.path=/nonexistent/imgs"], ["data.path", "/nonexistent/imgs", "does not exist"]),
    (["data.source=imagefolder"], ["data.path", "must name an image folder, but got an empty value"]),  # no path
    (["data.source=cifar10", "data.path=/nonexistent/cifar"], ["data.path", "/nonexistent/cifar"]),
    (["data.source=parquet", "data.path=/nonexistent/pq"], ["data.path", "/nonexistent/pq", "does not exist"]),
    (["data.source=mnist"], ["`data.source` must be one of"]),
])
def test_bad_config_exits_2(tmp_path, capsys, sets, needles):
    rc, err = run_cli(train(tmp_path, *sets), capsys)
    assert_one_line_error(rc, err, *needles)


def test_unknown_key_in_config_file(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 3\n")
    rc, err = run_cli(train(tmp_path, extra=["--config", str(p)]), capsys)
    assert_one_line_error(rc, err, "unknown config key `train.epoch`")


def test_missing_config_file(tmp_path, capsys):
    rc, err = run_cli(train(tmp_path, extra=["--config", str(tmp_path / "nope.yaml")]), capsys)
    assert_one_line_error(rc, err, "nope.yaml", "does not exist")


def test_parquet_without_image_column(tmp_path, capsys):
    write_parquet_shards(str(tmp_path / "pq"), n=20, image_column="img")
    rc, err = run_cli(train(tmp_path, "data.source=parquet", f"data.path={tmp_path / 'pq'}"), capsys)
    assert_one_line_error(rc, err, "data.image_column", "no column 'image'", "columns: img, label")


def test_fgbg_weight_without_masks(tmp_path, capsys, image_folder):
    rc, err = run_cli(train(tmp_path, "data.source=imagefolder", f"data.path={image_folder}",
                            "loss.fgbg_weight=0.5"), capsys)
    assert_one_line_error(rc, err, "loss.fgbg_weight", "must be 0", "imagefolder")


def test_fgbg_weight_on_parquet_without_mask_column(tmp_path, capsys):
    write_parquet_shards(str(tmp_path / "pq"), n=20)
    rc, err = run_cli(train(tmp_path, "data.source=parquet", f"data.path={tmp_path / 'pq'}",
                            "loss.fgbg_weight=0.5"), capsys)
    assert_one_line_error(rc, err, "loss.fgbg_weight", "'mask'")


@pytest.mark.parametrize("flags,needle", [
    (["--workers", "0"], "`--workers >= 1` must hold, but got 0"),
    (["--workers", "-3"], "`--workers >= 1` must hold"),
    (["--workers", "two"], "--workers must be an integer"),
    (["--cpus-per-worker", "0"], "`--cpus-per-worker > 0` must hold"),
    (["--set", "novalue"], "--set 'novalue': expected key=value"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_exit_2(tmp_path, capsys, flags, needle):
    rc, err = run_cli(train(tmp_path, extra=flags), capsys)
    assert_one_line_error(rc, err, needle)


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(UserError, match="unknown config key"):
        main(["--debug", *train(tmp_path, "model.foo=1")])


def test_good_input_reaches_ray_after_writing_config(tmp_path, capsys):
    """The guard fixture must really sit on the path a valid config takes (else the tests above prove nothing)."""
    with pytest.raises(AssertionError, match="Ray was started"):
        main(train(tmp_path, "train.epochs=1"))
    assert (tmp_path / "out" / "config.yaml").is_file()
