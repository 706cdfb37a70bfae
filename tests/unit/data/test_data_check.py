"""Issue 16 part 3: bad data is refused on the driver, before Ray starts, in one line naming the column or file and
the rule, from the label column and a few sampled images (data/check.py's `check_data`, the CLI's entry point).

CASES is the table of faults: (name, how the data is made, the source, words the one line must hold).
"""
from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_factory import corrupt_bytes, make_image_folder, pattern, png_bomb, png_bytes
from simmim_ray.cli import main
from simmim_ray.config import Config
from simmim_ray.data.check import check_data
from simmim_ray.errors import UserError

SMALL = {"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2},
         "mask": {"patch_size": 8, "ratio": 0.5}}


def _images(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png_bytes(pattern(i % 4, 16, rng)) for i in range(n)]


def parquet(path, labels, images=None, **extra) -> None:
    """One file `part-000.parquet` under `path` with `image`, `label` (as given: any type) and extra columns."""
    os.makedirs(path, exist_ok=True)
    images = images if images is not None else _images(len(labels))
    pq.write_table(pa.table({"image": pa.array(images, pa.binary()), "label": labels, **extra}),
                   os.path.join(path, "part-000.parquet"))


def _strings(p):
    parquet(p, pa.array([str(i % 3) for i in range(60)]))


def _floats(p):
    parquet(p, pa.array([i % 3 + 0.5 for i in range(60)]))


def _negative(p):
    parquet(p, pa.array([(i % 3) - (i == 17) * 5 for i in range(60)], pa.int64()))


def _huge_label(p):  # a hash or a wrong column: per-class arrays of 10**12 entries would exhaust memory
    parquet(p, pa.array([(i % 3) + (i == 5) * 10**12 for i in range(60)], pa.int64()))


def _nulls(p):
    parquet(p, pa.array([None if i == 4 else i % 3 for i in range(60)], pa.int64()))


def _one_class(p):
    parquet(p, pa.array([7] * 60, pa.int64()))


def _one_class_folder(p):
    make_image_folder(p, classes=1, per_class=20, corrupt=0, truncated=0)


def _empty_class_folder(p):
    make_image_folder(p, classes=2, per_class=20, corrupt=0, truncated=0)
    os.makedirs(os.path.join(p, "class_9"))


def _too_few_rows(p):
    parquet(p, pa.array([0, 1, 0], pa.int64()))


def _one_labelled_class(p):
    # every row of class 1 is a test row: the labelled split (and the pre-training pool) holds class 0 only
    labels = [i % 2 for i in range(60)]
    parquet(p, pa.array(labels, pa.int64()), split=pa.array(["test" if y else "train" for y in labels]))


def _all_corrupt(p):
    parquet(p, pa.array([i % 3 for i in range(60)], pa.int64()), images=[corrupt_bytes()] * 60)


def _all_corrupt_folder(p):
    for c in ("a", "b"):
        os.makedirs(os.path.join(p, c))
        for i in range(10):
            with open(os.path.join(p, c, f"{i}.png"), "wb") as f:
                f.write(corrupt_bytes())


def _image_column_missing(p):
    os.makedirs(p)
    pq.write_table(pa.table({"picture": _images(30), "label": pa.array([i % 3 for i in range(30)])}),
                   os.path.join(p, "part-000.parquet"))


def _image_column_not_bytes(p):
    parquet(p, pa.array([i % 3 for i in range(30)], pa.int64()), images=None)
    pq.write_table(pa.table({"image": pa.array(range(30)), "label": pa.array([i % 3 for i in range(30)])}),
                   os.path.join(p, "part-000.parquet"))


def _columns_differ(p):
    parquet(p, pa.array([i % 3 for i in range(30)], pa.int64()))
    pq.write_table(pa.table({"image": pa.array(_images(30, 1), pa.binary()), "label": pa.array([1] * 30),
                             "split": pa.array(["train"] * 30)}), os.path.join(p, "part-001.parquet"))


def _no_parquet_files(p):
    os.makedirs(p)
    with open(os.path.join(p, "notes.txt"), "w") as f:
        f.write("no data here")


def _missing(p):
    pass


def _all_bombs(p):  # 10000x10000 PNGs of a few kB: refused from the header, never decoded
    parquet(p, pa.array([i % 3 for i in range(60)], pa.int64()), images=[png_bomb(10_000, 10_000)] * 60)


def _all_float(p):  # mode F has no range to map to 8 bits
    buf = io.BytesIO()
    Image.fromarray(np.ones((8, 8), np.float32)).save(buf, format="TIFF")
    parquet(p, pa.array([i % 3 for i in range(60)], pa.int64()), images=[buf.getvalue()] * 60)


CASES = [
    ("string labels", _strings, "parquet", ["data.label_column", "part-000.parquet", "string", "integer"]),
    ("float labels are refused, not truncated", _floats, "parquet", ["data.label_column", "double", "integer"]),
    ("negative label", _negative, "parquet", ["data.label_column", "label -3", "row 17", "part-000.parquet",
                                              "`label >= 0`"]),
    ("label far above any class count", _huge_label, "parquet", ["data.label_column", "row 5", "too large",
                                                                 "`label <= 1,000,000`"]),
    ("null label", _nulls, "parquet", ["data.label_column", "null", "part-000.parquet"]),
    ("one class", _one_class, "parquet", ["data.label_column", "1 class", "`classes >= 2`"]),
    ("one-class image folder", _one_class_folder, "imagefolder", ["data.path", "1 class folder", "`classes >= 2`"]),
    ("empty class folder", _empty_class_folder, "imagefolder", ["data.path", "class_9", "no image file"]),
    ("too few rows for every split", _too_few_rows, "parquet", ["data.path", "empty split", "every split"]),
    ("labelled split of one class", _one_labelled_class, "parquet", ["eval.labeled_fraction", "1 class",
                                                                     "`labelled classes >= 2`"]),
    ("every image corrupt", _all_corrupt, "parquet", ["data.image_column", "none of the", "decodes",
                                                      "part-000.parquet row 0"]),
    ("every image file corrupt", _all_corrupt_folder, "imagefolder", ["data.path", "none of the", "decodes",
                                                                       "a/0.png"]),
    ("every image a decompression bomb", _all_bombs, "parquet", [
        "data.image_column", "none of the", "(first: part-000.parquet row 0: 10000x10000 is 100,000,000 pixels; "
        "`pixels <= 89,478,485` must hold"]),
    ("every image 32-bit float", _all_float, "parquet", [
        "data.image_column", "(first: part-000.parquet row 0: mode F (32-bit float) has no defined range"]),
    ("image column missing", _image_column_missing, "parquet", ["data.image_column", "part-000.parquet",
                                                                "no column 'image'"]),
    ("image column not bytes", _image_column_not_bytes, "parquet", ["data.image_column", "int64",
                                                                    "encoded image bytes"]),
    ("files with different columns", _columns_differ, "parquet", ["data.path", "part-001.parquet", "'split'",
                                                                  "same columns"]),
    ("no .parquet files", _no_parquet_files, "parquet", ["data.path", "no .parquet files"]),
    ("path missing", _missing, "parquet", ["data.path", "does not exist"]),
]


@pytest.mark.parametrize("name,make,source,words", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_naming_the_column_or_file_and_the_rule(tmp_path, name, make, source, words):
    path = str(tmp_path / "data")
    make(path)
    with pytest.raises(UserError) as e:
        check_data(Config.from_dict({**SMALL, "data": {"source": source, "path": path}}))
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for w in words:
        assert w in msg, (w, msg)


def test_some_corrupt_images_pass_the_check(tmp_path):
    """A few bad images are skipped and counted in training, not refused."""
    make_image_folder(str(tmp_path / "imgs"), classes=3, per_class=10, corrupt=2, truncated=1)
    summary = check_data(Config.from_dict({**SMALL, "data": {"source": "imagefolder",
                                                             "path": str(tmp_path / "imgs")}}))
    assert summary["classes"] == 3 and sum(summary[s] for s in ("pretrain", "labeled", "val", "test")) == 33


@pytest.mark.parametrize("command", ["train", "search"])
def test_the_cli_refuses_bad_labels_before_ray_starts(tmp_path, capsys, monkeypatch, command):
    import ray

    started = []
    # (another test in this process may hold a Ray already: what counts is that this command never starts one)
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(a))
    path = str(tmp_path / "data")
    _floats(path)
    argv = [command, "--set", "data.source=parquet", "--set", f"data.path={path}"]
    if command == "search":
        argv = [command, "digits_quick", "--storage-path", str(tmp_path / "exp"), *argv[1:]]
    else:
        argv += ["--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.label_column" in err and "Traceback" not in err, err
    assert started == []
