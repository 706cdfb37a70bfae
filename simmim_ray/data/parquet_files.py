"""The Parquet files of `data.path` (a local path or a URI, a file or a directory tree) and their schema rules,
checked per file, so a bad file is named in one line before any worker starts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from simmim_ray.errors import UserError
from simmim_ray.paths import DIRECTORY, FILE, is_uri, kind, require, walk_files

if TYPE_CHECKING:  # pyarrow is imported where a file is opened: the core and the CLI's data checks import this module
    import pyarrow.parquet

# labels are class indices, and the scan and the classifier size per-class arrays by the largest one: ImageNet-21k
# has 21,841 classes, so a label far above this is a wrong column or a hash, not a class
MAX_LABEL = 1_000_000

_FS_CACHE: dict[str, tuple] = {}


def filesystem(path: str):
    """(pyarrow filesystem, path inside it), cached per process: an object-store client is not free to make."""
    import pyarrow.fs as pafs  # pyarrow on use (see TYPE_CHECKING above)

    if path not in _FS_CACHE:
        _FS_CACHE[path] = pafs.FileSystem.from_uri(path) if is_uri(path) else (pafs.LocalFileSystem(), path)
    return _FS_CACHE[path]


def parquet_files(path: str):
    """-> (fs, base directory, sorted paths of the .parquet files relative to it; a file path gives its name).
    A local directory is walked by the path policy's safe walk (paths.walk_files); a URI by its filesystem."""
    import pyarrow.fs as pafs  # pyarrow on use (see TYPE_CHECKING above)

    if not path or not is_uri(path):
        return _local_parquet_files(path)
    try:
        fs, base = filesystem(path)
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"data.path: Parquet path {path!r} does not exist")
        if info.type == pafs.FileType.File:
            parent, _, name = base.rpartition("/")
            return fs, parent or ("/" if base.startswith("/") else ""), [name]
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types; the user needs one line
        raise UserError(f"data.path: cannot read Parquet at {path!r}: {str(e).splitlines()[0]}") from None
    rels = [i.path[len(base.rstrip("/")) + 1:] for i in infos if i.type == pafs.FileType.File]
    return fs, base, _data_files(path, [r for r in rels if r.endswith(".parquet")])


def _local_parquet_files(path: str):
    import pyarrow.fs as pafs  # pyarrow on use (see TYPE_CHECKING above)

    label = f"data.path: Parquet path {path!r}"
    if require(path, label, "a .parquet file or a directory of them", FILE, DIRECTORY) == FILE:
        parent, name = os.path.split(path)
        return pafs.LocalFileSystem(), parent, [name]
    skipped: list[str] = []
    rels = [rel for rel, _ in walk_files(path, keep=lambda name: name.endswith(".parquet"), skipped=skipped)]
    bad = _data_files(path, skipped, required=False)
    if bad:  # a FIFO would block the reader; a dangling link is a file the data was meant to have
        raise UserError(f"data.path: {bad[0]} under {path!r} is {kind(os.path.join(path, bad[0]))}; every "
                        f".parquet file of a dataset must be a regular file")
    return pafs.LocalFileSystem(), path, _data_files(path, rels)


def _data_files(path: str, rels: list[str], required: bool = True) -> list[str]:
    """The data files among `rels`, sorted: writers' hidden files (_SUCCESS, .crc, _temporary/) are not data."""
    out = sorted(r for r in rels if not any(p.startswith((".", "_")) for p in r.split("/")))
    if required and not out:
        raise UserError(f"data.path: no .parquet files under {path!r}")
    return out


@dataclass
class ParquetFile:
    file: pyarrow.parquet.ParquetFile
    has_split: bool
    has_mask: bool
    metadata: dict | None


def open_parquet(fs, base: str, rel: str, d) -> ParquetFile:
    """Opens one file (its footer only) and checks its columns against `d` (the DataConfig)."""
    import pyarrow as pa  # pyarrow on use (see TYPE_CHECKING above)
    import pyarrow.parquet as pq

    name = rel
    try:
        pf = pq.ParquetFile(fs.open_input_file(join(base, rel)))
        schema = pf.schema_arrow
    except Exception as e:  # noqa: BLE001
        raise UserError(f"data.path: {name} is not a readable Parquet file: {str(e).splitlines()[0]}") from None
    for col, key in ((d.image_column, "data.image_column"), (d.label_column, "data.label_column")):
        if col not in schema.names:
            raise UserError(f"{key}: Parquet file {name} of {d.path!r} has no column {col!r} "
                            f"(columns: {', '.join(schema.names)})")
    img = schema.field(d.image_column).type
    if not (_is_bytes(img) or (pa.types.is_struct(img) and img.get_field_index("bytes") >= 0
                               and _is_bytes(img.field("bytes").type))):
        raise UserError(f"data.image_column: column {d.image_column!r} of {name} holds {img}; it must hold encoded "
                        f"image bytes (binary, or a struct with a binary `bytes` field)")
    lab = schema.field(d.label_column).type
    if not pa.types.is_integer(lab):
        raise UserError(f"data.label_column: column {d.label_column!r} of {name} holds {lab} values; labels must "
                        f"be integer class indices >= 0 (convert string or float labels to ints first)")
    has_split = "split" in schema.names and (pa.types.is_string(schema.field("split").type)
                                             or pa.types.is_large_string(schema.field("split").type))
    has_mask = d.mask_column in schema.names and _is_bytes(schema.field(d.mask_column).type)
    return ParquetFile(pf, has_split, has_mask, schema.metadata)


def join(base: str, rel: str) -> str:
    return f"{base.rstrip('/')}/{rel}" if base else rel


def _is_bytes(t) -> bool:
    import pyarrow as pa  # pyarrow on use (see TYPE_CHECKING above)

    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def label_array(col, name: str, start: int, column: str) -> np.ndarray:
    """A row group's labels as int64; refuses nulls and negative labels, naming the file and row."""
    if col.null_count:
        raise UserError(f"data.label_column: column {column!r} of {name} has {col.null_count} "
                        f"missing (null) label(s) in rows {start}-{start + len(col) - 1}; every row needs a label")
    y = col.to_numpy().astype(np.int64, copy=False)
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise UserError(f"data.label_column: label {int(y[i])} in row {start + i} of {name} is "
                        f"negative; `label >= 0` must hold (labels are class indices)")
    if len(y) and y.max() > MAX_LABEL:
        i = int(np.argmax(y))
        raise UserError(f"data.label_column: label {int(y[i])} in row {start + i} of {name} is too large; "
                        f"`label <= {MAX_LABEL:,}` must hold (labels are class indices 0..classes-1)")
    return y


def image_cell_bytes(col):
    """A pyarrow image column (binary, or a struct with `bytes` as HF datasets write) -> binary array."""
    import pyarrow as pa  # pyarrow on use (see TYPE_CHECKING above)
    import pyarrow.compute as pc

    if pa.types.is_struct(col.type):
        return pc.struct_field(col, "bytes")
    return col
