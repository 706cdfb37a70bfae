"""Ray Train's private pieces used by the lean trial path.

- `LazyTorchConfig`: Ray's `TorchConfig` with a backend that never imports torch in the Train controller. With Ray's
  own config the controller imports torch (through `ray.train.torch.config`) only to send Ray's process-group
  functions to the workers: CPU-seconds per trial that on a small machine come out of the workers' own start
  (benchmarks/trial_overhead.py). Here the workers get a small function of this module that calls Ray's worker-side
  function (`_set_torch_distributed_env_vars`, `_shutdown_torch`) by name, so torch is imported only where it runs.
  The steps follow Ray's `_TorchBackend.on_start` for CPU and GPU workers but one: the rendezvous. Ray's rank 0
  finds a free port, closes it and binds it again when the process group starts, seconds later; another process
  can take the port in between (seen: a trial failed with EADDRINUSE while another trial started beside it). Here
  rank 0 starts the process group's store on a port the OS assigns at bind time and the others join it, so the port
  is held from the moment it is chosen.
- `LeanTorchTrainer` (ray_trainer.py, apart: this module is loaded in the Train controller, which must not import
  `ray.train.torch`, whose package imports torch): no dataset manager actor for a run without Ray Datasets.
- `PublishController` / `abort_controller`: the Train controller's handle, so a stopped trial can abort its run.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ray
import ray.cloudpickle
from ray.train.backend import Backend, BackendConfig
from ray.train.constants import DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S, TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S

from simmim_ray._compat import ray_core
from simmim_ray._compat.probe import missing as _missing

logger = logging.getLogger(__name__)
TORCH_CONFIG = "ray.train.torch.config"


def _ray_torch(name: str, **kwargs):
    """On a worker: Ray's torch backend function `name` (imports torch there)."""
    import ray.train.torch.config as torch_config  # torch on the workers, never in the controller

    return getattr(torch_config, name)(**kwargs)


def _set_master(addr: str, port: int) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)


_MASTER_STORE = None  # rank 0's store server: referenced for as long as the process group may use it


def bind_master_store(world_size: int, timeout_s: float) -> tuple[str, int]:
    """On rank 0: starts the process group's TCPStore on a port the OS assigns as it binds (port 0), and keeps it;
    -> (this node's address, the port), for the other ranks to join."""
    from datetime import timedelta

    import torch.distributed as dist

    global _MASTER_STORE
    addr = ray.util.get_node_ip_address()
    _MASTER_STORE = dist.TCPStore(addr, 0, world_size, is_master=True, timeout=timedelta(seconds=timeout_s),
                                  wait_for_workers=False)
    return addr, _MASTER_STORE.port


def join_process_group(backend: str, world_rank: int, world_size: int, addr: str, port: int,
                       timeout_s: float) -> None:
    """On every rank: `torch.distributed.init_process_group` over rank 0's store (bind_master_store)."""
    from datetime import timedelta

    import torch.distributed as dist

    if backend == "nccl" and not {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_BLOCKING_WAIT"} & set(os.environ):
        os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"  # as Ray sets it: a timed-out collective fails the run
    timeout = timedelta(seconds=timeout_s)
    store = _MASTER_STORE if world_rank == 0 else dist.TCPStore(addr, port, world_size, is_master=False,
                                                                 timeout=timeout)
    if store is None:
        raise RuntimeError("rank 0 joins the process group in the process that ran bind_master_store")
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)


def shutdown_process_group(destroy: bool) -> None:
    """On every rank: Ray's torch shutdown (device caches; the process group when `destroy`), then the store."""
    global _MASTER_STORE
    _ray_torch("_shutdown_torch", destroy_process_group=destroy)
    _MASTER_STORE = None


class LazyTorchBackend(Backend):
    share_cuda_visible_devices: bool = True  # as Ray's torch backend: workers on a node see each other's GPUs

    def on_start(self, worker_group, backend_config: "LazyTorchConfig") -> None:
        if backend_config.init_method not in ("env", "tcp"):
            raise ValueError(f"`init_method in ('env', 'tcp')` must hold, but got {backend_config.init_method!r}")
        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        n, timeout_s = len(worker_group), backend_config.timeout_s
        addr, port = worker_group.execute_single(0, bind_master_store, world_size=n, timeout_s=timeout_s)
        if backend_config.init_method == "env":  # both join the same store; "env" also leaves MASTER_* set
            worker_group.execute(_set_master, addr=addr, port=port)
        worker_group.execute(_ray_torch, "_set_torch_distributed_env_vars")
        ray.get([worker_group.execute_single_async(i, join_process_group, backend=backend, world_rank=i, world_size=n,
                                                   addr=addr, port=port, timeout_s=timeout_s)
                 for i in range(n)])

    def on_shutdown(self, worker_group, backend_config) -> None:
        futures = worker_group.execute_async(shutdown_process_group, destroy=len(worker_group) > 1)
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
        from ray.train.v2._internal.util import TrainingFramework  # private: this module must import on any Ray

        return TrainingFramework.TORCH

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s}


try:
    from ray.train.v2._internal.execution.callback import ControllerCallback as _ControllerCallback
except ImportError:  # another Ray layout: the lean path is off there (`missing` says why)
    _ControllerCallback = object


class PublishController(_ControllerCallback):
    """Runs in the Train controller: stores the controller's own actor handle under `key` in Ray's KV store (Train
    V2 keeps it to itself)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def after_controller_start(self, train_run_context) -> None:
        handle = ray.get_runtime_context().current_actor
        ray_core.kv_put(self.key, ray.cloudpickle.dumps(handle))


def abort_controller(published: bytes) -> None:
    """Aborts the Train run whose controller handle `PublishController` published: the controller stops its worker
    group, frees its placement group and exits, and the trial's `fit()` raises."""
    ray.cloudpickle.loads(published).abort.remote()


_CTL = "ray.train.v2._internal.execution.controller.controller"
# probe.check arguments; each has a test in tests/unit/_compat/test_compat.py
CHECKS = (
    ("ray.train.v2._internal.util", "TrainingFramework"),
    (TORCH_CONFIG, "_set_torch_distributed_env_vars"),
    (TORCH_CONFIG, "_shutdown_torch", ("destroy_process_group",)),
    (TORCH_CONFIG, "TorchConfigContextManager"),
    ("ray.train.v2.api.data_parallel_trainer", "DataParallelTrainer._create_default_callbacks"),
    ("ray.train.v2._internal.callbacks.datasets", "DatasetsCallback"),
    ("ray.train.v2._internal.execution.callback", "ControllerCallback.after_controller_start",
     ("train_run_context",)),
    (_CTL, "TrainController.abort"),
)


def missing() -> list[str]:
    return ray_core.missing() + _missing(*CHECKS)
