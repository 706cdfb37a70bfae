"""Lean path's LazyTorchConfig (simmim_ray/_compat/ray_train.py): Train's controller never imports torch, and the
workers still get Ray's torch process group; the public path keeps Ray's own TorchConfig."""
from __future__ import annotations

import sys

import pytest
import ray.cloudpickle

# the Train workers cannot import this test module: ship its functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_make_trainer_uses_the_lazy_torch_config_on_the_lean_path(tiny_cfg, tmp_path):
    from simmim_ray._compat.ray_train import LazyTorchBackend, LazyTorchConfig
    from simmim_ray.train.launch import Resources, make_trainer

    trainer = make_trainer(tiny_cfg, Resources(workers=2), storage_path=str(tmp_path), name="t", tb_dir=None,
                           lean=True)
    assert isinstance(trainer.backend_config, LazyTorchConfig)
    assert trainer.backend_config.backend_cls is LazyTorchBackend
    # TorchTrainer resolves the backend for CPU workers; the other fields keep Ray's TorchConfig defaults
    from ray.train.torch import TorchConfig

    assert trainer.backend_config.to_dict() == {**TorchConfig().to_dict(), "backend": "gloo"}


class _FakeGroup:
    def get_resources_per_worker(self) -> dict:
        return {"CPU": 1}

    def execute_single(self, rank, fn, *args, **kwargs):
        return "127.0.0.1", 12345


def test_the_public_path_uses_rays_own_trainer_and_torch_config(tiny_cfg, tmp_path):
    from ray.train.torch import TorchConfig, TorchTrainer

    from simmim_ray.train.launch import Resources, make_trainer

    trainer = make_trainer(tiny_cfg, Resources(workers=2), storage_path=str(tmp_path), name="t", tb_dir=None,
                           lean=False)
    assert type(trainer) is TorchTrainer and type(trainer.backend_config) is TorchConfig


def test_unknown_init_method_is_refused_with_the_rule():
    from simmim_ray._compat.ray_train import LazyTorchBackend, LazyTorchConfig

    with pytest.raises(ValueError, match=r"`init_method in \('env', 'tcp'\)` must hold, but got 'udp'"):
        LazyTorchBackend().on_start(_FakeGroup(), LazyTorchConfig(init_method="udp"))


def test_what_the_train_controller_loads_imports_no_torch():
    """The controller unpickles the lean path's torch config and callbacks: their modules must not pull torch."""
    import subprocess
    import sys

    code = ("import sys, simmim_ray._compat.ray_train, simmim_ray.search.trial.relay, simmim_ray.search.trial.stop;"
            "print(sorted(m for m in ('torch', 'ray.train.torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])
