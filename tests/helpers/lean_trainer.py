"""A 2-worker LeanTorchTrainer around a test's loop function (the lean trial path's trainer, without Tune)."""
from __future__ import annotations


def lean_trainer(tmp_path, loop, name: str, callbacks: list, config: dict | None = None):
    import ray.train

    from simmim_ray._compat.ray_trainer import LeanTorchTrainer

    return LeanTorchTrainer(loop, train_loop_config=config or {},
                            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                            run_config=ray.train.RunConfig(name=name, storage_path=str(tmp_path), callbacks=callbacks,
                                                           failure_config=ray.train.FailureConfig(max_failures=0)))
