"""Streamed sources (Parquet, image folders) without Ray: the split of every row is decided row-locally, so the
whole table, each unit read on its own, and the driver's label scan all agree; loaders give every rank the same
steps and evaluation shares that cover each row once."""
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from data_factory import make_image_folder, write_parquet_shards
from simmim_ray.config import Config
from simmim_ray.data import labelled, rowkeys
from simmim_ray.data.check import check_data
from simmim_ray.data.decode import StreamTransform, crop_box
from simmim_ray.data.image_decode import decode_rgb
from simmim_ray.data.scan import SPLITS, scan
from simmim_ray.data.stream_batches import local_batches, local_splits, train_steps
from simmim_ray.data.stream_read import Selection, read_unit
from simmim_ray.errors import UserError

SMALL = {"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2},
         "mask": {"patch_size": 8, "ratio": 0.5}, "train": {"batch_size": 4}, "eval": {"batch_size": 4}}


def cfg(**data) -> Config:
    extra = data.pop("_extra", {})
    return Config.from_dict({**SMALL, "data": data, **extra})


def streamed_assignment(c: Config) -> dict[bytes, str]:
    """image bytes -> split, reading each unit of each split on its own (what one read task does)."""
    plan = scan(c)
    sel = Selection.of(plan)
    out = {}
    for split in SPLITS:
        for unit in plan.units:
            for b in read_unit(sel, unit, split).column("image").to_pylist():
                assert b not in out, "a row landed in two splits"
                out[b] = split
    return out


def whole_table_assignment(path: str, c: Config) -> dict[bytes, str]:
    """image bytes -> split, from every row of every file at once, with the labelled rule applied in memory
    (the k_c smallest v of each class), independently of the scan's bounded-memory selector."""
    import os

    rows = []
    for name in sorted(n for n in os.listdir(path) if n.endswith(".parquet")):
        t = pq.read_table(os.path.join(path, name))
        u, v = rowkeys.positions(rowkeys.file_id(name), np.arange(t.num_rows))
        split = t.column("split").to_pylist() if "split" in t.column_names else None
        codes = rowkeys.holdout_codes(u, split, c.data.test_fraction, c.data.val_fraction)
        rows += list(zip(t.column("image").to_pylist(), t.column("label").to_pylist(), codes, v))
    names = {rowkeys.VAL: "val", rowkeys.TEST: "test"}
    out = {b: names.get(code, "pretrain") for b, _, code, _ in rows}
    train = [(b, y, v) for b, y, code, v in rows if code == rowkeys.TRAIN]
    for y in {y for _, y, _ in train}:
        cls = sorted((v, b) for b, yy, v in train if yy == y)
        for _, b in cls[:labelled.target(len(cls), c.eval.labeled_fraction)]:
            out[b] = "labeled"
    return out


# ---- the split of a row ------------------------------------------------------------------------------------
@pytest.mark.parametrize("split_column", [False, True])
def test_selection_is_the_same_whole_table_unit_by_unit_and_in_the_scan(tmp_path, split_column):
    path = str(tmp_path / "pq")
    write_parquet_shards(path, n=300, shards=3, classes=5, split=split_column)
    c = cfg(source="parquet", path=path)
    whole = whole_table_assignment(path, c)
    streamed = streamed_assignment(c)
    assert streamed == whole and len(whole) == 300
    counts = {s: sum(1 for v in whole.values() if v == s) for s in SPLITS}
    assert scan(c).sizes == counts
    assert all(n > 0 for n in counts.values())
    if split_column:  # the column decides the test split, not the hash
        assert counts["test"] == 75


def test_selection_does_not_move_with_row_groups_or_the_filesystem_uri(tmp_path):
    """A row's key is (file, row in file): how a file is cut into row groups (read tasks) and how the data is
    addressed (path or file:// URI) change nothing."""
    write_parquet_shards(str(tmp_path / "a"), n=120, shards=2)
    b = tmp_path / "b"
    b.mkdir()
    for f in sorted((tmp_path / "a").iterdir()):
        pq.write_table(pq.read_table(f), b / f.name, row_group_size=7)  # many small units
    sa = streamed_assignment(cfg(source="parquet", path=str(tmp_path / "a")))
    pb = scan(cfg(source="parquet", path=str(b)))
    assert len(pb.units) > 2 * len(scan(cfg(source="parquet", path=str(tmp_path / "a"))).units)
    assert streamed_assignment(cfg(source="parquet", path=str(b))) == sa
    assert streamed_assignment(cfg(source="parquet", path=f"file://{tmp_path / 'a'}")) == sa


def test_labelled_subset_follows_the_in_memory_rule_per_class(tmp_path):
    path = str(tmp_path / "pq")
    write_parquet_shards(path, n=400, shards=2, classes=4)
    c = cfg(source="parquet", path=path, _extra={"eval": {"labeled_fraction": 0.25}})
    plan = scan(c)
    a = streamed_assignment(c)
    t = pq.read_table(path)
    label = dict(zip(t.column("image").to_pylist(), t.column("label").to_pylist()))
    for y in range(4):
        train = [b for b, s in a.items() if label[b] == y and s in ("pretrain", "labeled")]
        lab = [b for b in train if a[b] == "labeled"]
        assert len(lab) == math.ceil(0.25 * len(train))
    assert plan.labeled_classes == 4 and plan.num_classes == 4


def test_labelled_selector_is_order_free_and_exact_beyond_its_bottom_k(monkeypatch):
    """Classes larger than 2K fall back to the histogram: the count stays exact (rows below the threshold) and
    within one bin of the target; feeding the rows in another order or chunking changes nothing."""
    monkeypatch.setattr(labelled, "K", 16)
    monkeypatch.setattr(labelled, "BINS", 256)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 5000)
    y[:3] = 3  # a class of 3 rows
    v = rng.random(5000)

    def thresholds(order, chunk):
        s = labelled.LabeledSelector()
        for a in range(0, len(order), chunk):
            s.add(y[order[a:a + chunk]], v[order[a:a + chunk]])
        return s.thresholds(0.1, 4)

    t1, n1 = thresholds(np.arange(5000), 5000)
    t2, n2 = thresholds(rng.permutation(5000), 37)
    assert np.array_equal(t1, t2) and n1 == n2
    for c in range(4):
        got = int(((y == c) & (v < t1[c])).sum())
        assert got == n1[c]
        want = labelled.target(int((y == c).sum()), 0.1)
        assert want <= got <= want + int((y == c).sum()) // 256 + 8
    assert n1[3] == 1  # ceil(0.1 * 3): the exact bottom-K path


# ---- image folders -----------------------------------------------------------------------------------------
def test_image_folder_streams_every_file_once_and_counts_corrupt(tmp_path):
    info = make_image_folder(str(tmp_path / "imgs"), classes=3, per_class=20, corrupt=1, truncated=1)
    c = cfg(source="imagefolder", path=str(tmp_path / "imgs"))
    plan = scan(c)
    assert sum(plan.sizes.values()) == info["good"] + info["bad"] and plan.num_classes == 3
    assert plan.classes == ["class_0", "class_1", "class_2"]
    good = skipped = 0
    for split in SPLITS:
        for b in local_batches(c, plan, split, "eval", 8)():
            good += int(b["valid"].sum())
            skipped += int((~b["valid"]).sum())
    assert (good, skipped) == (info["good"], info["bad"])
    assert check_data(c)["classes"] == 3


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="data.path: image folder .* does not exist"):
        scan(cfg(source="imagefolder", path=str(tmp_path / "missing")))
    make_image_folder(str(tmp_path / "imgs"))
    with pytest.raises(UserError, match="loss.fgbg_weight: must be 0"):
        check_data(cfg(source="imagefolder", path=str(tmp_path / "imgs"), _extra={"loss": {"fgbg_weight": 0.5}}))


# ---- loaders -----------------------------------------------------------------------------------------------
def test_ranks_get_equal_training_steps_and_disjoint_complete_evaluation_shares(tmp_path):
    write_parquet_shards(str(tmp_path / "pq"), n=150, shards=3, corrupt_rows=2)
    c = cfg(source="parquet", path=str(tmp_path / "pq"))
    plan = scan(c)
    ranks = [local_splits(c, plan, rank, 2) for rank in range(2)]
    steps = [sum(1 for _ in r.pretrain) for r in ranks]
    assert steps[0] == steps[1] == len(ranks[0].pretrain) == train_steps(plan.sizes["pretrain"], 2, 4) > 0
    for split in ("val", "test"):
        seen = [sum(int(b.get("img", torch.zeros(0)).shape[0]) + b["skipped"] for b in getattr(r, split))
                for r in ranks]
        assert sum(seen) == plan.sizes[split]  # every row once over the ranks, corrupt ones counted as skipped
    b = next(iter(ranks[0].pretrain))
    assert b["img"].dtype == torch.float32 and b["img"].shape[1:] == (3, 16, 16) and b["mask"].shape[1:] == (4, 4)


def test_train_steps_rule():
    assert train_steps(100, 2, 8) == 6  # 50 rows per rank: whole batches only
    assert train_steps(10, 2, 8) == 1  # less than a batch per rank: one short batch
    assert train_steps(1, 2, 8) == 0


# ---- decode ------------------------------------------------------------------------------------------------
def test_stream_transform_shapes_and_undecodable_rows(tmp_path):
    from data_factory import corrupt_bytes, pattern, png_bytes

    rng = np.random.default_rng(0)
    good = png_bytes(pattern(1, 24, rng))
    table = pa.table({"image": pa.array([good, corrupt_bytes(), None], pa.binary()),
                      "label": pa.array([1, 2, 3], pa.int64())})
    c = cfg(source="parquet", path="x")
    out = StreamTransform(c, "pretrain")(table)
    assert out["img"].shape == (3, 3, 16, 16) and out["img"].dtype == np.uint8
    assert out["valid"].tolist() == [True, False, False]
    assert out["mask"].shape == (3, 4, 4) and int(out["mask"][0].sum()) == 8  # 2 of 4 mask units, 2x2 each
    ev = StreamTransform(c, "eval")(table)
    assert ev["label"].tolist() == [1, 2, 3] and ev["img"].shape == (3, 3, 16, 16)
    # un-augmented evaluation is the plain resize of the decoded image
    ref = torch.nn.functional.interpolate(decode_rgb(good)[None].float(), size=(16, 16), mode="bilinear",
                                          antialias=True, align_corners=False)[0]
    assert (torch.from_numpy(ev["img"][0]).float() - ref).abs().max() <= 1.5


def test_crop_box_stays_inside_and_respects_scale():
    rng = np.random.default_rng(0)
    for h, w in ((375, 500), (500, 375), (16, 16), (10, 300)):
        for _ in range(200):
            top, left, ch, cw = crop_box(rng, h, w, (0.67, 1.0), (3 / 4, 4 / 3))
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
    areas = [np.prod(crop_box(rng, 375, 500, (0.67, 1.0), (3 / 4, 4 / 3))[2:]) / (375 * 500) for _ in range(500)]
    assert 0.6 < min(areas) and max(areas) <= 1.0


def test_decode_reads_jpeg_png_and_other_formats():
    import io

    from PIL import Image

    img = Image.new("RGB", (20, 10), (200, 10, 10))
    for fmt in ("JPEG", "PNG", "BMP"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        x = decode_rgb(buf.getvalue())
        assert x.shape == (3, 10, 20) and x.dtype == torch.uint8 and x[0].float().mean() > 150, fmt
    assert decode_rgb(b"garbage" * 10) is None and decode_rgb(None) is None


def test_parquet_masks_follow_the_crop_and_train_the_fgbg_head(tmp_path):
    from simmim_ray.engine.run import PretrainRun

    write_parquet_shards(str(tmp_path / "pq"), n=80, shards=2, with_mask=True)
    c = cfg(source="parquet", path=str(tmp_path / "pq"),
            _extra={"loss": {"fgbg_weight": 0.5}, "train": {"batch_size": 8, "epochs": 1}})
    plan = scan(c)
    assert plan.has_masks
    out = next(local_batches(c, plan, "pretrain", "pretrain", 8)())
    assert out["fg"].shape == (8, 1, 16, 16) and out["has_fg"].all()
    # the mask was cropped with the image: bright pixels (the class square) are mostly foreground
    bright = out["img"].max(axis=1) > 200
    fg = out["fg"][:, 0].astype(bool)
    assert (bright & fg).sum() >= 0.8 * bright.sum() > 0
    m = PretrainRun(c).train_epoch()
    assert "loss_fgbg" in m and m["images"] > 0
    with pytest.raises(UserError, match="loss.fgbg_weight: must be 0 for Parquet data without a 'nope' column"):
        check_data(cfg(source="parquet", path=str(tmp_path / "pq"), mask_column="nope",
                       _extra={"loss": {"fgbg_weight": 0.5}}))


@pytest.mark.parametrize("size,mask_patch,model_patch,ratio", [(192, 32, 16, 0.6), (16, 8, 4, 0.5), (32, 8, 2, 0.3)])
def test_batch_masks_match_the_mask_generator(size, mask_patch, model_patch, ratio):
    from simmim_ray.data.decode import batch_masks
    from simmim_ray.masking import MaskGenerator

    mg = MaskGenerator(size, mask_patch, model_patch, ratio)
    ref = mg()
    m = batch_masks(mg, np.random.default_rng(0), 500)
    assert m.shape == (500, *ref.shape)
    assert set(m.reshape(500, -1).sum(1).tolist()) == {int(ref.sum())}
    # constant within each mask unit, and every unit masked about `ratio` of the time
    s = mg.scale
    assert (m == m[:, ::s, ::s].repeat(s, 1).repeat(s, 2)).all()
    freq = m[:, ::s, ::s].reshape(500, -1).mean(0)
    assert abs(freq.mean() - mg.mask_count / mg.token_count) < 1e-9 and freq.min() > 0


def test_jpegs_decode_through_simplejpeg_near_an_exact_decode(monkeypatch):
    """JPEGs take simplejpeg's fast-IDCT path (the measured 2x of data_throughput); its pixels stay within a few
    levels of Pillow's exact decode, for RGB, grayscale and CMYK JPEGs, and the crop pipeline gives the same
    contiguous uint8 output from its channels-last tensor."""
    import io

    from PIL import Image

    from simmim_ray.data import decode, image_decode
    from data_factory import pattern

    assert image_decode.simplejpeg is not None, "simplejpeg is a declared dependency"
    calls = []
    real = image_decode.simplejpeg.decode_jpeg
    monkeypatch.setattr(image_decode.simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(1) or real(*a, **k))
    rgb = Image.fromarray(pattern(3, 48, np.random.default_rng(1)))
    for img in (rgb, rgb.convert("L"), rgb.convert("CMYK")):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        fast = decode_rgb(buf.getvalue())
        with monkeypatch.context() as m:
            m.setattr(image_decode, "simplejpeg", None)
            exact = decode_rgb(buf.getvalue())
        diff = (fast.int() - exact.int()).abs()
        assert fast.shape == exact.shape == (3, 48, 48) and fast.dtype == torch.uint8, img.mode
        assert diff.max() <= 8 and diff.float().mean() < 1.5, img.mode
    assert len(calls) == 3
    # a PNG never reaches simplejpeg
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    assert decode_rgb(buf.getvalue()).shape == (3, 48, 48) and len(calls) == 3
    x = decode_rgb(buf.getvalue())
    out = decode.F.resized_crop(x.permute(1, 2, 0).contiguous().permute(2, 0, 1), 2, 3, 40, 41, [16, 16],
                                antialias=True)
    assert out.shape == (3, 16, 16) and out.is_contiguous()
    assert torch.equal(out, decode.F.resized_crop(x, 2, 3, 40, 41, [16, 16], antialias=True))
