"""User paths: one policy for every local path a command reads or writes, checked on the driver before Ray starts,
and one safe walk of the trees we read (image folders, Parquet datasets).

Ray runs workers in their own working directories (and on other machines), so a relative path means something
else there: every local path the user gives becomes absolute here, and what reaches a worker is absolute or a URI.

The policy (URIs, s3:// and gs://, are left to their filesystems):
- a path is never empty: an unset shell variable must not quietly mean the default, or "here";
- what is read as a file is a regular file, what is read or written as a directory is one: a FIFO blocks its
  reader forever, a device never ends, and a link loop or a dangling link is named as such;
- an output lies outside its inputs and they outside it: an output inside an image folder is read back as a class,
  shards written into a Parquet dataset as more data, and writing around an input would change it;
- a walk (`walk_files`) visits each real directory once, follows no link that leads back into the tree (what it
  points to is walked under its own name) and yields only regular files, each once: a loop adds nothing.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator

from simmim_ray.config import Config
from simmim_ray.errors import PATH_CHARS, UserError, excerpt

NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits, in bytes
# what `kind` returns: a regular file, a directory, nothing there; anything else is a phrase for messages
FILE, DIRECTORY, MISSING = "a file", "a directory", "missing"
DATA_PATHS = {"imagefolder": "an image folder", "parquet": "a Parquet file or directory", "cifar10": "a CIFAR-10 root"}


def is_uri(path: str) -> bool:
    return "://" in path


def shown(path: str) -> str:
    return excerpt(path, PATH_CHARS)


def absolute(path: str, flag: str = "path") -> str:
    """`~` expanded and made absolute against this process's directory; "" and URIs unchanged."""
    if not path or is_uri(path):
        return path
    if not path.isprintable():  # a NUL makes every os call raise ValueError; line breaks break messages
        raise UserError(f"{flag} {excerpt(path, PATH_CHARS)} must not hold control characters")
    return os.path.abspath(os.path.expanduser(path))


def nonempty(value: str, flag: str, what: str) -> str:
    """`value`, unless it is empty or blank."""
    if not value.strip():
        raise UserError(f"{flag} must name {what}, but got an empty value")
    return value


def kind(path: str) -> str:
    """What `path` is, links followed: FILE, DIRECTORY, MISSING, or a phrase naming what else it is."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # a NUL in the path
        return MISSING
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop"
        return "a broken symbolic link" if os.path.islink(path) else MISSING
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIRECTORY
    return "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"


def require(path: str, label: str, want: str, *allowed: str) -> str:
    """-> kind(path) when it is one of `allowed`; else one line: `label` does not exist, or is what it is."""
    k = kind(path)
    if k in allowed:
        return k
    if k == MISSING:
        raise UserError(f"{label} does not exist")
    raise UserError(f"{label} is {k}; give {want}")


def require_file(path: str, label: str, want: str = "a file") -> None:
    require(path, label, want, FILE)


def require_dir(path: str, label: str) -> None:
    require(path, label, "a directory", DIRECTORY)


def require_file_if_present(path: str, label: str) -> None:
    """A file a command will create, write or read if it is there: absent, or a regular file (a FIFO would block
    the reader or writer forever)."""
    require(path, label, "a file", FILE, MISSING)


def inside(path: str, folder: str) -> bool:
    """`path` is `folder` or lies under it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_apart(output: str, output_label: str, data: str, data_label: str) -> None:
    """Refuses an output at or inside an input (it would be read back as data), and an input inside an output
    (writing the output would change it). Local paths only; links resolved, so an alias is caught too."""
    if not output or not data or is_uri(output) or is_uri(data):
        return
    out, src = os.path.realpath(output), os.path.realpath(data)
    if out == src:
        raise UserError(f"{output_label} and {data_label} are the same directory; an output must lie outside its "
                        f"input")
    if inside(out, src):
        raise UserError(f"{output_label} lies inside {data_label}; an output must lie outside its input (it would "
                        f"be read back as data)")
    if inside(src, out):
        raise UserError(f"{data_label} lies inside {output_label}; an input must lie outside the output (writing "
                        f"the output would change it)")


def shared_target(owned: list[tuple[str, str]]) -> tuple[str, str, str] | None:
    """(real path, owner a, owner b) when two owners (class folders) reach the same real path, or one inside the
    other, through their links; None when every owner's targets are its own. `owned`: (real path, owner)."""
    chain: list[tuple[list[str], str]] = []  # targets nested in one another, outermost first
    for parts, owner in sorted((real.split(os.sep), owner) for real, owner in owned):  # parents before children
        while chain and chain[-1][0] != parts[:len(chain[-1][0])]:
            chain.pop()
        if chain and chain[-1][1] != owner:
            return os.sep.join(parts), chain[-1][1], owner
        chain.append((parts, owner))
    return None


def walk_files(root: str, sub: str = "", keep: Callable[[str], bool] = lambda name: True,
               skipped: list[str] | None = None,
               links: list[str] | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Yields ('/'-separated path relative to `root`, stat) of each regular file under root/sub whose name `keep`
    accepts, each real file once, directory by directory in sorted order.

    A link that leads back into `root`'s tree is not followed (what it points to is listed under its own name, or
    belongs to another folder of the tree); a link that leads out of it is, each real directory once, and its
    real path is appended to `links`. Names `keep` accepts that are no regular file (FIFOs, sockets, devices,
    dangling links, link loops) are appended to `skipped`, relative to `root`.
    """
    tree = os.path.realpath(root)
    start = os.path.join(root, sub) if sub else root
    if sub and not _follow(start, tree, links):  # a second name for a folder of the tree: its files are that folder's
        return
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()  # hard links, and links from outside to one file
    for dirpath, dirnames, filenames in os.walk(start, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = [name for name in sorted(dirnames) if _follow(os.path.join(dirpath, name), tree, links)]
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        for name in sorted(filenames):  # sorted: which of two names of one file is kept must not vary
            if not keep(name):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except (OSError, ValueError):  # a dangling link, a loop, a file gone since the listing
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                if skipped is not None:
                    skipped.append(prefix + name)
                continue
            if not _follow(path, tree, links) or (st.st_dev, st.st_ino) in seen_files:
                continue
            seen_files.add((st.st_dev, st.st_ino))
            yield prefix + name, st


def _follow(path: str, tree: str, links: list[str] | None) -> bool:
    """Whether a walk follows `path`: anything but a link into `tree`; a link out of it is recorded."""
    if not os.path.islink(path):
        return True
    real = os.path.realpath(path)
    if inside(real, tree):
        return False
    if links is not None:
        links.append(real)
    return True


def resolve_config_paths(cfg: Config) -> Config:
    """`cfg` with `data.path` absolute (sources that read a path); the config the workers get."""
    if cfg.data.source == "digits":
        return cfg
    nonempty(cfg.data.path, "data.path", DATA_PATHS.get(cfg.data.source, "a path"))
    path = absolute(cfg.data.path, "data.path:")
    return cfg if path == cfg.data.path else cfg.with_overrides({"data.path": path})


def check_apart_from_data(output: str, output_label: str, cfg: Config) -> None:
    """check_apart against `data.path`, for the sources that read one."""
    if cfg.data.source != "digits":
        check_apart(output, output_label, cfg.data.path, f"data.path {shown(cfg.data.path)}")


def check_writable_dir(path: str, flag: str) -> str:
    """-> `path` made absolute. Refuses a path that is (or lies under) anything but a directory, and one this
    process cannot create or write in (read-only, permissions, /proc): tried by creating and removing a temporary
    directory there."""
    nonempty(path, flag, "a directory")
    path = absolute(path, flag)
    label = f"{flag} {shown(path)}"
    if any(len(part.encode()) > NAME_MAX for part in path.split(os.sep)) or len(path.encode()) > PATH_MAX:
        raise UserError(f"{label} is too long (names of at most {NAME_MAX} bytes, {PATH_MAX} in all)")
    existing = path
    while not os.path.lexists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    k = kind(existing)
    if k != DIRECTORY:
        where = "is" if existing == path else f"lies under {shown(existing)}, which is"
        raise UserError(f"{label} {where} {'not a directory' if k == MISSING else k}; give a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".simmim-write-check-", dir=existing)
    except OSError as e:
        raise UserError(f"{label} cannot be written: {e.strerror or type(e).__name__} "
                        f"(in {shown(existing)})") from None
    shutil.rmtree(probe, ignore_errors=True)
    return path
