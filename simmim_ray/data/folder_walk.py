"""An image folder (<root>/<class>/**/<image>) one class at a time, so nothing holds the whole tree's listing.

torchvision's ImageFolder layout and class order, walked by the path policy's safe walk (paths.walk_files):
- A link that leads back into the tree (into another class folder, to the root, or within the class) is not
  followed: a file belongs to the class folder it really lies in, once, and a loop adds nothing (12 files stay
  12). A link out of the tree is followed, each real directory once; two classes must not reach the same files
  that way (`check_classes`), or one image would be two rows of two classes, and could land in two splits.
- Only regular files of an image extension and at most MAX_IMAGE_BYTES count: a FIFO would block its reader
  forever, a huge "image" would be read whole into memory. Such files and dangling links are skipped, and counted.
"""
from __future__ import annotations

import os
import stat

from simmim_ray.errors import UserError
from simmim_ray.paths import shared_target, shown, walk_files

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


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def iter_class_files(root: str, cls: str, skipped: list[str] | None = None, links: list[str] | None = None):
    """Yields the '/'-separated paths, relative to `root`, of the image files of class `cls`, directory by
    directory. Files left out (dangling links, FIFOs, too big) are appended to `skipped`; the real paths of links
    followed out of the tree to `links`."""
    for rel, st in walk_files(root, cls, _is_image, skipped, links):
        if st.st_size > MAX_IMAGE_BYTES:
            if skipped is not None:
                skipped.append(rel)
            continue
        yield rel


def class_files(root: str, cls: str, skipped: list[str] | None = None, links: list[str] | None = None) -> list[str]:
    """Sorted '/'-separated paths, relative to `root`, of the image files of class `cls` (see iter_class_files)."""
    return sorted(iter_class_files(root, cls, skipped, links))


def check_classes(root: str, links: dict[str, list[str]], key: str) -> None:
    """Refuses two classes that reach the same real folder or file through links (`links`: class -> the real paths
    its links led to); `key` starts the message (data.path, convert SRC)."""
    shared = shared_target([(real, cls) for cls, reals in links.items() for real in reals])
    if shared:
        real, a, b = shared
        raise UserError(f"{key}: class folders {a!r} and {b!r} of {shown(root)} both reach {shown(real)} through "
                        f"symbolic links; each image must belong to one class (link it into one class folder)")


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
