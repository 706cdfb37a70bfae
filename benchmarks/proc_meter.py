"""Process-level measurements for benchmarks/trial_overhead.py: CPU seconds of every process a Ray instance
starts, heavy-import costs in fresh interpreters, and an actor timeline for diagnosis."""
from __future__ import annotations

import json
import subprocess
import sys


class CpuMeter:
    """CPU seconds (user + system) of this process and every process it started (Ray's GCS, raylet, workers),
    sampled every 0.2 s, so processes that already exited still count up to their last sample."""

    def __init__(self) -> None:
        import threading

        import psutil

        self.me, self.seen = psutil.Process(), {}
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

        for p in [self.me, *self.me.children(recursive=True)]:
            try:
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


def import_seconds() -> dict[str, tuple[float, float]]:
    """Each heavy import in a fresh interpreter, as a worker pays it: (wall, CPU) seconds, at this moment."""
    out = {}
    for label, pre, mod in (("ray.train.torch (torch)", "", "ray.train.torch"),
                            ("simmim_ray.train.trial_loop on top (torchvision, engine)", "import ray.train.torch; ",
                             "simmim_ray.train.trial_loop"),
                            ("sklearn.datasets (digits loader)", "", "sklearn.datasets")):
        code = (f"{pre}import time; t, c = time.perf_counter(), time.process_time(); import {mod}; "
                "print(time.perf_counter() - t, time.process_time() - c)")
        wall, cpu = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.split()[-2:]
        out[label] = (float(wall), float(cpu))
    return out


def dump_actors(path: str) -> None:
    """Diagnostics: every actor's worker process times and its creation task (for finding where time goes)."""
    from ray.util.state import list_actors, list_tasks, list_workers

    kw = {"detail": True, "limit": 10000, "raise_on_missing_output": False}
    workers = {w.pid: w for w in list_workers(**kw)}
    tasks = {t.actor_id: t for t in list_tasks(**kw) if t.type == "ACTOR_CREATION_TASK"}
    out = []
    for a in list_actors(**kw):
        w, t = workers.get(a.pid), tasks.get(a.actor_id)
        out.append({"class": a.class_name, "pid": a.pid,
                    "launch": w.worker_launch_time_ms / 1e3 if w else None,
                    "launched": w.worker_launched_time_ms / 1e3 if w else None,
                    "ready": w.start_time_ms / 1e3 if w else None, "end": w.end_time_ms / 1e3 if w else None,
                    "init_start": (t.start_time_ms or 0) / 1e3 if t else None,
                    "init_end": (t.end_time_ms or 0) / 1e3 if t else None})
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
