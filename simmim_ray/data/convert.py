"""Image folder / CIFAR-10 -> Parquet shards (`simmim-ray convert`) that `data.source=parquet` reads.

Columns: `image` (encoded bytes: PNG, or the source file's own JPEG/PNG bytes when they decode), `label` (int64),
and for CIFAR-10 `split` ("train" / "test", so its official test set stays the held-out split). Class names go
into the schema metadata (`classes`, JSON). Unreadable source images are skipped and counted, not fatal.

Streams, for any input size: an image folder is listed a few class folders at a time (their files interleaved, so
a row group holds several classes), and rows are written a row group at a time (at most ROW_GROUP_ROWS rows or
ROW_GROUP_BYTES of images); OUT may be a local directory or an object-store URI (s3://bucket/prefix).
"""
from __future__ import annotations

import io
import json
import os

from simmim_ray.errors import PATH_CHARS, UserError, excerpt

DEFAULT_ROWS_PER_SHARD = 10_000
ROW_GROUP_ROWS = 1_000  # a row group is one read task of a streamed run (data/scan.py)
ROW_GROUP_BYTES = 64 * 1024 * 1024
CLASS_WINDOW = 16  # class folders listed (and interleaved) at a time


def convert(src: str, out: str, src_format: str, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> dict:
    """Writes the shards; returns {"rows", "shards", "skipped"}."""
    _check_out(out)
    if src_format == "imagefolder":
        rows, classes = _imagefolder_rows(src)
    else:
        rows, classes = _cifar10_rows(src)
    return _write(rows, out, rows_per_shard, classes, with_split=src_format == "cifar10")


def _check_out(out: str) -> None:
    if "://" in out:
        _check_out_uri(out)
        return
    from simmim_ray.paths import check_writable_dir

    shown = excerpt(out, PATH_CHARS)
    if os.path.isfile(out):
        raise UserError(f"convert OUT {shown} is a file; give a directory")
    check_writable_dir(out, "convert OUT")  # under a file, read-only, /proc: one line, before the source is read
    if os.path.isdir(out) and any(n.endswith(".parquet") for n in os.listdir(out)):
        # mixing shards from two conversions would silently duplicate or mislabel images
        raise UserError(f"convert OUT {shown} already holds Parquet files; give an empty or new directory")


def _check_out_uri(out: str) -> None:
    import pyarrow.fs as pafs

    from simmim_ray.data.parquet_files import filesystem

    try:
        fs, base = filesystem(out)
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types; the user needs one line
        raise UserError(f"convert OUT {excerpt(out, PATH_CHARS)}: cannot list it: {str(e).splitlines()[0]}") from None
    if any(i.path.endswith(".parquet") for i in infos):
        raise UserError(f"convert OUT {excerpt(out, PATH_CHARS)} already holds Parquet files; give an empty or new "
                        f"prefix")


def _imagefolder_rows(src: str):
    from simmim_ray.data import folder_walk

    if not os.path.isdir(src):
        what = "is not a directory" if os.path.exists(src) else "does not exist"
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)}: image folder {what}")
    classes = folder_walk.class_names(src)
    if not classes:
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)} is not an image folder of <class>/<image> files "
                        f"(no class folder)")

    def rows():
        for a in range(0, len(classes), CLASS_WINDOW):
            bad: list[str] = []  # links to nowhere, FIFOs, huge files: counted as unreadable
            lists = [(y, folder_walk.class_files(src, c, bad)) for y, c in enumerate(classes[a:a + CLASS_WINDOW], a)]
            for _ in set(bad):
                yield None, 0, None
            for i in range(max(len(files) for _, files in lists)):
                for y, files in lists:
                    if i < len(files):
                        data = folder_walk.read_file(os.path.join(src, files[i]))
                        yield (None if data is None else _encode_file(data)), y, None

    return rows(), classes


def _cifar10_rows(src: str):
    from simmim_ray.data.sources import cifar10_records

    if not os.path.isdir(os.path.join(src, "cifar-10-batches-py")):
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)}: no CIFAR-10 batches (expected "
                        f"{excerpt(src, PATH_CHARS)[1:-1]}/cifar-10-batches-py/)")
    try:
        splits = [(name, cifar10_records(src, name == "train", download=False)) for name in ("train", "test")]
    except UserError as e:
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)}: {str(e).removeprefix('data.path: ')}") from None

    def rows():
        from PIL import Image

        for name, recs in splits:
            for img, label in zip(recs.images, recs.labels, strict=True):
                yield _png(Image.fromarray(img)), int(label), name

    return rows(), ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _encode_file(data: bytes) -> bytes | None:
    """Keeps JPEG/PNG bytes as they are (re-encoding JPEG to PNG would inflate it); other formats become PNG.
    None when the file does not decode."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        img.load()  # a full decode: truncated files fail here
    except Exception:  # noqa: BLE001 - any decoder failure means "skip and count"
        return None
    if fmt in ("PNG", "JPEG"):
        return data
    return _png(img.convert("RGB"))


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write(rows, out: str, rows_per_shard: int, classes: list[str], with_split: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simmim_ray.data.parquet_files import filesystem, join

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

    for data, label, split in rows:
        if data is None:
            skipped += 1
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
        raise UserError(f"convert: no readable images in the source ({skipped} unreadable)")
    return {"rows": written, "shards": shards, "skipped": skipped}
