"""Ray Train's torch backend, driven from a Train controller that never imports torch.

Each `fit()` starts a Train controller process. With Ray's `TorchConfig`, the controller imports torch (through
`ray.train.torch.config`) only to send Ray's process-group functions to the workers: about 1.5 CPU-seconds per
trial, which on a small machine come out of the workers' own start. `LazyTorchConfig` has the same fields and
meaning; its backend sends the workers a small function of this module that calls Ray's own worker-side function
(`_setup_torch_process_group`, `_set_torch_distributed_env_vars`, `_shutdown_torch`) by name, so torch is
imported only where it runs. The order of steps is Ray's `_TorchBackend.on_start` for CPU and GPU workers (TPU
workers are not used by this service).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray._common.network_utils import build_address
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
from ray.train.v2._internal.util import TrainingFramework

logger = logging.getLogger(__name__)


def _ray_torch(name: str, **kwargs):
    """On a worker: Ray's torch backend function `name` (imports torch there)."""
    import ray.train.torch.config as torch_config

    return getattr(torch_config, name)(**kwargs)


def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)


class LazyTorchBackend(Backend):
    share_cuda_visible_devices: bool = True  # as Ray's torch backend: workers on a node see each other's GPUs

    def on_start(self, worker_group, backend_config: "LazyTorchConfig") -> None:
        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        addr, port = worker_group.execute_single(0, get_address_and_port)
        if backend_config.init_method == "env":
            worker_group.execute(_set_master, addr=addr, port=port)
            url = "env://"
        elif backend_config.init_method == "tcp":
            url = f"tcp://{build_address(addr, port)}"
        else:
            raise ValueError(f"`init_method in ('env', 'tcp')` must hold, but got {backend_config.init_method!r}")
        worker_group.execute(_ray_torch, "_set_torch_distributed_env_vars")
        n = len(worker_group)
        ray.get([worker_group.execute_single_async(i, _ray_torch, "_setup_torch_process_group", backend=backend,
                                                   world_rank=i, world_size=n, init_method=url,
                                                   timeout_s=backend_config.timeout_s)
                 for i in range(n)])

    def on_shutdown(self, worker_group, backend_config) -> None:
        futures = worker_group.execute_async(_ray_torch, "_shutdown_torch",
                                             destroy_process_group=len(worker_group) > 1)
        timeout_s = float(os.environ.get(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
                                         DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S))
        try:
            ray.get(futures, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            logger.warning("Torch process group shutdown timed out after %s seconds", timeout_s)


@dataclass
class LazyTorchConfig(BackendConfig):
    """`ray.train.torch.TorchConfig`'s fields; pass as `TorchTrainer(torch_config=...)`."""

    backend: str | None = None  # None: nccl with GPUs, else gloo
    init_method: str = "env"
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return LazyTorchBackend

    @property
    def train_func_context(self):
        # used where the trainer is built (the trial process, which has torch already)
        from ray.train.torch.config import TorchConfigContextManager

        return TorchConfigContextManager

    @property
    def framework(self):
        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s}
