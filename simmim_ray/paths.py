"""User paths, resolved and checked once on the driver, before Ray starts.

Ray runs workers in their own working directories (and on other machines), so a relative path means something
else there: every local path the user gives becomes absolute here, and what reaches a worker is absolute or a URI.
Directories a command will write to are checked to be directories this process can write, without leaving
anything behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from simmim_ray.config import Config
from simmim_ray.errors import PATH_CHARS, UserError, excerpt

NAME_MAX, PATH_MAX = 255, 4096  # Linux's limits, in bytes


def is_uri(path: str) -> bool:
    return "://" in path


def absolute(path: str, flag: str = "path") -> str:
    """`~` expanded and made absolute against this process's directory; "" and URIs unchanged."""
    if not path or is_uri(path):
        return path
    if not path.isprintable():  # a NUL makes every os call raise ValueError; line breaks break messages
        raise UserError(f"{flag} {excerpt(path, PATH_CHARS)} must not hold control characters")
    return os.path.abspath(os.path.expanduser(path))


def resolve_config_paths(cfg: Config) -> Config:
    """`cfg` with `data.path` absolute (sources that read a path); the config the workers get."""
    if cfg.data.source == "digits" or not cfg.data.path:
        return cfg
    path = absolute(cfg.data.path, "data.path:")
    return cfg if path == cfg.data.path else cfg.with_overrides({"data.path": path})


def check_writable_dir(path: str, flag: str) -> str:
    """-> `path` made absolute. Refuses a path that is (or lies under) a file, and one this process cannot create
    or write in (read-only, permissions, /proc): tried by creating and removing a temporary directory there."""
    if not path or not path.strip():
        raise UserError(f"{flag} must name a directory, but got an empty value")
    path = absolute(path, flag)
    shown = f"{flag} {excerpt(path, PATH_CHARS)}"
    if any(len(part.encode()) > NAME_MAX for part in path.split(os.sep)) or len(path.encode()) > PATH_MAX:
        raise UserError(f"{shown} is too long (names of at most {NAME_MAX} bytes, {PATH_MAX} in all)")
    existing = path
    while not os.path.lexists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        what = "is" if existing == path else f"lies under {excerpt(existing, PATH_CHARS)}, which is"
        kind = "a broken symbolic link" if os.path.islink(existing) and not os.path.exists(existing) else \
            "a file" if os.path.isfile(existing) else "not a directory"
        raise UserError(f"{shown} {what} {kind}; give a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".simmim-write-check-", dir=existing)
    except OSError as e:
        raise UserError(f"{shown} cannot be written: {e.strerror or type(e).__name__} "
                        f"(in {excerpt(existing, PATH_CHARS)})") from None
    shutil.rmtree(probe, ignore_errors=True)
    return path
