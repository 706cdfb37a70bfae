"""The lean path's torch backend (simmim_ray/_compat/ray_train.py) on a one-worker group run in this process: the
rendezvous port is listening from the moment rank 0 names it (no window in which another process can take it),
and the process group comes up over it. Two ranks on real Ray: tests/scenarios/test_train_backend_ray.py."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist

from simmim_ray._compat import ray_train


class InProcessGroup:
    """A worker group of one worker that is this process; remembers what rank 0 answered to the first call."""

    def __init__(self) -> None:
        self.named: tuple[str, int] | None = None
        self.listening_when_named: bool | None = None

    def __len__(self) -> int:
        return 1

    def get_resources_per_worker(self) -> dict:
        return {"CPU": 1}

    def execute_single(self, rank: int, fn, *args, **kwargs):
        out = fn(*args, **kwargs)
        if self.named is None:  # the rendezvous address, checked before anything else can run
            self.named = out
            try:
                socket.create_connection(out, timeout=2).close()
                self.listening_when_named = True
            except OSError:
                self.listening_when_named = False
        return out

    def execute(self, fn, *args, **kwargs):
        return [fn(*args, **kwargs)]

    execute_async = execute

    def execute_single_async(self, rank: int, fn, *args, **kwargs):
        return fn(*args, **kwargs)


@pytest.fixture
def group(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "get", lambda refs, timeout=None: refs)  # the fake's calls return values, not refs
    # Ray's worker-side functions read the Train worker context this process lacks: recorded, not run
    calls = []
    monkeypatch.setattr(ray_train, "_ray_torch", lambda name, **kw: calls.append((name, kw)))
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(k, raising=False)
    g = InProcessGroup()
    g.ray_calls = calls
    yield g
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.parametrize("init_method", ["env", "tcp"])
def test_rank_zero_holds_the_rendezvous_port_from_the_moment_it_names_it(group, init_method):
    backend = ray_train.LazyTorchBackend()
    backend.on_start(group, ray_train.LazyTorchConfig(init_method=init_method, timeout_s=30))
    # Ray's own backend names a port it has just closed and binds it again seconds later (EADDRINUSE when another
    # process took it in between): that fails here
    assert group.listening_when_named is True, group.named
    assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_backend() == "gloo"
    t = torch.tensor([2.0])
    dist.all_reduce(t)
    assert t.item() == 2.0
    assert (os.environ.get("MASTER_PORT") == str(group.named[1])) == (init_method == "env")
    backend.on_shutdown(group, ray_train.LazyTorchConfig())
    assert ray_train._MASTER_STORE is None  # released with the group
    assert group.ray_calls == [("_set_torch_distributed_env_vars", {}),
                               ("_shutdown_torch", {"destroy_process_group": False})]


def test_an_unknown_init_method_is_refused_before_any_worker_is_asked(group):
    with pytest.raises(ValueError, match=r"`init_method in \('env', 'tcp'\)` must hold, but got 'file'"):
        ray_train.LazyTorchBackend().on_start(group, ray_train.LazyTorchConfig(init_method="file"))
    assert group.named is None
