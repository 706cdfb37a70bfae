import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from simmim_ray.config import Config
from simmim_ray.data import EvalTransform, PretrainTransform, build_splits, collate_skip
from simmim_ray.data.transforms import Transformed
from simmim_ray.errors import UserError

SMALL = {"model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 1, "num_heads": 2},
         "mask": {"patch_size": 8, "ratio": 0.5}}


def cfg(**data) -> Config:
    extra = data.pop("_extra", {})
    return Config.from_dict({**SMALL, "data": data, **extra})


def base_indices(ds) -> np.ndarray:
    return np.asarray(ds.indices)


def labels_of(ds) -> np.ndarray:
    """Labels of a (possibly nested) Subset without decoding images."""
    idx = np.arange(len(ds))
    while hasattr(ds, "indices"):
        idx = np.asarray(ds.indices)[idx]
        ds = ds.dataset
    return np.asarray(ds.labels)[idx]


def count_skipped(ds, c: Config, mean, std) -> tuple[int, int]:
    """(good, skipped) over a whole split through the pre-training pipeline."""
    loader = DataLoader(Transformed(ds, PretrainTransform(c, mean, std)), batch_size=4, collate_fn=collate_skip)
    good = skipped = 0
    for b in loader:
        skipped += b["skipped"]
        good += len(b["img"]) if "img" in b else 0
    return good, skipped


def train_len(s) -> int:
    """Rows that are neither validation nor test: the labelled split plus the pre-training pool."""
    return len(s.pretrain) + len(s.labeled)


def split_rows(s) -> dict[str, set]:
    """Base-dataset row indices of each split (splits are Subsets of one record set, except CIFAR's test)."""
    return {name: set(base_indices(getattr(s, name)).tolist()) for name in ("pretrain", "labeled", "val", "test")}


# ---- digits ------------------------------------------------------------------------------------------------
def test_digits_four_splits_are_disjoint_stratified_and_cover_the_data():
    s = build_splits(cfg(source="digits"))
    n = 1797  # scikit-learn's bundled digits
    rows = split_rows(s)
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not rows[a] & rows[b], f"{a} and {b} share rows"
    assert set().union(*rows.values()) == set(range(n))
    assert len(s.test) == pytest.approx(0.2 * n, abs=10) and len(s.val) == pytest.approx(0.2 * n, abs=10)
    assert s.num_classes == 10 and s.has_masks
    # labelled: ceil(fraction * n_c) of each class's training rows; val and test hold every class
    train_labels = np.concatenate([labels_of(s.pretrain), labels_of(s.labeled)])
    lab_labels = labels_of(s.labeled)
    for k in range(10):
        assert (lab_labels == k).sum() == math.ceil(0.1 * (train_labels == k).sum())
    assert set(labels_of(s.test).tolist()) == set(labels_of(s.val).tolist()) == set(range(10))
    assert s.sizes() == {name: len(r) for name, r in rows.items()}


def test_digits_splits_are_deterministic_independent_of_seed_and_fractions_respected():
    a = build_splits(cfg(source="digits"))
    b = build_splits(Config.from_dict({**SMALL, "seed": 5}))
    assert split_rows(a) == split_rows(b) == split_rows(build_splits(cfg(source="digits")))
    c = build_splits(Config.from_dict({**SMALL, "eval": {"labeled_fraction": 0.5}}))
    assert len(c.labeled) == pytest.approx(0.5 * train_len(c), abs=10)
    # the test split is the same whatever the validation fraction: it is drawn first
    d = build_splits(Config.from_dict({**SMALL, "data": {"val_fraction": 0.1}}))
    assert split_rows(d)["test"] == split_rows(a)["test"]
    assert len(d.val) == pytest.approx(0.1 * 1797, abs=10)


def test_split_fractions_must_leave_training_rows():
    with pytest.raises(UserError, match=r"`data.test_fraction \+ data.val_fraction < 1` must hold"):
        Config.from_dict({"data": {"test_fraction": 0.5, "val_fraction": 0.5}})


def test_digits_records_and_foreground():
    s = build_splits(cfg(source="digits"))
    img, label, fg = s.pretrain[0]
    assert img.mode == "RGB" and img.size == (8, 8) and fg.mode == "L"
    ink = np.asarray(img.convert("L")) > 64
    assert np.array_equal(np.asarray(fg) > 0, ink)
    assert 0 <= label <= 9


# ---- CIFAR-10 ----------------------------------------------------------------------------------------------
def test_cifar10_from_fake_batches(fake_cifar10):
    root, n_train, n_test = fake_cifar10
    s = build_splits(cfg(source="cifar10", path=root))
    assert (train_len(s) + len(s.val), len(s.test)) == (n_train, n_test)  # the official test set stays test
    assert s.num_classes == 10 and not s.has_masks
    img, label, fg = s.pretrain[0]
    assert img.size == (32, 32) and fg is None
    rows = {name: set(base_indices(getattr(s, name)).tolist()) for name in ("pretrain", "labeled", "val")}
    assert not (rows["pretrain"] & rows["labeled"]) and not (rows["val"] & (rows["pretrain"] | rows["labeled"]))
    assert len(s.labeled) == 10  # one per class (ceil(0.1 * n_c))
    good, skipped = count_skipped(s.test, cfg(source="cifar10", path=root), s.mean, s.std)
    assert (good, skipped) == (n_test, 0)


def test_cifar10_missing_root_is_user_error(tmp_path):
    with pytest.raises(UserError, match="data.path: no CIFAR-10 batches"):
        build_splits(cfg(source="cifar10", path=str(tmp_path / "nope")))


# Parquet and image folders stream: tests/unit/data/test_data_stream.py, tests/unit/data/test_data_check.py


# ---- transforms --------------------------------------------------------------------------------------------
def test_pretrain_and_eval_transform_shapes():
    c = Config.from_dict({"model": {"img_size": 16, "patch_size": 2, "embed_dim": 16, "depth": 1, "num_heads": 2},
                          "mask": {"patch_size": 8, "ratio": 0.5}})
    s = build_splits(c)
    t = PretrainTransform(c, s.mean, s.std)
    out = t(s.pretrain[0])
    assert out["img"].shape == (3, 16, 16) and out["img"].dtype == torch.float32
    assert out["mask"].shape == (8, 8)  # the model-patch grid, not the mask-unit grid
    assert int(out["mask"].sum()) == 2 * 4 * 4  # ceil(0.5 * 4 units) = 2 units of 4x4 model patches
    assert out["fg"].shape == (1, 16, 16) and set(out["fg"].unique().tolist()) <= {0.0, 1.0}
    assert t(None) is None
    batch = collate_skip([t(s.pretrain[i]) for i in range(3)] + [None])
    assert batch["img"].shape == (3, 3, 16, 16) and batch["mask"].shape == (3, 8, 8)
    assert batch["skipped"] == 1
    assert collate_skip([None, None]) == {"skipped": 2}
    for train in (True, False):
        e = EvalTransform(c, s.mean, s.std, train=train)(s.test[0])
        assert e["img"].shape == (3, 16, 16) and isinstance(e["label"], int)


def test_pretrain_transform_crops_image_and_foreground_together():
    """The foreground mask must follow the image through the random crop and flip."""
    c = cfg(source="digits")
    s = build_splits(c)
    t = PretrainTransform(c, s.mean, s.std)
    for i in range(5):
        torch.manual_seed(i)
        out = t(s.pretrain[i])
        bright = out["img"][0] > (0.5 - s.mean[0]) / s.std[0]
        fg = out["fg"][0].bool()
        # most bright pixels are foreground and most foreground pixels are bright
        assert (bright & fg).sum() >= 0.8 * bright.sum()


def test_eval_transform_is_deterministic_without_train():
    c = cfg(source="digits")
    s = build_splits(c)
    t = EvalTransform(c, s.mean, s.std, train=False)
    torch.manual_seed(0)
    a = t(s.test[0])["img"]
    torch.manual_seed(1)
    assert torch.equal(a, t(s.test[0])["img"])
