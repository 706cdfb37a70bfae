"""An image folder (<root>/<class>/**/<image>) one class at a time, so nothing holds the whole tree's listing.

Class folders and the files under each are sorted (torchvision's ImageFolder order). Links to directories are
followed, each real directory once (a link back to a parent is no loop); only regular files with an image
extension count: a FIFO or a dangling link is left out of the listing, so no reader ever blocks on one.
"""
from __future__ import annotations

import os
import stat

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
MAX_IMAGE_BYTES = 256 * 1024 * 1024  # a larger "image" would be read whole into a worker's memory


def class_names(root: str) -> list[str]:
    """Sorted names of the class folders directly under `root`."""
    out = []
    with os.scandir(root) as it:
        for e in it:
            try:
                if e.is_dir():
                    out.append(e.name)
            except OSError:
                continue
    return sorted(out)


def class_files(root: str, cls: str) -> list[str]:
    """Sorted '/'-separated paths, relative to `root`, of the image files under `root/cls`."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls), followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in filenames:
            if not name.lower().endswith(IMG_EXTENSIONS):
                continue
            try:
                if not stat.S_ISREG(os.stat(os.path.join(dirpath, name)).st_mode):
                    continue
            except OSError:  # a dangling link, a file gone since the listing
                continue
            out.append(f"{rel}/{name}")
    return sorted(out)


def read_file(path: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, else None (never blocks: a file swapped for a FIFO
    since the listing is opened without waiting and refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
                return None
            return f.read()
        except OSError:
            return None
