"""Shared fixtures. Ray is started once per session with explicit CPUs and its own temp dir; only what a test
starts is stopped (never `ray stop`)."""
from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance with 2 CPUs, its own short temp dir (socket paths must stay short)."""
    import ray

    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, configure_logging=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_cfg():
    """A fast config on digits: small ViT, 2 epochs, short fine-tune."""
    from simmim_ray.config import Config

    return Config.from_dict({
        "model": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
        "mask": {"patch_size": 8, "ratio": 0.5},
        "train": {"epochs": 2, "batch_size": 64, "log_images": False},
        "eval": {"epochs": 2, "batch_size": 64},
    })
