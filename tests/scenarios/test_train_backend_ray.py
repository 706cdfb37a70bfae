"""Train workers on a real Ray: a gloo process group each, and a controller that never imports torch."""
from __future__ import annotations

import json
import sys

import pytest
import ray.cloudpickle


# the Train workers cannot import this test module: ship its functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


KV_KEY, KV_NAMESPACE = "test_train_backend:controller_modules", "simmim_ray_tests"


def _allreduce_loop(config: dict) -> None:
    import os

    import torch
    import torch.distributed as dist

    import ray.train

    ctx = ray.train.get_context()
    t = torch.tensor([float(ctx.get_world_rank() + 1)])
    dist.all_reduce(t)  # fails without a process group
    seen = {"sum": float(t.item()), "backend": dist.get_backend(), "world": dist.get_world_size(),
            "env": {k: os.environ.get(k) for k in ("MASTER_ADDR", "RANK", "LOCAL_RANK", "WORLD_SIZE")}}
    with open(f"{config['out']}.{ctx.get_world_rank()}", "w") as f:
        json.dump(seen, f)


def _probe():
    from ray.experimental import internal_kv
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class ControllerModules(WorkerGroupCallback):
        """Runs in the controller after the backend has set up the workers' process group."""

        def after_worker_group_start(self, worker_group) -> None:
            internal_kv._internal_kv_put(KV_KEY, json.dumps("torch" in sys.modules), namespace=KV_NAMESPACE)

    return ControllerModules()


@pytest.mark.slow
def test_workers_get_a_gloo_process_group_and_the_controller_never_imports_torch(ray_session, tmp_path):
    import ray.train
    from ray.experimental import internal_kv

    from simmim_ray._compat.ray_train import LazyTorchConfig
    from simmim_ray._compat.ray_trainer import LeanTorchTrainer

    out = str(tmp_path / "seen")
    trainer = LeanTorchTrainer(_allreduce_loop, train_loop_config={"out": out}, torch_config=LazyTorchConfig(),
                      scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                      run_config=ray.train.RunConfig(name="lazy_torch", storage_path=str(tmp_path),
                                                     callbacks=[_probe()],
                                                     failure_config=ray.train.FailureConfig(max_failures=0)))
    trainer.fit()
    for rank in (0, 1):
        with open(f"{out}.{rank}") as f:
            m = json.load(f)
        assert m["sum"] == 3.0 and m["world"] == 2 and m["backend"] == "gloo"  # ranks 0 and 1 both took part
        assert m["env"]["RANK"] == str(rank) and m["env"]["WORLD_SIZE"] == "2" and m["env"]["MASTER_ADDR"]
    # Ray's own TorchConfig makes this True (its backend module imports torch in the controller)
    assert json.loads(internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)) is False
