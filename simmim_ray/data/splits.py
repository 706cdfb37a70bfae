"""Four disjoint, deterministic splits of a dataset:

- `pretrain`: the unlabelled pre-training pool;
- `labeled`: `eval.labeled_fraction` of the training rows, for the fine-tune / probe (and the k-NN bank);
- `val`: the per-epoch proxy, the search's objective and its feasibility test;
- `test`: touched only by confirmation runs and the final report, so no search decision ever sees it.

In-memory sources (digits, CIFAR-10) are split here, stratified by class with fixed generators: the splits never
move with `seed`, so every trial and every seed of a confirmation sees the same images. Parquet and image folders
are never loaded whole: they stream, each row's split decided row-locally from its key (rowkeys.py, scan.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Subset

from simmim_ray.config import Config
from simmim_ray.data import sources
from simmim_ray.errors import UserError

SPLITS = ("pretrain", "labeled", "val", "test")
_TEST_RNG, _VAL_RNG, _LABELED_RNG = 12345, 23456, 54321


@dataclass
class Splits:
    pretrain: Dataset  # unlabelled pool: labels unused
    labeled: Dataset  # `eval.labeled_fraction` of the training rows, stratified by class
    val: Dataset
    test: Dataset
    num_classes: int
    has_masks: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def build_splits(cfg: Config) -> Splits:
    d = cfg.data
    if d.source == "digits":
        recs = sources.DigitsRecords()
        test_idx, val_idx, train_idx = stratified_partition(recs.labels, d.test_fraction, d.val_fraction)
        has_masks, stats = True, sources.STATS["digits"]
    elif d.source == "cifar10":
        train = sources.cifar10_records(d.path, True, d.download)
        test = sources.cifar10_records(d.path, False, False)
        # the official test set stays the test split; validation is val_fraction of all rows, from the train set
        frac = d.val_fraction * (len(train) + len(test)) / len(train)
        _, val_idx, train_idx = stratified_partition(train.labels, 0.0, min(frac, 0.5))
        recs, test_set, test_idx = train, test, None
        has_masks, stats = False, sources.STATS["cifar10"]
    else:
        raise ValueError(f"data.source={d.source!r} streams (simmim_ray.data.scan, stream_batches); "
                         f"build_splits loads in-memory sources only")
    if cfg.loss.fgbg_weight > 0 and not has_masks:
        raise UserError(f"loss.fgbg_weight: must be 0 for data.source={d.source!r}, which has no foreground "
                        f"masks, but got {cfg.loss.fgbg_weight}")
    train_labels = np.asarray(recs.labels)[train_idx]
    lab_pos = labeled_subset(train_labels, cfg.eval.labeled_fraction)
    pool_pos = np.setdiff1d(np.arange(len(train_idx)), lab_pos)
    test = test_set if test_idx is None else Subset(recs, test_idx)
    splits = Splits(pretrain=Subset(recs, train_idx[pool_pos]), labeled=Subset(recs, train_idx[lab_pos]),
                    val=Subset(recs, val_idx), test=test,
                    num_classes=int(max(np.asarray(recs.labels).max(), _max_label(test)) + 1),
                    has_masks=has_masks, mean=stats[0], std=stats[1])
    empty = [name for name, n in splits.sizes().items() if n == 0]
    if empty:
        sizes = ", ".join(f"{k} {v}" for k, v in splits.sizes().items())
        raise UserError(f"data.path: {d.source} data at {d.path!r} gives empty split(s) {', '.join(empty)} "
                        f"({sizes}); every split must hold images")
    return splits


def _max_label(ds: Dataset) -> int:
    base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, slice(None))
    return int(np.asarray(base.labels)[idx].max())


def stratified_partition(labels: np.ndarray, test_fraction: float,
                         val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (test, val, train) sorted indices into `labels`: per class, round(n_c * fraction) rows each (at least
    one where the fraction is non-zero), chosen by fixed generators independent of any seed."""
    rng_test, rng_val = np.random.default_rng(_TEST_RNG), np.random.default_rng(_VAL_RNG)
    test, val = [], []
    for c in np.unique(labels):
        idx = rng_test.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(len(idx) * test_fraction)) if test_fraction > 0 else 0
        test.extend(idx[:n_test].tolist())
        rest = rng_val.permutation(idx[n_test:])
        n_val = max(1, round(len(idx) * val_fraction)) if val_fraction > 0 else 0
        val.extend(rest[:n_val].tolist())
    test_idx, val_idx = np.sort(np.array(test, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), np.concatenate([test_idx, val_idx]))
    return test_idx, val_idx, train_idx


def labeled_subset(labels: np.ndarray, fraction: float) -> np.ndarray:
    """Indices into `labels`: ceil(fraction * n_c) per class c (never all of a class, so the pool keeps images
    of every class where it can), fixed across trials and seeds."""
    rng = np.random.default_rng(_LABELED_RNG)
    out = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = max(1, math.ceil(len(idx) * fraction))
        out.extend(idx[: min(n, max(1, len(idx) - 1))].tolist())
    return np.sort(np.array(out, dtype=np.int64))
