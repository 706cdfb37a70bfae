"""One driver per experiment: the lease a `search` takes on its experiment before it writes anything there.

Two drivers on one experiment would both append to its ledger, both tell its Optuna study and both overwrite Tune's
state: the experiment would hold neither search. So `search` (new or `--resume`) takes the experiment's lease
`<experiment>/.lease` first, holds it until it exits, and a second driver is refused in one line that names the
holder.

- Local paths (and file systems mounted on several hosts that support `flock`, such as NFSv4): an exclusive `flock`
  on the open lease file. The kernel releases it when the holder exits in any way, SIGKILL included, so a lease is
  never stale: a lock that cannot be taken has a live holder. The file holds the owner's pid, host and start time
  for the message only.
- s3:// (through boto3, when installed): the lease object is created only if absent (`If-None-Match: *`) and kept
  alive by a heartbeat; a lease whose holder is gone (its process ended on this host) or whose heartbeat is older
  than STALE_S is taken over with `If-Match` on the stale version, so two drivers reclaiming it at once cannot both
  win (search/record/lease_s3.py).
- Other object stores (gs://), or s3:// without boto3: no lease; a warning says so (docs/security.md).
"""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.io import storage
from simmim_ray.search.record.lease_owner import Lease, Owner, in_use

LEASE = ".lease"
TAKE_TRIES = 5  # a holder that unlinks the file as we lock it: try again with the new file


@contextmanager
def hold(exp_uri: str) -> Iterator[Lease]:
    """The experiment's lease for the duration of the block (see `acquire`)."""
    lease = acquire(exp_uri)
    try:
        yield lease
    finally:
        lease.release()


def acquire(exp_uri: str) -> Lease:
    """Takes the lease of the experiment at `exp_uri` (created if missing), or raises UserError naming the holder."""
    lease_uri = storage.join(exp_uri, LEASE)
    if storage.is_node_local(exp_uri):
        path = storage.resolve_storage(lease_uri)[1]
        try:
            return _acquire_local(exp_uri, path)
        except OSError as e:  # a read-only experiment, a file system without locks
            raise UserError(f"{path}: cannot take the experiment's lease ({e.strerror or type(e).__name__})"
                            ) from None
    if exp_uri.startswith("s3://"):
        try:
            from simmim_ray.search.record import lease_s3  # needs boto3 (optional)
        except ImportError:  # boto3 is not a dependency of the package
            lease_s3 = None
        if lease_s3 is not None:
            return lease_s3.acquire(exp_uri, lease_uri)
    print(f"simmim-ray: warning: {excerpt(exp_uri, PATH_CHARS)}: no lease on this storage (only local paths, and "
          f"s3:// with boto3 installed, have one): make sure no other driver runs this experiment",
          file=sys.stderr, flush=True)
    return Lease(lease_uri)


def _acquire_local(exp_uri: str, path: str) -> Lease:
    created = not os.path.isdir(os.path.dirname(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(TAKE_TRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Owner.from_bytes(os.pread(fd, 4096, 0))
            os.close(fd)
            raise in_use(exp_uri, holder, path) from None
        # the holder before us unlinks the file as it releases: a lock on an unlinked file is no lease
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, Owner.me().to_bytes(), 0)
            return Lease(path, lambda: _release_local(fd, path, created))
        os.close(fd)
    raise UserError(f"{excerpt(path, PATH_CHARS)}: could not take the experiment's lease after {TAKE_TRIES} tries "
                    f"(other drivers keep taking it); try again")


def _release_local(fd: int, path: str, created: bool) -> None:
    """Unlinks the lease file while holding its lock (a waiter that then locks the old file sees it unlinked and
    tries again), and the experiment directory when this lease created it and nothing else was written there (a
    search that stopped before it started)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)
    if created:
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:  # not empty: the experiment
            pass
