"""The labelled subset of a streamed dataset: one threshold per class, from one pass over the label column.

The in-memory rule (splits.labeled_subset) takes k_c = ceil(fraction * n_c) of the n_c training rows of class c
(never all of them). Streamed, the rows of class c with the k_c smallest `v` (rowkeys.positions) are labelled,
so the whole choice is a threshold t_c: a row is labelled when v < t_c. Finding t_c needs the k_c-th smallest v
of the class, not every row: each class keeps its K smallest values (exact whenever k_c <= K) and, once it has
more than 2K training rows, a histogram of v in B bins (t_c then falls on a bin edge: k_c is met or exceeded by
at most one bin's rows, and the count stays exact). Memory: at most classes x (2K + B) numbers, whatever the
number of rows.
"""
from __future__ import annotations

import math

import numpy as np

K = 1024
BINS = 4096


class _Class:
    __slots__ = ("n", "chunks", "held", "cutoff", "hist")

    def __init__(self) -> None:
        self.n = 0  # training rows seen
        self.chunks: list[np.ndarray] = []  # candidate values (v < cutoff), not yet merged
        self.held = 0  # values in chunks
        self.cutoff = 1.0  # the K-th smallest v so far once pruned: larger values cannot be among the K smallest
        self.hist: np.ndarray | None = None  # counts of v per bin, kept once the class has been pruned

    def values(self) -> np.ndarray:
        vals = np.concatenate(self.chunks) if self.chunks else np.zeros(0)
        self.chunks = [vals]
        return vals

    def prune(self) -> None:
        vals = self.values()
        if self.hist is None:  # the first prune: every value of the class is still here
            self.hist = np.bincount(_bins(vals), minlength=BINS).astype(np.int64)
        vals = np.partition(vals, K - 1)[:K]
        self.chunks, self.held, self.cutoff = [vals], len(vals), float(vals.max())


def _bins(v: np.ndarray) -> np.ndarray:
    return np.minimum((v * BINS).astype(np.int64), BINS - 1)


class LabeledSelector:
    """Feed it the training rows' labels and `v` (any order, any chunking); then `thresholds(fraction)`."""

    def __init__(self) -> None:
        self.classes: dict[int, _Class] = {}

    def add(self, labels: np.ndarray, v: np.ndarray) -> None:
        labels, v = np.asarray(labels, dtype=np.int64), np.asarray(v, dtype=np.float64)
        if not len(labels):
            return
        order = np.lexsort((v, labels))
        labels, v = labels[order], v[order]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(labels)]):
            c = self.classes.setdefault(int(labels[a]), _Class())
            seg = v[a:b]
            c.n += len(seg)
            if c.hist is not None:
                c.hist += np.bincount(_bins(seg), minlength=BINS)
            keep = seg[seg < c.cutoff] if c.cutoff < 1.0 else seg
            if len(keep):
                c.chunks.append(keep)
                c.held += len(keep)
            if c.held > 2 * K:
                c.prune()

    def counts(self) -> dict[int, int]:
        return {y: c.n for y, c in self.classes.items()}

    def thresholds(self, fraction: float, num_classes: int) -> tuple[np.ndarray, dict[int, int]]:
        """-> (t [num_classes]: a training row of class y is labelled when v < t[y]; labelled rows per class)."""
        t = np.zeros(num_classes, dtype=np.float64)
        chosen: dict[int, int] = {}
        for y, c in sorted(self.classes.items()):
            k = target(c.n, fraction)
            vals = np.sort(c.values())
            if k <= len(vals):  # exact: the k smallest values of the class
                t[y], chosen[y] = float(np.nextafter(vals[k - 1], 2.0)), k
            else:  # the first bin edge with at least k rows below it
                cum = np.cumsum(c.hist)
                b = int(np.searchsorted(cum, k))
                t[y], chosen[y] = (b + 1) / BINS, int(cum[b])
        return t, chosen


def target(n: int, fraction: float) -> int:
    """The in-memory rule: ceil(fraction * n) rows, at least one, and never every row of a class of two or more."""
    return min(max(1, math.ceil(n * fraction)), max(1, n - 1))
