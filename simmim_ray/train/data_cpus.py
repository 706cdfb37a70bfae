"""CPUs for Ray Data in a streamed run, so reading and decoding can never starve.

Train reserves its workers' CPUs first; Ray Data gets what is left. When the workers would take everything (2
workers x 1 CPU on 2 cores), no read task ever runs and the run hangs at 0 rows (`backpressured: tasks
(ResourceBudget)`). So before a streamed run is built, the workers' logical CPUs are lowered until Ray Data keeps
one CPU (or half of one, on the smallest machines); if even that cannot be done, the run is refused in one line
naming the flag. Pure arithmetic, no Ray: the CLI can call it before Ray starts.
"""
from __future__ import annotations

from dataclasses import dataclass

from simmim_ray.errors import UserError

MIN_WORKER_CPUS = 0.25  # below this a worker's scheduling share is meaningless
DATA_CPUS = (1.0, 0.5)  # what Ray Data keeps, preferred first


@dataclass(frozen=True)
class DataCpus:
    worker: float  # logical CPUs each Train worker requests
    data: float  # CPUs Ray Data may use (its resource limit)
    task: float  # CPUs one read/decode task requests
    lowered: bool  # the workers got less than they asked for

    def note(self, workers: int, asked: float) -> str:
        return (f"simmim-ray: {workers} workers x {asked:g} CPU would leave Ray Data no CPU to read with; each "
                f"worker requests {self.worker:g} CPU and Ray Data keeps {self.data:g} (set --cpus-per-worker to "
                f"choose)")


def plan_data_cpus(cpus: float, workers: int, cpus_per_worker: float, flag: str = "--cpus-per-worker") -> DataCpus:
    """`cpus`: the CPUs this run may use (the cluster's, or a search trial's share); None-like (0) means unknown
    (a cluster that may still grow): the request is kept and Ray Data gets no limit."""
    asked = workers * cpus_per_worker
    if cpus <= 0 or asked > cpus + 1e-9:  # unknown, or larger than the cluster now: an autoscaler may add nodes
        return DataCpus(cpus_per_worker, 0.0, 1.0, False)
    left = cpus - asked
    if left >= DATA_CPUS[0] - 1e-9:
        return DataCpus(cpus_per_worker, left, 1.0, False)
    for keep in DATA_CPUS:
        per_worker = (cpus - keep) / workers
        if per_worker >= MIN_WORKER_CPUS - 1e-9:
            per_worker = min(cpus_per_worker, int(per_worker * 100) / 100)
            data = cpus - workers * per_worker
            return DataCpus(per_worker, data, min(1.0, data), per_worker < cpus_per_worker)
    raise UserError(f"{flag}: {workers} workers on {cpus:g} CPUs leave Ray Data no CPU to read the data with "
                    f"(each worker needs >= {MIN_WORKER_CPUS:g} CPU and Ray Data >= {DATA_CPUS[-1]:g}); "
                    f"use fewer workers or more CPUs")
