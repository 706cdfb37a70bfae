"""Where experiments live: local paths and URIs (file://, s3://, gs://) resolved through pyarrow filesystems.

Ray (since 2.7) no longer copies trial files from worker nodes to the head node, so on a cluster of several nodes
every node must write to storage they all see: cloud storage, or one filesystem mounted at the same path on every
node (NFS, EFS). `check_shared_storage` refuses anything else before the search starts instead of mid-search.
"""
from __future__ import annotations

import os
import stat
import uuid
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.paths import require_file_if_present

SUPPORTED_SCHEMES = ("file", "s3", "gs", "gcs")
# Credentials in a URI end up in settings.json, logs and Ray's job info; they belong in the environment.
SECRET_QUERY_KEYS = ("access_key", "secret_key", "session_token")
SHARED_STORAGE_HINT = ("use storage every node can reach: s3://BUCKET/PREFIX or gs://BUCKET/PREFIX, or a "
                       "filesystem mounted at the same path on every node (NFS, EFS)")


def _shown(uri: str) -> str:
    return excerpt(uri, PATH_CHARS)


def _scheme(uri: str) -> str:
    return urlsplit(uri).scheme.lower() if "://" in uri else ""


def is_node_local(uri: str) -> bool:
    """True for paths on a node's own filesystem (plain paths, file://); False for object stores."""
    return _scheme(uri) in ("", "file")


def resolve_storage(path_or_uri: str) -> tuple[pafs.FileSystem, str, str]:
    """-> (filesystem, path inside it, what to give Ray's `storage_path`).

    Local paths become absolute (Ray resolves relative ones against each worker's own directory). URIs keep their
    query (e.g. `?endpoint_override=host:port&scheme=http` for an S3-compatible server): Ray hands the URI to
    pyarrow again, so both must see the same options.
    """
    if not isinstance(path_or_uri, str) or not path_or_uri.strip():
        raise UserError("--storage-path must be a local path or a URI (s3://, gs://, file://), but got an empty value")
    uri = path_or_uri.strip()
    if not uri.isprintable():  # a NUL breaks every file call, a line break the one-line message
        raise UserError(f"--storage-path {_shown(uri)} must not hold control characters")
    scheme = _scheme(uri)
    if scheme in ("", "file"):
        path = os.path.abspath(os.path.expanduser(urlsplit(uri).path if scheme else uri))
        if scheme and urlsplit(uri).netloc not in ("", "localhost"):
            raise UserError(f"--storage-path {_shown(uri)}: file:// URIs name a local path (file:///abs/path), "
                            f"not a host {excerpt(urlsplit(uri).netloc)}")
        return pafs.LocalFileSystem(), path, path
    if scheme not in SUPPORTED_SCHEMES:
        raise UserError(f"--storage-path {_shown(uri)}: scheme {excerpt(scheme + '://')} is not supported; "
                        f"use a local path, file://, s3:// or gs://")
    parts = urlsplit(uri)
    if not parts.netloc:
        raise UserError(f"--storage-path {_shown(uri)} names no bucket: use {scheme}://BUCKET/PREFIX")
    leaked = sorted(k for k in parse_qs(parts.query) if k.lower() in SECRET_QUERY_KEYS)
    if leaked:
        raise UserError(f"--storage-path {_shown(uri)} carries credentials ({', '.join(leaked)}): set them in the "
                        f"environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or use an instance role")
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid / ArrowIOError derive from these
        raise UserError(f"--storage-path {_shown(uri)}: pyarrow cannot open it: "
                        f"{excerpt(str(e).splitlines()[0], 200)[1:-1]}") from None
    # Ray joins sub-paths onto the URI's path, so a trailing slash would double up
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return fs, path.rstrip("/"), base + (f"?{parts.query}" if parts.query else "")


def join(uri: str, *names: str) -> str:
    """Append path components to a local path or URI, keeping a URI's query at the end."""
    parts = urlsplit(uri) if "://" in uri else None
    if parts is None:
        return os.path.join(uri, *names)
    path = "/".join([parts.path.rstrip("/"), *(n.strip("/") for n in names)])
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def makedirs(uri: str) -> None:
    fs, path, _ = resolve_storage(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path, _ = resolve_storage(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(uri: str, data: bytes) -> None:
    fs, path, _ = resolve_storage(uri)
    _local_file(uri, path)
    parent = path.rsplit("/", 1)[0]
    if parent and parent != path:
        fs.create_dir(parent, recursive=True)  # object stores: a no-op; local disks: needed
    with fs.open_output_stream(path) as f:
        f.write(data)


class NotRegularFile(UserError, OSError):
    """A local path that is a directory, named pipe, device or socket where a file was to be read."""


def file_kind(mode: int) -> str:
    """What an `os.stat` mode is, as messages name it."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "not a regular file"


def read_bytes(uri: str) -> bytes:
    """A file's bytes. A local path must be a regular file (NotRegularFile otherwise): a named pipe would block the
    read forever and a device (/dev/zero) never end it. Opened without blocking, then checked, so a file swapped
    for a pipe between a check and the open cannot block either."""
    fs, path, _ = resolve_storage(uri)
    if not is_node_local(uri):
        with fs.open_input_stream(path) as f:
            return f.read()
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        kind = file_kind(os.fstat(f.fileno()).st_mode)
        if kind != "a regular file":
            raise NotRegularFile(f"{path} is {kind}, not a regular file")
        return f.read()


def _local_file(uri: str, path: str) -> None:
    """The path policy for a file of an experiment on a local disk (settings, inputs, the ledger, checkpoints): a
    regular file or none yet (a missing one fails as pyarrow reports it); a FIFO would block forever."""
    if is_node_local(uri):
        require_file_if_present(path, _shown(path))


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def listdir(uri: str) -> list[str]:
    """Names directly under `uri`, sorted (empty when it does not exist)."""
    fs, path, _ = resolve_storage(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    return sorted(os.path.basename(i.path.rstrip("/")) for i in fs.get_file_info(pafs.FileSelector(path)))


def entries(uri: str) -> list[tuple[str, str]]:
    """(name, kind) of everything directly under `uri`, sorted by name (empty when it does not exist); kind as
    `file_kind` names it, links not followed (object stores: a regular file or a directory)."""
    fs, path, _ = resolve_storage(uri)
    if not is_node_local(uri):
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return []
        return sorted((os.path.basename(i.path.rstrip("/")),
                       "a regular file" if i.type == pafs.FileType.File else "a directory")
                      for i in fs.get_file_info(pafs.FileSelector(path)))
    if not os.path.isdir(path):
        return []
    with os.scandir(path) as it:
        return sorted((e.name, _entry_kind(e)) for e in it)


def _entry_kind(entry: os.DirEntry) -> str:
    try:
        return file_kind(entry.stat(follow_symlinks=False).st_mode)
    except OSError:  # removed since the directory was listed
        return "gone"


def append_line(uri: str, line: str) -> None:
    """Append one line; a last line cut by a kill mid-write stays a line of its own (the reader skips it) instead
    of swallowing this one. Local files are appended to; object stores have no append, so the whole (small) file
    is rewritten."""
    fs, path, _ = resolve_storage(uri)
    line = line.rstrip("\n") + "\n"
    if is_node_local(uri):
        _local_file(uri, path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())
        return
    old = read_bytes(uri).decode() if exists(uri) else ""
    write_text(uri, old + ("\n" if old and not old.endswith("\n") else "") + line)


def cluster_node_count() -> int:
    """Alive nodes of the Ray cluster this process is connected to (1 when not connected)."""
    import ray  # Ray on use: the CLI's checks import this module before Ray starts

    if not ray.is_initialized():
        return 1
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def nodes_missing_path(path: str, timeout_s: float = 60.0) -> list[str] | None:
    """Writes a marker file under local `path` and asks every alive node whether it sees it.

    -> node ids that do not see it (empty: the path is shared), or None when not connected to Ray.
    """
    import ray  # Ray on use: the CLI's checks import this module before Ray starts
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        return None
    os.makedirs(path, exist_ok=True)
    marker = os.path.join(path, f".shared-check-{uuid.uuid4().hex}")
    with open(marker, "w") as f:
        f.write("simmim-ray shared storage check\n")
    try:
        # zero CPUs: the check must not wait behind (or block) training workers
        probe = ray.remote(num_cpus=0, max_retries=0)(os.path.exists)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n, soft=False))
                .remote(marker) for n in nodes]
        seen = ray.get(refs, timeout=timeout_s)
        return [n for n, ok in zip(nodes, seen) if not ok]
    finally:
        os.remove(marker)


def check_shared_storage(uri: str, num_nodes: int, probe=nodes_missing_path) -> None:
    """Refuses a node-local storage path on a cluster of several nodes, unless every node sees the same files.

    A local path passes when `probe` (default: a marker file checked from every alive node) shows it is one shared
    mount; without a connected cluster to ask, it is refused.
    """
    if num_nodes <= 1 or not is_node_local(uri):
        return
    _, path, _ = resolve_storage(uri)
    missing = probe(path)
    if missing == []:
        return
    seen = (f"{len(missing)} of {num_nodes} nodes cannot see it" if missing
            else f"the cluster has {num_nodes} nodes")
    raise UserError(f"--storage-path {_shown(uri)} is on this node's disk and {seen}; Ray does not copy results "
                    f"between nodes (no head-node syncing since Ray 2.7): {SHARED_STORAGE_HINT}")
