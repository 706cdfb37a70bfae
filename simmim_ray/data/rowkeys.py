"""Where a streamed row goes (pre-training pool, labelled, validation, test), decided from its row key alone.

A row's key is (the file's path relative to `data.path`, the row's index in that file); an image folder's file is
one row (index 0). The driver's label scan and every streaming reader compute it without reading an image: the
scan from file metadata and the label column, a reader from the row group it reads. The key does not depend on
where the data lives (a local copy and its S3 copy split alike), nor on how Ray Data blocks or shards the stream.

Two independent positions in [0, 1) come from the key: `u` places the row in test / validation / training, `v`
ranks the training rows of a class for the labelled subset (`labelled.py` turns the ranks into one threshold per
class). Both come from a 64-bit mix (splitmix64), vectorised over the rows of a file.
"""
from __future__ import annotations

import hashlib

import numpy as np

PRETRAIN, LABELED, VAL, TEST = 0, 1, 2, 3  # split codes, in the order of splits.SPLITS
TRAIN = -1  # a training row before the labelled subset is chosen (pre-training pool or labelled)
_SALT_U, _SALT_V = 0x5EED_0001, 0x5EED_0002
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def file_id(relpath: str) -> int:
    """A file's 64-bit identity: its path relative to the dataset root, '/'-separated."""
    return int.from_bytes(hashlib.blake2b(relpath.encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps around, as the mix intends
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def positions(fid, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v): two independent positions in [0, 1) for the rows `rows` (indices within the file `fid`, one id
    or one per row)."""
    rows = np.asarray(rows, dtype=np.uint64)
    fid = np.asarray(fid, dtype=np.uint64)
    out = []
    for salt in (_SALT_U, _SALT_V):
        h = _mix(rows ^ _mix(fid ^ np.uint64(salt)))
        out.append((h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)
    return out[0], out[1]


def holdout_codes(u: np.ndarray, split_values, test_fraction: float, val_fraction: float) -> np.ndarray:
    """TEST / VAL / TRAIN per row. A `split` column (`split_values`, strings or None) decides test ("test") and
    validation ("val" / "validation"); its other rows, and every row without the column, are placed by `u`: test
    below `test_fraction` (only without the column), validation in the next `val_fraction`."""
    codes = np.full(len(u), TRAIN, dtype=np.int8)
    if split_values is None:
        codes[u < test_fraction + val_fraction] = VAL
        codes[u < test_fraction] = TEST
        return codes
    s = np.asarray(split_values, dtype=object)
    codes[(u < val_fraction) | (s == "val") | (s == "validation")] = VAL
    codes[s == "test"] = TEST
    return codes


def split_codes(u: np.ndarray, v: np.ndarray, labels: np.ndarray, split_values, test_fraction: float,
                val_fraction: float, thresholds: np.ndarray) -> np.ndarray:
    """PRETRAIN / LABELED / VAL / TEST per row: `holdout_codes`, then a training row of class c is labelled when
    its `v` is below `thresholds[c]` (labelled.LabeledSelector)."""
    codes = holdout_codes(u, split_values, test_fraction, val_fraction)
    train = codes == TRAIN
    lab = np.zeros(len(u), dtype=bool)
    idx = np.flatnonzero(train)
    if len(idx):
        y = np.asarray(labels)[idx]
        known = (y >= 0) & (y < len(thresholds))
        lab[idx[known]] = v[idx[known]] < thresholds[y[known]]
    codes[train] = PRETRAIN
    codes[lab] = LABELED
    return codes
