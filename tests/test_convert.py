import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_factory import make_image_folder
from simmim_ray.cli import main
from simmim_ray.config import Config
from simmim_ray.data.convert import convert
from simmim_ray.data.scan import scan
from simmim_ray.data.check import check_data
from simmim_ray.errors import UserError


def read(out: str) -> pa.Table:
    return pq.read_table(out)


def shards(out: str) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.endswith(".parquet"))


def parquet_cfg(path: str) -> Config:
    return Config.from_dict({"model": {"img_size": 16, "patch_size": 4, "embed_dim": 16, "depth": 1,
                                       "num_heads": 2},
                             "data": {"source": "parquet", "path": path}})


def test_imagefolder_to_parquet_and_back(tmp_path, capsys):
    src, out = str(tmp_path / "imgs"), str(tmp_path / "pq")
    info = make_image_folder(src, classes=3, per_class=8, corrupt=1, truncated=1)
    rc = main(["convert", src, out, "--from", "imagefolder", "--rows-per-shard", "5"])
    assert rc == 0
    assert f"{info['good']} images" in capsys.readouterr().out
    assert len(shards(out)) == -(-info["good"] // 5)  # ceil(24 / 5) = 5 shards
    table = read(out)
    assert table.num_rows == info["good"]  # the corrupt and truncated files are skipped
    assert table.schema.field("image").type == pa.binary()
    assert table.schema.field("label").type == pa.int64()
    assert "split" not in table.column_names
    assert json.loads(table.schema.metadata[b"classes"]) == ["class_0", "class_1", "class_2"]
    assert sorted(np.bincount(table.column("label").to_numpy()).tolist()) == [8, 8, 8]
    assert all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in table.column("image").to_pylist())

    # it loads back through data.source=parquet
    cfg = parquet_cfg(out)
    summary = check_data(cfg)
    assert summary["classes"] == 3
    s = scan(cfg)
    assert sum(s.sizes.values()) == info["good"]
    assert s.num_classes == 3 and s.classes == ["class_0", "class_1", "class_2"]


def test_cifar10_to_parquet_keeps_its_split(tmp_path, fake_cifar10):
    root, n_train, n_test = fake_cifar10
    out = str(tmp_path / "pq")
    assert main(["convert", root, out, "--from", "cifar10", "--rows-per-shard", "25"]) == 0
    table = read(out)
    assert table.num_rows == n_train + n_test
    assert table.schema.field("split").type == pa.string()
    split = table.column("split").to_pylist()
    assert split.count("train") == n_train and split.count("test") == n_test
    assert len(shards(out)) == -(-(n_train + n_test) // 25)
    # pixels survive the PNG round trip exactly
    from torchvision.datasets import CIFAR10

    from simmim_ray.data.decode import decode_rgb

    ref = CIFAR10(root, train=True)
    first = decode_rgb(table.column("image")[0].as_py())
    assert np.array_equal(first.permute(1, 2, 0).numpy(), ref.data[0])
    assert table.column("label")[0].as_py() == ref.targets[0]

    s = scan(Config.from_dict({"data": {"source": "parquet", "path": out}}))
    # the split column, not the hash, decides the test split; validation comes from the "train" rows
    assert (s.sizes["pretrain"] + s.sizes["labeled"] + s.sizes["val"], s.sizes["test"]) == (n_train, n_test)
    assert s.num_classes == 10


def test_jpeg_bytes_are_kept(tmp_path):
    from PIL import Image

    src = tmp_path / "imgs" / "a"
    src.mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(src / "x.jpg", format="JPEG")
    Image.new("RGB", (16, 16), (10, 10, 200)).save(src / "y.bmp", format="BMP")
    convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")
    images = read(str(tmp_path / "pq")).column("image").to_pylist()
    assert images[0] == (src / "x.jpg").read_bytes()  # JPEG stays JPEG
    assert images[1][:4] == b"\x89PNG"  # BMP becomes PNG


def test_convert_errors(tmp_path, capsys):
    make_image_folder(str(tmp_path / "imgs"))
    cases = [
        (["convert", str(tmp_path / "missing"), str(tmp_path / "o1"), "--from", "imagefolder"],
         "convert SRC", "does not exist"),
        (["convert", str(tmp_path / "imgs"), str(tmp_path / "o2"), "--from", "cifar10"],
         "convert SRC", "no CIFAR-10 batches"),
        (["convert", str(tmp_path / "imgs"), str(tmp_path / "o3"), "--from", "imagefolder", "--rows-per-shard", "0"],
         "`--rows-per-shard >= 1` must hold", ""),
        (["convert", str(tmp_path / "imgs"), str(tmp_path / "o4"), "--from", "jpeg"], "--from", "invalid choice"),
    ]
    for argv, a, b in cases:
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert len(err.strip().splitlines()) == 1 and a in err and b in err and "Traceback" not in err


def test_convert_refuses_to_mix_outputs(tmp_path):
    make_image_folder(str(tmp_path / "imgs"))
    convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")
    with pytest.raises(UserError, match="already holds Parquet files"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")


def test_convert_only_unreadable_images(tmp_path):
    make_image_folder(str(tmp_path / "imgs"), classes=1, per_class=0, corrupt=2, truncated=0)
    with pytest.raises(UserError, match="no readable images"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")
