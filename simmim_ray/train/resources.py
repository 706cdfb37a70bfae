"""Will a job's workers fit? One check for `train` and `search`, made before Ray starts when Ray starts locally.

A request that can never be placed does not fail in Ray: the job waits for resources (minutes per worker-group
start, then retries), so it is refused here in one line instead.
"""
from __future__ import annotations

import os

import torch

from simmim_ray._compat.ray_core import local_cpus
from simmim_ray.errors import UserError


def starts_locally(address: str | None) -> bool:
    """Mirrors `train.ray_init.init_ray`: no --address and no RAY_ADDRESS (or RAY_ADDRESS=local) starts Ray here."""
    return not address and os.environ.get("RAY_ADDRESS", "local") == "local"


def local_resources() -> dict[str, float]:
    """CPUs and GPUs a Ray started on this machine will offer, detected the way Ray does (cgroup CPU limits
    included); falls back to the OS's count when Ray's helper is not there."""
    cpus = local_cpus()
    try:
        gpus = float(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable CUDA is no GPU
        gpus = 0.0
    return {"CPU": cpus, "GPU": gpus}


def check_fits(workers: int, cpus_per_worker: float, gpus_per_worker: float, gpu: bool, have: dict,
               workers_flag: str, where: str, job: str = "the job") -> None:
    """Refuses `workers` x per-worker resources beyond `have` (e.g. {"CPU": 2, "GPU": 0}); `where` names it
    ("this machine", "the Ray cluster"), `job` what could not start ("one trial")."""
    need_cpu = workers * cpus_per_worker
    if need_cpu > have.get("CPU", 0) + 1e-9:
        raise UserError(f"{workers_flag} x --cpus-per-worker = {need_cpu:g} CPUs, but {where} has "
                        f"{have.get('CPU', 0):g}; {job} could never start")
    if gpu:
        need_gpu = workers * gpus_per_worker
        if need_gpu > have.get("GPU", 0) + 1e-9:
            raise UserError(f"{workers_flag} x --gpus-per-worker = {need_gpu:g} GPUs, but {where} has "
                            f"{have.get('GPU', 0):g}; {job} could never start")
