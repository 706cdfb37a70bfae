"""An image folder (<root>/<class>/**/<image>) one class at a time, so nothing holds the whole tree's listing.

torchvision's ImageFolder layout and class order, without its traps on odd trees:
- Links are followed, each real directory once, and a link that leads into another class folder (or back to the
  root) is not followed: a file belongs to the class it lies in, and a loop adds nothing (12 files stay 12).
- Only regular files of an image extension and at most MAX_IMAGE_BYTES count: a FIFO would block its reader
  forever, a huge "image" would be read whole into memory. Such files and dangling links are skipped, and counted.
"""
from __future__ import annotations

import os
import stat

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
MAX_IMAGE_BYTES = 256 * 1024 * 1024


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


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def class_files(root: str, cls: str, skipped: list[str] | None = None) -> list[str]:
    """Sorted '/'-separated paths, relative to `root`, of the image files of class `cls`. The real paths of the
    files left out (dangling links, FIFOs, too big) are appended to `skipped` when given."""
    root_real = os.path.realpath(root)
    own = os.path.realpath(os.path.join(root, cls))

    def foreign(real: str) -> bool:  # the root itself, or another class's folder: not this class's files
        return _inside(real, root_real) and not _inside(real, own)

    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls), followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen or foreign(os.path.realpath(dirpath)):
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in filenames:
            if not name.lower().endswith(IMG_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:  # a dangling link, a file gone since the listing
                st = None
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
                if skipped is not None:
                    skipped.append(os.path.realpath(path))
                continue
            if os.path.islink(path) and foreign(os.path.realpath(path)):
                continue  # another class's file (or one under the root): counted there
            out.append(f"{rel}/{name}")
    return sorted(out)


def read_file(path: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, else None. Opened without blocking and checked after
    opening, so a file swapped for a FIFO since the listing cannot hang the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
                return None
            return f.read(MAX_IMAGE_BYTES + 1)
        except OSError:
            return None
