"""Image folder / CIFAR-10 -> Parquet shards (`simmim-ray convert`) that `data.source=parquet` reads.

Columns: `image` (encoded bytes: PNG, or the source file's own JPEG/PNG bytes when they decode), `label` (int64),
and for CIFAR-10 `split` ("train" / "test", so its official test set stays the held-out split). Class names go
into the schema metadata (`classes`, JSON). Unreadable source images are skipped and counted, not fatal.
"""
from __future__ import annotations

import io
import json
import os

from simmim_ray.errors import PATH_CHARS, UserError, excerpt

DEFAULT_ROWS_PER_SHARD = 10_000


def convert(src: str, out: str, src_format: str, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> dict:
    """Writes the shards; returns {"rows", "shards", "skipped"}."""
    _check_out(out)
    if src_format == "imagefolder":
        rows, classes = _imagefolder_rows(src)
    else:
        rows, classes = _cifar10_rows(src)
    return _write(rows, out, rows_per_shard, classes, with_split=src_format == "cifar10")


def _check_out(out: str) -> None:
    from simmim_ray.paths import check_writable_dir

    shown = excerpt(out, PATH_CHARS)
    if os.path.isfile(out):
        raise UserError(f"convert OUT {shown} is a file; give a directory")
    check_writable_dir(out, "convert OUT")  # under a file, read-only, /proc: one line, before the source is read
    if os.path.isdir(out) and any(n.endswith(".parquet") for n in os.listdir(out)):
        # mixing shards from two conversions would silently duplicate or mislabel images
        raise UserError(f"convert OUT {shown} already holds Parquet files; give an empty or new directory")


def _imagefolder_rows(src: str):
    from simmim_ray.data.image_files import image_folder, read_image_file

    if not os.path.isdir(src):
        what = "is not a directory" if os.path.exists(src) else "does not exist"
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)}: image folder {what}")
    try:
        folder = image_folder(src)  # decoded below, so bad files are skipped, not fatal
    except OSError as e:
        raise UserError(f"convert SRC {excerpt(src, PATH_CHARS)} is not an image folder of <class>/<image> files "
                        f"({excerpt(str(e), 200)[1:-1]})") from None

    def rows():
        for _ in range(folder.skipped):  # links to nowhere, FIFOs, huge files: counted as unreadable
            yield None, 0, None
        for path, label in folder.samples:
            data = read_image_file(path)
            yield (None if data is None else _encode_file(data)), int(label), None

    return rows(), folder.classes


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

    fields = [pa.field("image", pa.binary()), pa.field("label", pa.int64())]
    if with_split:
        fields.append(pa.field("split", pa.string()))
    schema = pa.schema(fields, metadata={"classes": json.dumps(classes)})
    os.makedirs(out, exist_ok=True)
    shards = written = skipped = 0
    buf: dict[str, list] = {"image": [], "label": [], "split": []}

    def flush() -> None:
        nonlocal shards
        cols = {"image": buf["image"], "label": buf["label"]}
        if with_split:
            cols["split"] = buf["split"]
        pq.write_table(pa.table(cols, schema=schema), os.path.join(out, f"part-{shards:05d}.parquet"))
        shards += 1
        for v in buf.values():
            v.clear()

    for data, label, split in rows:
        if data is None:
            skipped += 1
            continue
        buf["image"].append(data)
        buf["label"].append(label)
        buf["split"].append(split)
        written += 1
        if len(buf["image"]) == rows_per_shard:
            flush()
    if buf["image"]:
        flush()
    if written == 0:
        raise UserError(f"convert: no readable images in the source ({skipped} unreadable)")
    return {"rows": written, "shards": shards, "skipped": skipped}
