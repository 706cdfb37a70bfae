"""In-memory image records (digits, CIFAR-10): each item is (PIL RGB image, label, PIL 'L' foreground mask or None).

Records are split-agnostic; `splits.py` chooses which indices are pre-training, labelled and held-out. Parquet
and image folders stream instead (scan.py, stream_read.py, decode.py).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10

from simmim_ray.errors import UserError
from simmim_ray.paths import require_file_if_present

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
        from sklearn.datasets import load_digits  # scikit-learn (slow to import) for digits only

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
    if not download and not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
        raise UserError(f"data.path: no CIFAR-10 batches under {root!r} (expected cifar-10-batches-py/; "
                        f"pass --set data.download=true to fetch them)")
    for name, _ in CIFAR10.train_list + CIFAR10.test_list + [(CIFAR10.meta["filename"], None)]:
        # torchvision reads each whole (its checksum first): a FIFO would block it, a device never end
        require_file_if_present(os.path.join(root, CIFAR10.base_folder, name), f"data.path: CIFAR-10 file {name!r}")
    try:
        ds = CIFAR10(root, train=train, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise UserError(f"data.path: CIFAR-10 under {root!r} is unreadable: {e}") from None
    except OSError as e:  # the download: no network, no space, no permission
        raise UserError(f"data.path: cannot download CIFAR-10 into {root!r}: {str(e).splitlines()[0][:200]}"
                        ) from None
    return ArrayRecords(ds.data, np.array(ds.targets))
