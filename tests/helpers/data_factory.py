"""Small generated data for tests: fake CIFAR-10 batches, tiny image folders, Parquet shards. No downloads.

Images carry a class-dependent pattern (a bright square whose position depends on the label), so a model can
learn something from them, but tests must not rely on accuracy on this data.
"""
from __future__ import annotations

import functools
import io
import os
import pickle

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pattern(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3]: noise plus a bright square placed by `label` (so classes differ)."""
    img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    q = max(1, size // 4)
    r, c = divmod(label % 16, 4)
    img[r * q:(r + 1) * q, c * q:(c + 1) * q] = 230
    return img


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_bytes() -> bytes:
    return b"this is not an image at all" * 4


def truncated_png(size: int = 16) -> bytes:
    data = png_bytes(pattern(0, size, np.random.default_rng(99)))
    return data[: len(data) // 2]


# ---- CIFAR-10 (torchvision's python pickle format) ---------------------------------------------------------
def write_fake_cifar10(root: str, per_batch: int = 10, n_test: int = 20, seed: int = 0) -> tuple[int, int]:
    """Writes root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as torchvision reads them.

    Returns (n_train, n_test). Labels cycle through 0..9, so every class is present in both splits.
    torchvision verifies the real files' MD5s; tests bypass that check (see conftest `fake_cifar10`).
    """
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(base, exist_ok=True)

    def batch(n: int, offset: int) -> dict:
        labels = [(offset + i) % 10 for i in range(n)]
        hwc = np.stack([pattern(y, 32, rng) for y in labels])  # [N, 32, 32, 3]
        data = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # torchvision: rows of CHW bytes
        return {"batch_label": b"fake", "labels": labels, "data": data, "filenames": [b"x.png"] * n}

    for i in range(1, 6):
        with open(os.path.join(base, f"data_batch_{i}"), "wb") as f:
            pickle.dump(batch(per_batch, i), f)
    with open(os.path.join(base, "test_batch"), "wb") as f:
        pickle.dump(batch(n_test, 0), f)
    with open(os.path.join(base, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return 5 * per_batch, n_test


# ---- image folders -----------------------------------------------------------------------------------------
def make_image_folder(root: str, classes: int = 3, per_class: int = 8, size: int = 16, corrupt: int = 1,
                      truncated: int = 1, seed: int = 0) -> dict:
    """root/class_<k>/img_<i>.png plus `corrupt` garbage files and `truncated` half-written PNGs (in class_0).

    Returns {"good": n readable, "bad": n unreadable, "classes": classes}.
    """
    rng = np.random.default_rng(seed)
    for k in range(classes):
        d = os.path.join(root, f"class_{k}")
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(d, f"img_{i:03d}.png"), "wb") as f:
                f.write(png_bytes(pattern(k, size, rng)))
    bad_dir = os.path.join(root, "class_0")
    for i in range(corrupt):
        with open(os.path.join(bad_dir, f"corrupt_{i}.png"), "wb") as f:
            f.write(corrupt_bytes())
    for i in range(truncated):
        with open(os.path.join(bad_dir, f"truncated_{i}.png"), "wb") as f:
            f.write(truncated_png(size))
    return {"good": classes * per_class, "bad": corrupt + truncated, "classes": classes}


# ---- Parquet shards ----------------------------------------------------------------------------------------
def write_parquet_shards(out_dir: str, n: int = 40, shards: int = 2, size: int = 16, classes: int = 4,
                         with_mask: bool = False, split: bool = False, corrupt_rows: int = 0,
                         image_column: str = "image", seed: int = 0) -> dict:
    """Writes `shards` files part-<k>.parquet with columns image (PNG bytes), label (int64), optional mask
    (PNG 'L' bytes, 255 = foreground) and optional split ("train" / "test": every 4th row is test).

    The first `corrupt_rows` rows hold garbage image bytes. Returns counts for assertions.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = {image_column: [], "label": []}
    if with_mask:
        rows["mask"] = []
    if split:
        rows["split"] = []
    for i in range(n):
        y = i % classes
        arr = pattern(y, size, rng)
        rows[image_column].append(corrupt_bytes() if i < corrupt_rows else png_bytes(arr))
        rows["label"].append(y)
        if with_mask:
            rows["mask"].append(png_bytes(np.where(arr.max(-1) > 200, 255, 0).astype(np.uint8), mode="L"))
        if split:
            rows["split"].append("test" if i % 4 == 3 else "train")
    os.makedirs(out_dir, exist_ok=True)
    per = -(-n // shards)
    for k in range(shards):
        part = {c: v[k * per:(k + 1) * per] for c, v in rows.items()}
        schema = {image_column: pa.binary(), "label": pa.int64(), "mask": pa.binary(), "split": pa.string()}
        table = pa.table({c: pa.array(v, type=schema[c]) for c, v in part.items()})
        pq.write_table(table, os.path.join(out_dir, f"part-{k:03d}.parquet"))
    n_test = sum(1 for i in range(n) if i % 4 == 3) if split else None
    return {"rows": n, "corrupt": corrupt_rows, "test": n_test, "classes": classes}


# ---- ImageNet-shaped folders -------------------------------------------------------------------------------
def make_jpeg_folder(root: str, classes: int = 5, per_class: int = 40, min_side: int = 40, max_side: int = 160,
                     seed: int = 0) -> dict:
    """root/n<8 digits>/<synset>_<i>.JPEG: JPEGs of varied sizes and aspect ratios, named as ImageNet's train
    folder is. Returns {"images": n, "classes": classes}."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        synset = f"n{1440764 + 1000 * k:08d}"
        d = os.path.join(root, synset)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            w, h = (int(x) for x in rng.integers(min_side, max_side + 1, 2))
            side = max(w, h)
            img = Image.fromarray(pattern(k, side, rng)).resize((w, h))
            img.save(os.path.join(d, f"{synset}_{i}.JPEG"), format="JPEG", quality=85)
    return {"images": classes * per_class, "classes": classes}


# ---- images as they are stored: any PNG bit depth, decompression bombs -------------------------------------
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: gray, gray + alpha, RGB, RGBA


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(arr: np.ndarray) -> bytes:
    """PNG bytes of `arr` exactly as given: uint8 or uint16 (8- or 16-bit samples), [H, W] gray or [H, W, C] with
    C = 2 (gray + alpha), 3 (RGB) or 4 (RGBA). Pillow writes no 16-bit colour PNG; this writes any."""
    import struct
    import zlib

    a = arr if arr.ndim == 3 else arr[..., None]
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    rows = a.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 on each row
    ihdr = struct.pack(">IIBBBBB", w, h, depth, PNG_COLOR_TYPES[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


@functools.lru_cache(maxsize=4)
def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit gray PNG of width x height black pixels: a few kB of zlib that decode to width x height bytes
    (Pillow stores a 1-bit pixel in a byte). Compressed a row block at a time: the whole is never in memory."""
    import struct
    import zlib

    z = zlib.compressobj(9)
    block = b"\x00" * ((1 + -(-width // 8)) * 1000)  # 1000 rows: a filter byte and the packed bits of each
    body = b"".join(z.compress(block[:len(block) * min(1000, height - r) // 1000]) for r in range(0, height, 1000))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body + z.flush())
            + _png_chunk(b"IEND", b""))


def jpeg_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A small JPEG whose frame header (SOF0) declares width x height: a decoder that trusts it allocates that."""
    import struct

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 20, 200)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
