"""Diagnostics of benchmarks/trial_overhead.py: heavy-import costs in fresh interpreters, and an actor timeline
(`OVERHEAD_DUMP_ACTORS=path`) for finding where a trial's time goes."""
from __future__ import annotations

import json
import subprocess
import sys


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
