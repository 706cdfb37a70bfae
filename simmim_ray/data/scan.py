"""The driver's label scan of a streamed source (Parquet, image folder): counts, classes and the labelled
thresholds, from the label column (or the folder names) alone. No image is read here.

The result, a `StreamPlan`, is small (one `Unit` per Parquet row group or per chunk of a class folder, one
threshold per class) and is all a streaming reader needs to pick its rows (stream_read.py): every process
decides a row's split from its key (rowkeys.py) exactly as this scan did.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from simmim_ray.config import Config
from simmim_ray.data import folder_walk, rowkeys
from simmim_ray.data.labelled import LabeledSelector
from simmim_ray.data.parquet_files import label_array, open_parquet, parquet_files
from simmim_ray.errors import UserError
from simmim_ray.paths import require_dir

SPLITS = ("pretrain", "labeled", "val", "test")
FOLDER_UNIT_FILES = 256  # image files per read task of an image folder
DEFAULT_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Unit:
    """What one read task reads: a Parquet row group, or a chunk of one class folder's sorted listing."""
    file: str  # Parquet: file path relative to the root; folder: the class folder's name
    part: int  # Parquet: row group index; folder: chunk index
    start: int  # index (in the file / in the class listing) of the unit's first row
    rows: int
    label: int  # folder: the class index; Parquet: -1 (labels come from the column)
    train: int  # rows in the pre-training pool or labelled split
    val: int
    test: int

    def holds(self, split: int) -> bool:
        return {rowkeys.VAL: self.val, rowkeys.TEST: self.test}.get(split, self.train) > 0


@dataclass
class StreamPlan:
    source: str  # parquet | imagefolder
    root: str  # data.path as given: a local path or a URI
    image_column: str
    label_column: str
    mask_column: str  # "" when the data has no masks
    test_fraction: float
    val_fraction: float
    thresholds: np.ndarray  # per class: a training row is labelled when its v is below this
    units: list[Unit]
    sizes: dict[str, int]  # rows per split
    num_classes: int
    classes: list[str]
    has_split_column: bool = False
    labeled_classes: int = 0  # classes with labelled rows
    base: str = ""  # Parquet: the directory (inside data.path's filesystem) that unit files are relative to
    mean: tuple[float, ...] = DEFAULT_STATS[0]
    std: tuple[float, ...] = DEFAULT_STATS[1]
    has_masks: bool = field(init=False)

    def __post_init__(self) -> None:
        self.has_masks = bool(self.mask_column)

    def units_for(self, split: str) -> list[Unit]:
        code = SPLITS.index(split)
        return [u for u in self.units if u.holds(code)]


class _Tally:
    """What the scan accumulates over units: per-unit counts, the labelled selector, the label range."""

    def __init__(self) -> None:
        self.selector = LabeledSelector()
        self.units: list[Unit] = []
        self.seen: set[int] = set()
        self.holdout = {rowkeys.VAL: 0, rowkeys.TEST: 0}

    def add(self, file: str, part: int, start: int, label: int, labels: np.ndarray, codes: np.ndarray,
            v: np.ndarray) -> None:
        train = codes == rowkeys.TRAIN
        self.selector.add(labels[train], v[train])
        self.seen.update(np.unique(labels).tolist())
        n_val, n_test = int((codes == rowkeys.VAL).sum()), int((codes == rowkeys.TEST).sum())
        self.holdout[rowkeys.VAL] += n_val
        self.holdout[rowkeys.TEST] += n_test
        self.units.append(Unit(file, part, start, len(labels), label, int(train.sum()), n_val, n_test))


def scan(cfg: Config) -> StreamPlan:
    d = cfg.data
    if d.source == "parquet":
        tally, classes, has_split, has_mask, base = _scan_parquet(cfg)
    elif d.source == "imagefolder":
        tally, classes = _scan_folder(cfg)
        has_split = has_mask = False
        base = d.path
    else:
        raise ValueError(f"{d.source!r} is not a streamed source")
    if len(tally.seen) < 2:
        shown = ", ".join(str(y) for y in sorted(tally.seen)) or "none"
        raise UserError(f"data.label_column: {d.source} data at {d.path!r} holds {len(tally.seen)} class (label "
                        f"{shown}); `classes >= 2` must hold to classify anything")
    num_classes = max(tally.seen) + 1
    thresholds, chosen = tally.selector.thresholds(cfg.eval.labeled_fraction, num_classes)
    n_lab = sum(chosen.values())
    n_train = sum(tally.selector.counts().values())
    sizes = {"pretrain": n_train - n_lab, "labeled": n_lab, "val": tally.holdout[rowkeys.VAL],
             "test": tally.holdout[rowkeys.TEST]}
    if not classes or len(classes) != num_classes:
        classes = [str(i) for i in range(num_classes)]
    return StreamPlan(d.source, d.path, d.image_column, d.label_column, d.mask_column if has_mask else "",
                      d.test_fraction, d.val_fraction, thresholds, tally.units, sizes, num_classes, classes,
                      has_split_column=has_split, labeled_classes=sum(1 for n in chosen.values() if n),
                      base=base)


_CACHE: dict[str, StreamPlan] = {}


def scan_cached(cfg: Config) -> StreamPlan:
    """`scan`, once per process for the same data and labelled fraction (the CLI's check, then the trainer)."""
    key = json.dumps([cfg.data.__dict__, cfg.eval.labeled_fraction], sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = scan(cfg)
    return _CACHE[key]


def _scan_parquet(cfg: Config):
    d = cfg.data
    fs, base, files = parquet_files(d.path)
    tally = _Tally()
    first = open_parquet(fs, base, files[0], d)
    has_split, has_mask = first.has_split, first.has_mask
    classes = []
    meta = first.metadata.get(b"classes") if first.metadata else None
    if meta:
        try:
            classes = [str(c) for c in json.loads(meta)]
        except ValueError:
            classes = []

    def labels_of(rel: str):
        pf = first if rel == files[0] else open_parquet(fs, base, rel, d)
        for has, col in ((pf.has_split, "split"), (pf.has_mask, d.mask_column)):
            if has != (has_split if col == "split" else has_mask):
                # a reader picks rows and columns by one rule for every file
                raise UserError(f"data.path: {rel} {'has' if has else 'lacks'} a {col!r} column, unlike "
                                f"{files[0]}; every Parquet file of a dataset must have the same columns")
        out, start = [], 0
        for g in range(pf.file.num_row_groups):
            cols = [d.label_column] + (["split"] if pf.has_split else [])
            t = pf.file.read_row_group(g, columns=cols)
            labels = label_array(t.column(d.label_column), rel, start, d.label_column)
            split = t.column("split").to_pylist() if pf.has_split else None
            out.append((g, start, labels, split))
            start += t.num_rows
        return rel, out

    # opening a file's footer is a round trip on an object store: a few files at a time
    with ThreadPoolExecutor(max_workers=8) as pool:
        for rel, groups in pool.map(labels_of, files):
            fid = rowkeys.file_id(rel)
            for g, start, labels, split in groups:
                u, v = rowkeys.positions(fid, np.arange(start, start + len(labels)))
                codes = rowkeys.holdout_codes(u, split, d.test_fraction, d.val_fraction)
                tally.add(rel, g, start, -1, labels, codes, v)
    return tally, classes, has_split, has_mask, base


def _scan_folder(cfg: Config):
    d = cfg.data
    require_dir(d.path, f"data.path: image folder {d.path!r}")
    classes = folder_walk.class_names(d.path)
    if len(classes) < 2:
        raise UserError(f"data.path: image folder {d.path!r} has {len(classes)} class folder(s) "
                        f"({', '.join(classes) or 'none'}); `classes >= 2` must hold to classify anything")
    tally = _Tally()
    links: dict[str, list[str]] = {}
    for y, cls in enumerate(classes):
        files = folder_walk.class_files(d.path, cls, links=links.setdefault(cls, []))
        if not files:
            raise UserError(f"data.path: class folder {cls!r} of {d.path!r} holds no image file "
                            f"({', '.join(folder_walk.IMG_EXTENSIONS)}); every class needs images")
        for part, a in enumerate(range(0, len(files), FOLDER_UNIT_FILES)):
            chunk = files[a:a + FOLDER_UNIT_FILES]
            u, v = folder_positions(chunk)
            codes = rowkeys.holdout_codes(u, None, d.test_fraction, d.val_fraction)
            tally.add(cls, part, a, y, np.full(len(chunk), y, dtype=np.int64), codes, v)
    folder_walk.check_classes(d.path, links, "data.path")
    return tally, classes


def folder_positions(relpaths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """An image folder's row key is the file's relative path (row 0 of a one-row file)."""
    fids = np.array([rowkeys.file_id(p) for p in relpaths], dtype=np.uint64)
    return rowkeys.positions(fids, np.zeros(len(relpaths), dtype=np.uint64))
