"""Deterministic splits: pre-training (all non-held-out images), labelled subset, held-out test."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset, Subset

from simmim_ray.config import Config
from simmim_ray.data import sources
from simmim_ray.errors import UserError


@dataclass
class Splits:
    train: Dataset  # every non-held-out image; labels unused in pre-training
    labeled: Dataset  # `eval.labeled_fraction` of train, stratified by class
    test: Dataset  # held out: never seen in pre-training or fine-tuning
    num_classes: int
    has_masks: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build_splits(cfg: Config) -> Splits:
    d = cfg.data
    if d.source == "digits":
        recs = sources.DigitsRecords()
        train_idx, test_idx = _holdout(recs.labels, d.test_fraction, cfg.seed)
        train, test, labels = Subset(recs, train_idx), Subset(recs, test_idx), recs.labels[train_idx]
        has_masks, stats = True, sources.STATS["digits"]
    elif d.source == "cifar10":
        train = sources.cifar10_records(d.path, True, d.download)
        test = sources.cifar10_records(d.path, False, False)
        labels, has_masks, stats = train.labels, False, sources.STATS["cifar10"]
    elif d.source == "imagefolder":
        recs = sources.FolderRecords(d.path)
        train_idx, test_idx = _holdout(recs.labels, d.test_fraction, cfg.seed)
        train, test, labels = Subset(recs, train_idx), Subset(recs, test_idx), recs.labels[train_idx]
        has_masks, stats = False, sources.STATS["default"]
    else:
        table = sources.read_parquet_table(d.path, (d.image_column, d.label_column, d.mask_column))
        recs = sources.ParquetRecords(table, d.image_column, d.label_column, d.mask_column)
        held = recs.held_out(d.test_fraction)
        train_idx, test_idx = np.flatnonzero(~held), np.flatnonzero(held)
        train, test, labels = Subset(recs, train_idx), Subset(recs, test_idx), recs.labels[train_idx]
        has_masks, stats = recs.has_masks, sources.STATS["default"]
    if cfg.loss.fgbg_weight > 0 and not has_masks:
        raise UserError(f"loss.fgbg_weight: must be 0 for data.source={d.source!r}, which has no foreground "
                        f"masks, but got {cfg.loss.fgbg_weight}")
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"data.path: {d.source} data at {d.path!r} gives {len(train)} training and "
                        f"{len(test)} held-out images; both must be non-empty")
    lab_idx = labeled_subset(labels, cfg.eval.labeled_fraction, cfg.seed)
    return Splits(train=train, labeled=Subset(train, lab_idx), test=test,
                  num_classes=int(max(labels.max(), _max_label(test)) + 1), has_masks=has_masks,
                  mean=stats[0], std=stats[1])


def _max_label(ds: Dataset) -> int:
    base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, slice(None))
    return int(np.asarray(base.labels)[idx].max())


def _holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified held-out split, the same for every seed of the *data* (fixed 0) so trials compare."""
    del seed  # the held-out set must not move between trials with different seeds
    rng = np.random.default_rng(12345)
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.extend(idx[: max(1, round(len(idx) * fraction))].tolist())
    test_idx = np.sort(np.array(test, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def labeled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices into `labels`: ceil(fraction * n_c) per class c, fixed across trials (seed-independent)."""
    del seed
    rng = np.random.default_rng(54321)
    out = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out.extend(idx[: max(1, math.ceil(len(idx) * fraction))].tolist())
    return np.sort(np.array(out, dtype=np.int64))
