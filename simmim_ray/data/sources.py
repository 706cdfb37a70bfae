"""Raw image records: each item is (PIL RGB image, label, PIL 'L' foreground mask or None), or None if unreadable.

Records are split-agnostic; `splits.py` chooses which indices are pre-training, labelled and held-out.
"""
from __future__ import annotations

import io
import os
import zlib

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from simmim_ray.errors import UserError

Record = tuple[Image.Image, int, "Image.Image | None"]

# Per-source normalisation (mean, std) per channel.
STATS = {
    "digits": ((0.3053,) * 3, (0.3760,) * 3),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "default": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class DigitsRecords(Dataset):
    """scikit-learn's bundled 8x8 digits (no download); the foreground mask is derived from the ink."""

    has_masks = True

    def __init__(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        self.images = (d.images / 16.0 * 255).round().astype(np.uint8)  # [N, 8, 8]
        self.labels = d.target.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Record:
        g = Image.fromarray(self.images[i], mode="L")
        fg = g.point(lambda v: 255 if v > 64 else 0)  # ink above 1/4 intensity is foreground
        return g.convert("RGB"), int(self.labels[i]), fg


class ArrayRecords(Dataset):
    """In-memory uint8 images [N, H, W, 3] (e.g. CIFAR-10 batches)."""

    has_masks = False

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Record:
        return Image.fromarray(self.images[i]), int(self.labels[i]), None


def cifar10_records(root: str, train: bool, download: bool) -> ArrayRecords:
    from torchvision.datasets import CIFAR10

    if not download and not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
        raise UserError(f"data.path: no CIFAR-10 batches under {root!r} (expected cifar-10-batches-py/; "
                        f"pass --set data.download=true to fetch them)")
    try:
        ds = CIFAR10(root, train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise UserError(f"data.path: CIFAR-10 under {root!r} is unreadable: {e}") from None
    except OSError as e:  # the download: no network, no space, no permission
        raise UserError(f"data.path: cannot download CIFAR-10 into {root!r}: {str(e).splitlines()[0][:200]}"
                        ) from None
    return ArrayRecords(ds.data, np.array(ds.targets))


def decode_image(data: bytes | None) -> Image.Image | None:
    """PNG/JPEG bytes -> RGB image, or None when the bytes are corrupt or truncated."""
    if not data:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # force the full decode so truncation is caught here, not in a transform
        return img.convert("RGB")
    except Exception:  # noqa: BLE001 - any decoder failure means "skip and count"
        return None


class FolderRecords(Dataset):
    """torchvision ImageFolder layout (root/<class>/<image>); unreadable files come back as None."""

    has_masks = False

    def __init__(self, root: str) -> None:
        from simmim_ray.data.image_files import image_folder

        if not os.path.isdir(root):
            raise UserError(f"data.path: image folder {root!r} does not exist")
        try:
            # links followed once, FIFOs and dangling links skipped (data/image_files.py); decoded in __getitem__
            self.folder = image_folder(root)
        except OSError as e:
            raise UserError(f"data.path: {root!r} is not an image folder of <class>/<image> files ({e})") from None
        self.labels = np.array([label for _, label in self.folder.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, i: int) -> Record | None:
        from simmim_ray.data.image_files import read_image_file

        path, label = self.folder.samples[i]
        img = decode_image(read_image_file(path))
        return None if img is None else (img, int(label), None)


class ParquetRecords(Dataset):
    """Parquet table with encoded image bytes, an int label and an optional encoded mask (local path or URI)."""

    def __init__(self, table, image_column: str, label_column: str, mask_column: str) -> None:
        self.images = table.column(image_column).to_pylist()
        self.labels = np.array(table.column(label_column).to_pylist(), dtype=np.int64)
        self.masks = table.column(mask_column).to_pylist() if mask_column in table.column_names else None
        self.has_masks = self.masks is not None
        split = table.column("split").to_pylist() if "split" in table.column_names else None
        self.split = None if split is None else np.array(split)

    def __len__(self) -> int:
        return len(self.labels)

    def assign(self, test_fraction: float, val_fraction: float) -> np.ndarray:
        """Per row "test" | "val" | "train", row-locally (`split_of`), so a streaming reader that sees one shard
        decides exactly as this in-memory reader does."""
        split = self.split if self.split is not None else [None] * len(self.images)
        return np.array([split_of(image_bytes(r), v, test_fraction, val_fraction)
                         for r, v in zip(self.images, split)])

    def __getitem__(self, i: int) -> Record | None:
        raw = self.images[i]
        img = decode_image(image_bytes(raw))
        if img is None:
            return None
        fg = None
        if self.masks is not None:
            m = decode_image(self.masks[i])
            fg = None if m is None else m.convert("L")
        return img, int(self.labels[i]), fg


def image_bytes(raw) -> bytes | None:
    """A Parquet image cell: raw bytes, or a {"bytes": ...} struct as HF datasets write."""
    return raw.get("bytes") if isinstance(raw, dict) else raw


def row_hash(data: bytes | None) -> float:
    """A row's position in [0, 1), from its image bytes alone."""
    return zlib.crc32(data or b"") % 10_000 / 10_000


def split_of(data: bytes | None, split_value: str | None, test_fraction: float, val_fraction: float) -> str:
    """One row's split. A `split` column decides test ("test") and validation ("val" / "validation"); its other
    rows, and every row without the column, are placed by `row_hash`: test below `test_fraction` (only without
    the column), validation in the next `val_fraction`."""
    u = row_hash(data)
    if split_value is not None:
        if split_value == "test":
            return "test"
        return "val" if split_value in ("val", "validation") or u < val_fraction else "train"
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def read_parquet_table(path: str, columns: tuple[str, str, str]):
    """Read a Parquet file or directory (local path or URI) through pyarrow filesystems."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    image_column, label_column, mask_column = columns
    try:
        fs, root = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"data.path: Parquet path {path!r} does not exist")
        table = pads.dataset(root, filesystem=fs, format="parquet").to_table()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types; the user needs one line
        raise UserError(f"data.path: cannot read Parquet at {path!r}: {str(e).splitlines()[0]}") from None
    for col, key in ((image_column, "data.image_column"), (label_column, "data.label_column")):
        if col not in table.column_names:
            raise UserError(f"{key}: Parquet at {path!r} has no column {col!r} "
                            f"(columns: {', '.join(table.column_names)})")
    return table
