"""Reference points for the answer, on the same labelled images and test split as the search and confirmation:
a logistic regression on raw pixels (here, on the driver), and the winner's architecture trained from scratch
with the same fine-tune recipe and seeds (a Train job planned by search/answer/confirm.py)."""
from __future__ import annotations

import numpy as np

from simmim_ray.metrics import TEST_ACCURACY, TEST_COUNT, VAL_ACCURACY, VAL_COUNT
from simmim_ray.search.record.ledger_schema import PIXEL_LOGREG, SCRATCH

__all__ = ["PIXEL_LOGREG", "SCRATCH", "labels", "pixel_logreg", "pixel_matrices"]
IN_MEMORY_SOURCES = ("digits", "cifar10")  # Parquet and image folders stream (data/scan.py)
MAX_PIXEL_VALUES = 200_000_000  # labelled images x pixels held at once (1.6 GB as float64)


def pixel_matrices(datasets: list, size: int) -> list[np.ndarray]:
    """Images of each dataset (records: (PIL image, label, mask)) as rows of pixels in [0, 1], all with the same
    columns: native resolution when every image has the same size (digits: the 64 pixels of its 8x8 images), else
    resized to `size`; one channel when every image is grey (R = G = B), so a grey image is not three copies of
    itself."""
    imgs = [[ds[i][0] for i in range(len(ds))] for ds in datasets]
    if len({im.size for part in imgs for im in part}) > 1:
        imgs = [[im.resize((size, size)) for im in part] for part in imgs]
    xs = [np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in part]) for part in imgs]
    if all(np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2]) for x in xs):
        xs = [x[..., :1] for x in xs]
    return [x.reshape(len(x), -1) for x in xs]


def labels(ds) -> np.ndarray:
    return np.array([ds[i][1] for i in range(len(ds))], dtype=np.int64)


def pixel_logreg(cfg, splits=None, with_val: bool = False) -> dict:
    """Logistic regression (scikit-learn defaults, C=1: nothing tuned on any held-out split) on the raw pixels of
    the labelled split, scored on the test split. -> {"test_accuracy", "test_count", "labeled_images"}, or
    {"test_accuracy": None, "skipped": why} where the labelled set is not held in memory. `with_val` also scores
    the validation split ("val_accuracy", "val_count"): the digits studies set it beside a trial's validation
    accuracy (benchmarks/studies/digits_frontier.py)."""
    if cfg.data.source not in IN_MEMORY_SOURCES:
        return {TEST_ACCURACY: None, "skipped": f"data.source={cfg.data.source} is streamed, not held in memory"}
    if splits is None:
        from simmim_ray.data.splits import build_splits  # the data (torchvision) only here: `report` imports this

        splits = build_splits(cfg.with_overrides({"loss.fgbg_weight": 0.0}))
    n_lab = len(splits.labeled)
    first = splits.labeled[0][0]
    if n_lab * first.size[0] * first.size[1] * 3 > MAX_PIXEL_VALUES:
        return {TEST_ACCURACY: None, "skipped": f"{n_lab} labelled images of {first.size[0]}x{first.size[1]} "
                                                f"pixels are too many to hold here"}
    from sklearn.linear_model import LogisticRegression  # scikit-learn only here: `report` imports this

    held = {TEST_ACCURACY: (TEST_COUNT, splits.test)}
    if with_val:
        held[VAL_ACCURACY] = (VAL_COUNT, splits.val)
    x_lab, *x_held = pixel_matrices([splits.labeled, *(ds for _, ds in held.values())], cfg.model.img_size)
    clf = LogisticRegression(max_iter=5000).fit(x_lab, labels(splits.labeled))
    out: dict = {}
    for (acc_key, (count_key, ds)), x in zip(held.items(), x_held):
        y = labels(ds)
        out[acc_key], out[count_key] = float(clf.score(x, y)), int(len(y))
    return {**out, "labeled_images": n_lab}
