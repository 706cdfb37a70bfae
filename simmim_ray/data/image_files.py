"""The files of an image folder (<root>/<class>/**/<image>), found safely: torchvision's ImageFolder layout and
class order, without its traps on odd trees.

- Symbolic links are followed, but each real directory is walked once and each real file counted once: a link to
  a parent directory (a loop) no longer turns 12 files into hundreds of "images".
- Only regular files are images: reading a FIFO blocks forever, a device may never end.
- A dangling link, or a file that vanished, is skipped and counted, not a crash.
- A file larger than MAX_IMAGE_BYTES is skipped and counted (it would be read whole into memory).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
MAX_IMAGE_BYTES = 256 * 1024 * 1024


@dataclass
class ImageFolderFiles:
    samples: list[tuple[str, int]]  # (path, class index), in class then path order
    classes: list[str]
    skipped: int  # links to nowhere, non-regular files, files too big


def image_folder(root: str) -> ImageFolderFiles:
    """Raises FileNotFoundError with torchvision's messages when there is no class folder or a class is empty.

    Two passes: first the files that physically sit under each class folder (no links followed), then what links
    add. A file thus belongs to the class it lies in, even when a link elsewhere (say, to the root) reaches it
    first; and a loop adds nothing, since every directory is walked once per pass."""
    classes = sorted(e.name for e in os.scandir(root) if _is_dir(e))
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {root}.")
    found: list[list[str]] = [[] for _ in classes]
    seen_files: set[tuple[int, int]] = set()
    bad: set[str] = set()  # real paths of dangling links, non-regular files, files too big (met once or more)
    for follow in (False, True):
        seen_dirs: set[tuple[int, int]] = set()
        for idx, cls in enumerate(classes):
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls), followlinks=follow):
                try:
                    st = os.stat(dirpath)
                except OSError:
                    dirnames[:] = []
                    continue
                if (st.st_dev, st.st_ino) in seen_dirs:  # reached again through a link: walked already
                    dirnames[:] = []
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                dirnames.sort()
                for name in sorted(filenames):
                    if name.lower().endswith(IMG_EXTENSIONS):
                        _add(os.path.join(dirpath, name), follow, found[idx], seen_files, bad)
    empty = [cls for cls, files in zip(classes, found) if not files]
    if empty:
        raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. "
                                f"Supported extensions are: {', '.join(IMG_EXTENSIONS)}")
    samples = [(path, idx) for idx, files in enumerate(found) for path in sorted(files)]
    return ImageFolderFiles(samples, classes, len(bad))


def _add(path: str, follow: bool, into: list[str], seen: set, bad: set) -> None:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:  # dangling or looping link, vanished file
        bad.add(os.path.realpath(path))
        return
    if stat.S_ISLNK(st.st_mode):  # first pass: links wait for the second
        return
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
        bad.add(os.path.realpath(path))
        return
    if (st.st_dev, st.st_ino) not in seen:
        seen.add((st.st_dev, st.st_ino))
        into.append(path)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def read_image_file(path: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, else None. Opened without blocking and checked after
    opening, so a file swapped for a FIFO since the walk cannot hang the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read(MAX_IMAGE_BYTES + 1)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
