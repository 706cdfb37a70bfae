"""Image folder / CIFAR-10 -> Parquet shards (`simmim-ray convert`) that `data.source=parquet` reads.

Columns: `image` (encoded bytes: PNG, or the source file's own JPEG/PNG bytes when they decode), `label` (int64),
and for CIFAR-10 `split` ("train" / "test", so its official test set stays the held-out split). Class names go
into the schema metadata (`classes`, JSON). Source images training's decoder would refuse (unreadable, truncated,
a decompression bomb: data/image_decode.py) are skipped and counted, not fatal; the summary names the first.
SRC and OUT follow the path policy (paths.py): OUT is new or an empty directory, and lies outside SRC.

Streams, for any input size: an image folder is listed a few class folders at a time (their files interleaved, so
a row group holds several classes), and rows are written a row group at a time (at most ROW_GROUP_ROWS rows or
ROW_GROUP_BYTES of images); OUT may be a local directory or an object-store URI (s3://bucket/prefix).
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

from PIL import Image

from simmim_ray.data import folder_walk
from simmim_ray.data.folder_walk import MAX_IMAGE_BYTES
from simmim_ray.data.parquet_files import filesystem, join
from simmim_ray.data.sources import cifar10_records
from simmim_ray.errors import UserError, excerpt
from simmim_ray.paths import (DIRECTORY, FILE, MISSING, check_apart, check_writable_dir, is_uri, kind, require,
                              require_dir, shown)

DEFAULT_ROWS_PER_SHARD = 10_000
ROW_GROUP_ROWS = 1_000  # a row group is one read task of a streamed run (data/scan.py)
ROW_GROUP_BYTES = 64 * 1024 * 1024
CLASS_WINDOW = 16  # class folders listed (and interleaved) at a time
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8"


@dataclass(frozen=True)
class Skipped:
    """A source image that is not written: where it is and the rule it broke (one line for the summary)."""
    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def convert(src: str, out: str, src_format: str, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> dict:
    """Writes the shards; returns {"rows", "shards", "skipped", "first_skipped"}."""
    require_dir(src, f"convert SRC {shown(src)}")
    _check_out(out, src)
    if src_format == "imagefolder":
        rows, classes = _imagefolder_rows(src)
    else:
        rows, classes = _cifar10_rows(src)
    return _write(rows, out, rows_per_shard, classes, with_split=src_format == "cifar10")


def _check_out(out: str, src: str) -> None:
    """OUT is new or an empty directory (shards of two conversions mixed would duplicate or mislabel images), and
    lies outside SRC (shards written into an image folder are read back as a class)."""
    if is_uri(out):
        _check_out_uri(out)
        return
    label = f"convert OUT {shown(out)}"
    existing = require(out, label, "a directory", DIRECTORY, MISSING) == DIRECTORY
    check_apart(out, label, src, f"convert SRC {shown(src)}")
    if existing:
        with os.scandir(out) as it:
            first = next((e.name for e in it), None)
        if first is not None:
            raise UserError(f"{label} is not empty (it holds {excerpt(first)}); give an empty or new directory")
    check_writable_dir(out, "convert OUT")  # under a file, read-only, /proc: one line, before the source is read


def _check_out_uri(out: str) -> None:
    import pyarrow.fs as pafs  # pyarrow on use: the CLI imports this module at startup

    try:
        fs, base = filesystem(out)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types; the user needs one line
        raise UserError(f"convert OUT {shown(out)}: cannot list it: {str(e).splitlines()[0]}") from None
    if any(i.path.endswith(".parquet") for i in infos):
        raise UserError(f"convert OUT {shown(out)} already holds Parquet files; give an empty or new prefix")


def _imagefolder_rows(src: str):
    classes = folder_walk.class_names(src)
    if not classes:
        raise UserError(f"convert SRC {shown(src)} is not an image folder of <class>/<image> files "
                        f"(no class folder)")
    # every class listed once before any is written: labels are positions among the classes, so an empty folder
    # would be a label without images (10,000 empty folders, 10,000 classes), and two classes must not share files
    links: dict[str, list[str]] = {c: [] for c in classes}
    empty = [c for c in classes if not sum(1 for _ in folder_walk.iter_class_files(src, c, links=links[c]))]
    folder_walk.check_classes(src, links, "convert SRC")
    if empty:
        raise UserError(f"convert SRC {shown(src)}: {len(empty):,} class folder(s) hold no image file (first: "
                        f"{excerpt(empty[0])}); every class needs images ({', '.join(folder_walk.IMG_EXTENSIONS)})")

    def rows():
        for a in range(0, len(classes), CLASS_WINDOW):
            bad: list[str] = []  # links to nowhere, FIFOs, huge files: counted as unreadable
            lists = [(y, folder_walk.class_files(src, c, bad)) for y, c in enumerate(classes[a:a + CLASS_WINDOW], a)]
            for rel in bad:
                yield Skipped(rel, _not_read(os.path.join(src, rel))), 0, None
            for i in range(max(len(files) for _, files in lists)):
                for y, files in lists:
                    if i < len(files):
                        yield _encode_file(files[i], folder_walk.read_file(os.path.join(src, files[i]))), y, None

    return rows(), classes


def _not_read(path: str) -> str:
    k = kind(path)
    return f"more than {MAX_IMAGE_BYTES:,} bytes" if k == FILE else f"{k}, not a regular file"


def _cifar10_rows(src: str):
    if not os.path.isdir(os.path.join(src, "cifar-10-batches-py")):
        raise UserError(f"convert SRC {shown(src)}: no CIFAR-10 batches (expected "
                        f"{shown(src)[1:-1]}/cifar-10-batches-py/)")
    try:
        splits = [(name, cifar10_records(src, name == "train", download=False)) for name in ("train", "test")]
    except UserError as e:
        raise UserError(f"convert SRC {shown(src)}: {str(e).removeprefix('data.path: ')}") from None

    def rows():
        for name, recs in splits:
            for img, label in zip(recs.images, recs.labels, strict=True):
                yield _png(Image.fromarray(img)), int(label), name

    return rows(), ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _encode_file(where: str, data: bytes | None) -> bytes | Skipped:
    """Keeps PNG and JPEG bytes as they are (re-encoding JPEG to PNG would inflate it); other formats become 8-bit
    RGB PNG. What training's decoder refuses (image_decode.py: corrupt, truncated, a bomb, mode F) is skipped."""
    from simmim_ray.data.image_decode import ImageRefused, decode  # simplejpeg: not at the CLI's startup

    if data is None:
        return Skipped(where, "cannot be read")
    try:
        x = decode(data)
    except ImageRefused as e:
        return Skipped(where, str(e))
    if data.startswith((PNG_MAGIC, JPEG_MAGIC)):
        return data
    return _png(Image.fromarray(x.permute(1, 2, 0).numpy()))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write(rows, out: str, rows_per_shard: int, classes: list[str], with_split: bool) -> dict:
    import pyarrow as pa  # pyarrow on use: the CLI imports this module at startup
    import pyarrow.parquet as pq

    fields = [pa.field("image", pa.binary()), pa.field("label", pa.int64())]
    if with_split:
        fields.append(pa.field("split", pa.string()))
    schema = pa.schema(fields, metadata={"classes": json.dumps(classes)})
    fs, base = filesystem(out)
    fs.create_dir(base, recursive=True)
    shards = written = skipped = in_shard = 0
    writer = None
    buf: dict[str, list] = {"image": [], "label": [], "split": []}
    size = 0

    def flush_group() -> None:
        nonlocal writer, shards, size
        if not buf["image"]:
            return
        if writer is None:
            writer = pq.ParquetWriter(fs.open_output_stream(join(base, f"part-{shards:05d}.parquet")), schema)
            shards += 1
        cols = {"image": buf["image"], "label": buf["label"]}
        if with_split:
            cols["split"] = buf["split"]
        writer.write_table(pa.table(cols, schema=schema))
        for v in buf.values():
            v.clear()
        size = 0

    def close_shard() -> None:
        nonlocal writer, in_shard
        flush_group()
        if writer is not None:
            writer.close()
        writer, in_shard = None, 0

    first_skipped = None
    for data, label, split in rows:
        if isinstance(data, Skipped):
            skipped += 1
            first_skipped = first_skipped or data
            continue
        buf["image"].append(data)
        buf["label"].append(label)
        buf["split"].append(split)
        written += 1
        in_shard += 1
        size += len(data)
        if len(buf["image"]) >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
            flush_group()
        if in_shard == rows_per_shard:
            close_shard()
    close_shard()
    if written == 0:
        raise UserError(f"convert: no readable images in the source ({skipped} unreadable, first: {first_skipped})")
    return {"rows": written, "shards": shards, "skipped": skipped, "first_skipped": first_skipped}
