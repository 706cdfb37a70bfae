"""Experiment files through pyarrow filesystems: local paths, file://, s3://, gs:// alike."""
from __future__ import annotations

import os

import pyarrow.fs as pafs


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    return os.path.abspath(uri.removeprefix("file://"))


def fs_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    return pafs.FileSystem.from_uri(uri)


def ensure_dir(uri: str) -> None:
    fs, p = fs_path(uri)
    fs.create_dir(p, recursive=True)


def exists(uri: str) -> bool:
    fs, p = fs_path(uri)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def write_bytes(uri: str, data: bytes) -> None:
    fs, p = fs_path(uri)
    fs.create_dir(os.path.dirname(p), recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def read_bytes(uri: str) -> bytes:
    fs, p = fs_path(uri)
    with fs.open_input_stream(p) as f:
        return f.read()


def listdir(uri: str) -> list[str]:
    """Names directly under `uri` (empty when it does not exist)."""
    fs, p = fs_path(uri)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return []
    return sorted(os.path.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(p)))


def append_line(uri: str, line: str) -> None:
    """Append for local files; object stores have no append, so rewrite the whole (small) file."""
    if is_local(uri):
        p = local_path(uri)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "a") as f:
            f.write(line.rstrip("\n") + "\n")
        return
    old = read_bytes(uri).decode() if exists(uri) else ""
    write_text(uri, old + line.rstrip("\n") + "\n")
