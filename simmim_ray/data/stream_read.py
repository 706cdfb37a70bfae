"""Reading one unit's rows of one split (the rows a read task streams), by the same rule as the driver's scan.

A unit is a Parquet row group or a chunk of a class folder (scan.Unit). Its label column (or the folder listing)
gives every row's split from the row key; the image column is read only when the unit holds rows of the split,
and only those rows leave this function. Memory: one unit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from simmim_ray.data import folder_walk, rowkeys
from simmim_ray.data.parquet_files import filesystem, image_cell_bytes, join
from simmim_ray.data.scan import SPLITS, StreamPlan, Unit, folder_positions


@dataclass(frozen=True)
class Selection:
    """What a reader needs to pick its rows: a StreamPlan without its unit list (travels to every read task)."""
    source: str
    root: str  # data.path: names the filesystem
    base: str  # the directory (inside that filesystem) unit files are relative to
    image_column: str
    label_column: str
    mask_column: str
    test_fraction: float
    val_fraction: float
    thresholds: tuple[float, ...]
    has_split_column: bool

    @classmethod
    def of(cls, plan: StreamPlan) -> "Selection":
        return cls(plan.source, plan.root, plan.base, plan.image_column, plan.label_column, plan.mask_column,
                   plan.test_fraction, plan.val_fraction, tuple(plan.thresholds.tolist()), plan.has_split_column)

    def codes(self, fid, rows: np.ndarray, labels: np.ndarray, split_values) -> np.ndarray:
        u, v = rowkeys.positions(fid, rows)
        return rowkeys.split_codes(u, v, labels, split_values, self.test_fraction, self.val_fraction,
                                   np.asarray(self.thresholds))


def read_unit(sel: Selection, unit: Unit, split: str):
    """-> pyarrow Table (image: binary, label: int64[, mask: binary]) of the unit's rows in `split`, in file order."""
    code = SPLITS.index(split)
    if sel.source == "parquet":
        return _read_row_group(sel, unit, code)
    return _read_folder_chunk(sel, unit, code)


def _empty(with_mask: bool):
    import pyarrow as pa  # pyarrow on use: the CLI's data checks import this module

    cols = {"image": pa.array([], pa.binary()), "label": pa.array([], pa.int64())}
    if with_mask:
        cols["mask"] = pa.array([], pa.binary())
    return pa.table(cols)


def _read_row_group(sel: Selection, unit: Unit, code: int):
    import pyarrow as pa  # pyarrow on use: the CLI's data checks import this module
    import pyarrow.parquet as pq

    fs, _ = filesystem(sel.root)
    pf = pq.ParquetFile(fs.open_input_file(join(sel.base, unit.file)))
    cols = [sel.label_column] + (["split"] if sel.has_split_column else [])
    keys = pf.read_row_group(unit.part, columns=cols)
    labels = keys.column(sel.label_column).to_numpy().astype(np.int64, copy=False)
    split = keys.column("split").to_pylist() if sel.has_split_column else None
    rows = np.arange(unit.start, unit.start + len(labels))
    idx = np.flatnonzero(sel.codes(rowkeys.file_id(unit.file), rows, labels, split) == code)
    if not len(idx):
        return _empty(bool(sel.mask_column))
    data_cols = [sel.image_column] + ([sel.mask_column] if sel.mask_column else [])
    t = pf.read_row_group(unit.part, columns=data_cols).take(pa.array(idx))
    out = {"image": image_cell_bytes(t.column(sel.image_column)).cast(pa.binary()),
           "label": pa.array(labels[idx], pa.int64())}
    if sel.mask_column:
        out["mask"] = t.column(sel.mask_column).cast(pa.binary())
    return pa.table(out)


def _read_folder_chunk(sel: Selection, unit: Unit, code: int):
    import pyarrow as pa  # pyarrow on use: the CLI's data checks import this module

    files = folder_walk.class_files(sel.root, unit.file)[unit.start:unit.start + unit.rows]
    if not files:
        return _empty(False)
    u, v = folder_positions(files)
    labels = np.full(len(files), unit.label, dtype=np.int64)
    codes = rowkeys.split_codes(u, v, labels, None, sel.test_fraction, sel.val_fraction, np.asarray(sel.thresholds))
    idx = np.flatnonzero(codes == code)
    images = [folder_walk.read_file(os.path.join(sel.root, files[i])) for i in idx]
    return pa.table({"image": pa.array(images, pa.binary()), "label": pa.array(labels[idx], pa.int64())})


def read_units(sel: Selection, units: list[Unit], split: str):
    """Every row of `split` in `units`, unit by unit (the in-process stream and the tests; Ray Data reads each
    unit in its own task)."""
    for unit in units:
        t = read_unit(sel, unit, split)
        if t.num_rows:
            yield t


def sample_images(plan: StreamPlan, units: list[Unit], rows: int):
    """Yields (where, encoded bytes) for the first `rows` rows of each of `units`, whatever their split: what the
    up-front check decodes. Reads a few pages of a row group, not the whole of it."""
    import pyarrow.parquet as pq  # pyarrow on use: the CLI's data checks import this module

    for unit in units:
        if plan.source == "parquet":
            fs, _ = filesystem(plan.root)
            pf = pq.ParquetFile(fs.open_input_file(join(plan.base, unit.file)), pre_buffer=False,
                                buffer_size=1 << 20)
            batch = next(pf.iter_batches(batch_size=rows, row_groups=[unit.part], columns=[plan.image_column]))
            cells = image_cell_bytes(batch.column(0)).to_pylist()[:rows]
            for i, data in enumerate(cells):
                yield f"{unit.file} row {unit.start + i}", data
        else:
            files = folder_walk.class_files(plan.root, unit.file)[unit.start:unit.start + rows]
            for f in files:
                yield f, folder_walk.read_file(os.path.join(plan.root, f))