"""Who holds an experiment's lease (Owner), the refusal that names them, and a held lease: shared by the local lease
(search/record/lease.py) and the s3:// one (search/record/lease_s3.py), which lease.py picks between."""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass

from simmim_ray.errors import UserError, excerpt


@dataclass
class Owner:
    pid: int
    host: str
    user: str
    since: float  # time.time() when the lease was taken
    heartbeat: float = 0.0  # object stores only: when the holder last renewed the lease

    @classmethod
    def me(cls) -> "Owner":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            user = str(os.getuid())
        now = time.time()
        return cls(pid=os.getpid(), host=socket.gethostname(), user=user, since=now, heartbeat=now)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def gone(self) -> bool:
        """The holder's process has ended: it ran on this host and its pid is free (a pid reused since counts as
        alive: the lease then waits for its heartbeat to go stale)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process
            return False
        return False

    @classmethod
    def from_bytes(cls, data: bytes) -> "Owner | None":
        """None for a lease the holder has not written yet, or one that is not ours to read."""
        try:
            d = json.loads(data.decode())
            return cls(pid=int(d["pid"]), host=str(d["host"]), user=str(d.get("user", "")), since=float(d["since"]),
                       heartbeat=float(d.get("heartbeat", 0.0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def clock(t: float) -> str:
    """16:02 today, else 2026-12-04 16:02 (local time): when the holder started, as its user would say it."""
    then = time.localtime(t)
    same_day = time.strftime("%Y-%m-%d", then) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", then)


def in_use(exp_uri: str, owner: Owner | None, lease_uri: str) -> UserError:
    # paths as the other messages show them (resolved: no control characters), quoted in no repr
    who = (f"pid {owner.pid} on host {excerpt(owner.host)[1:-1]} since {clock(owner.since)}" if owner is not None
           else "another process")
    return UserError(f"experiment {exp_uri} is in use by {who} (lease {lease_uri}); one driver per experiment: "
                     f"wait for it or stop it")


class Lease:
    """A held lease; `release()` (idempotent) gives it back. The process exiting releases a local one too."""

    def __init__(self, uri: str, release=None) -> None:
        self.uri = uri
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()
