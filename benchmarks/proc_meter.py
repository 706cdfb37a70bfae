"""Process-level measurements: the one walk of a process tree (/proc; the benchmarks and the tests' cluster helpers
use it), CPU seconds of every process a Ray instance starts, and the peak private memory of a process tree by role.
Linux (reads /proc). Imports nothing of Ray: the tests import it before any cluster starts.

Memory roles come from process titles as Ray sets them: the root process is the `driver`; `ray::RayTrainWorker`
processes are Train workers (each kept apart); a Ray worker process that ever ran a Ray Data task or actor
(`MapBatches`, `SplitCoordinator`, ...) counts as `ray data` for its whole life (Ray reuses idle workers for other
tasks).
"""
from __future__ import annotations

import os
import threading

DATA_TITLES = ("MapBatches", "_read_decode", "SplitCoordinator", "ReadParquet", "FromItems", "split(")


# ---- the process tree ----------------------------------------------------------------------------------------
def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...: `man 5 proc` from field 3 on);
    None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # after the last ")": a title may hold one
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """Kernel start time of a live `pid` (guards against signalling a recycled PID); None once gone or a zombie."""
    fields = stat(pid)
    return None if fields is None or fields[0] in ("Z", "X") else int(fields[19])


def alive(pid: int) -> bool:
    return start_time(pid) is not None


def process_children() -> dict[int, list[int]]:
    """parent pid -> its children's pids, from one pass over /proc (a process that exits meanwhile is skipped)."""
    out: dict[int, list[int]] = {}
    for pid in all_pids():
        fields = stat(pid)
        if fields is not None:
            out.setdefault(int(fields[1]), []).append(pid)
    return out


def descendants(root: int) -> list[int]:
    """Every process below `root` (children first, then theirs), not `root` itself; each pid once."""
    children, out, seen, todo = process_children(), [], {root}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in seen:
                seen.add(c)
                out.append(c)
                todo.append(c)
    return out


def cmdline(pid: int) -> str:
    """The process's title (Ray renames its workers `ray::...`), arguments joined by spaces; "" once gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


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


# ---- meters --------------------------------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds (user + system) of this process and every process it started (Ray's GCS, raylet, workers),
    sampled every 0.2 s, so processes that already exited still count up to their last sample."""

    def __init__(self) -> None:
        self.me, self.seen = os.getpid(), {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def __reduce__(self):  # Tune pickles its callbacks into the experiment state; the meter stays here
        return (dict, ())

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        import psutil

        for pid in [self.me, *descendants(self.me)]:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    t = p.cpu_times()
                    title = (p.cmdline() or [p.name()])[0]
                self.seen[(p.pid, p.create_time())] = [title.split(" ")[0], t.user + t.system]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, IndexError):
                pass

    def snapshot(self) -> dict[str, float]:
        """Total CPU seconds so far by process kind (`ray::RayTrainWorker`, `raylet`, ...)."""
        self.sample()
        kinds = [(t.removeprefix("ray::").split(".")[0].split(":")[0].rsplit("/", 1)[-1], c)
                 for t, c in list(self.seen.values())]
        names = {k for k, _ in kinds}
        out: dict[str, float] = {}
        for kind, cpu in kinds:
            # a title read while the process was being renamed can be cut (`RayTrainWo`): count it as the full name
            kind = max((n for n in names if n.startswith(kind) and len(kind) >= 8), key=len, default=kind)
            out[kind] = out.get(kind, 0.0) + cpu
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
        for pid in [self.root, *descendants(self.root)]:
            rss = rss_anon(pid)
            if not rss:
                continue
            self.peak[pid] = max(self.peak.get(pid, 0), rss)
            title = cmdline(pid)
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
