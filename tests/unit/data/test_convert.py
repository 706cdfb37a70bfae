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

    from simmim_ray.data.image_decode import decode_rgb

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
    with pytest.raises(UserError, match=r"convert OUT '.*pq' is not empty \(it holds 'part-00000.parquet'\); give an "
                                        r"empty or new directory"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")


def test_convert_only_unreadable_images(tmp_path):
    make_image_folder(str(tmp_path / "imgs"), classes=1, per_class=0, corrupt=2, truncated=0)
    with pytest.raises(UserError, match="no readable images"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")


def test_convert_skips_what_training_would_refuse_and_names_the_first(tmp_path, capsys, monkeypatch):
    """A FIFO (it would block), a decompression bomb (refused from its header) are skipped and counted; a 16-bit
    TIFF becomes an 8-bit PNG of its high bytes, and a 16-bit PNG is kept and decodes the same way."""
    from PIL import Image, ImageFile

    from data_factory import png_bomb, raw_png
    from simmim_ray.data.image_decode import decode_rgb

    src = tmp_path / "imgs"
    make_image_folder(str(src), classes=2, per_class=3, corrupt=0, truncated=0)
    os.mkfifo(src / "class_0" / "pipe.png")
    (src / "class_0" / "zz_bomb.png").write_bytes(png_bomb(20_000, 20_000))
    g = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000 + 255).astype(np.uint16)
    Image.fromarray(g).save(src / "class_1" / "deep.tif")
    (src / "class_1" / "deep16.png").write_bytes(raw_png(g))
    sizes = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: sizes.append(self.size) or load(self))
    assert main(["convert", str(src), str(tmp_path / "pq"), "--from", "imagefolder"]) == 0
    out = capsys.readouterr().out
    assert "8 images in 1 shard(s)" in out
    assert "(2 unreadable skipped, first: class_0/pipe.png: a named pipe, not a regular file)" in out
    assert max(w * h for w, h in sizes) < 1_000_000  # the bomb was never decoded
    table = read(str(tmp_path / "pq"))
    assert table.num_rows == 8
    decoded = [decode_rgb(b) for b in table.column("image").to_pylist()]
    sixteen = [x for x in decoded if x.shape[1:] == (8, 8)]
    assert len(sixteen) == 2  # the TIFF (re-encoded as PNG) and the 16-bit PNG (kept)
    for x in sixteen:
        assert np.array_equal(x[0].numpy(), (g >> 8).astype(np.uint8))


def test_convert_refuses_empty_class_folders_before_writing(tmp_path):
    """10,000 empty class folders were written as 10,002 classes; an empty folder is no class."""
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=2, corrupt=0, truncated=0)
    for i in range(5):
        (tmp_path / "imgs" / f"e{i}").mkdir()
    os.mkfifo(tmp_path / "imgs" / "e0" / "only.png")  # a FIFO is no image: the folder is still empty
    with pytest.raises(UserError, match=r"^convert SRC '.*imgs': 5 class folder\(s\) hold no image file \(first: "
                                        r"'e0'\); every class needs images"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")
    assert not (tmp_path / "pq").exists()


def test_convert_out_stays_outside_src(tmp_path):
    src = tmp_path / "imgs"
    make_image_folder(str(src), classes=2, per_class=2, corrupt=0, truncated=0)
    (tmp_path / "alias").symlink_to(src)
    before = sorted(os.listdir(src))
    for out, rule in ((src / "pq", "lies inside convert SRC"), (src, "are the same directory"),
                      (tmp_path / "alias" / "pq", "lies inside convert SRC")):
        with pytest.raises(UserError, match=rule):
            convert(str(src), str(out), "imagefolder")
    assert sorted(os.listdir(src)) == before  # nothing was written into the source
    with pytest.raises(UserError, match=r"convert SRC '.*imgs' lies inside convert OUT '.*'; an input must lie "
                                        r"outside the output"):
        convert(str(src), str(tmp_path), "imagefolder")  # OUT around SRC: named so, before "not empty"


def test_convert_refuses_two_classes_linking_one_folder(tmp_path):
    make_image_folder(str(tmp_path / "imgs"), classes=2, per_class=2, corrupt=0, truncated=0)
    make_image_folder(str(tmp_path / "extra"), classes=1, per_class=2, corrupt=0, truncated=0)
    for cls in ("class_0", "class_1"):
        (tmp_path / "imgs" / cls / "more").symlink_to(tmp_path / "extra" / "class_0")
    with pytest.raises(UserError, match=r"class folders 'class_0' and 'class_1' of '.*imgs' both reach "
                                        r"'.*extra/class_0' through symbolic links"):
        convert(str(tmp_path / "imgs"), str(tmp_path / "pq"), "imagefolder")
