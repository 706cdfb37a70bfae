"""Peak private memory (RssAnon, from /proc/<pid>/status) of a process tree, by role, sampled in a thread.

Roles come from process titles as Ray sets them: the root process is the `driver`; `ray::RayTrainWorker` processes
are Train workers (each kept apart); a Ray worker process that ever ran a Ray Data task or actor (`MapBatches`,
`SplitCoordinator`, ...) counts as `ray data` for its whole life (Ray reuses idle workers for other tasks). Linux.
"""
from __future__ import annotations

import os
import threading

DATA_TITLES = ("MapBatches", "_read_decode", "SplitCoordinator", "ReadParquet", "FromItems", "split(")


def rss_anon(pid: int) -> int:
    """Private resident memory in bytes (anonymous pages: heap, not shared libraries or files); 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(p))
    return out


class RssMeter:
    """Samples `root` and its descendants every `period` s until `stop()`; `peaks()` -> {role: peak bytes}."""

    def __init__(self, root: int, period: float = 0.2) -> None:
        self.root, self.period = root, period
        self.peak: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def sample(self) -> None:
        kids = process_children()
        todo, seen = [self.root], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            todo.extend(kids.get(pid, []))
            rss = rss_anon(pid)
            if not rss:
                continue
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            title = _title(pid)
            if pid == self.root:
                self.role[pid] = "driver"
            elif "RayTrainWorker" in title:
                self.role[pid] = "train worker"
            elif any(t in title for t in DATA_TITLES):
                self.role[pid] = "ray data"
            elif title.startswith("ray::") and self.role.get(pid) != "ray data":
                self.role.setdefault(pid, "other ray worker")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self) -> dict[str, int]:
        """Peak per role; Train workers one by one (`train worker 0`, `train worker 1`, by pid)."""
        out: dict[str, int] = {}
        workers = sorted(p for p, r in self.role.items() if r == "train worker")
        for i, pid in enumerate(workers):
            out[f"train worker {i}"] = self.peak[pid]
        for role in ("driver", "ray data"):
            pids = [p for p, r in self.role.items() if r == role]
            if pids:
                out[role] = max(self.peak[p] for p in pids)
        return out
