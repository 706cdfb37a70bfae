"""Shared fixtures, and the two layers: tests/unit/ (no Ray, no command line in a process of its own; marker
`unit`) and tests/scenarios/ (Ray and end-to-end runs; marker `scenario`). Ray is started once per session (per
xdist worker, tests/scenarios/conftest.py) with explicit CPUs and its own temp dir; only what a test starts is
stopped (never `ray stop`)."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from cluster_utils import new_token

TESTS = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(TESTS, "scenarios")
# Under `-n N --dist loadgroup` (README's test command) tests spread over the workers one by one (each worker
# starts its session Ray and its cluster once, with free ports and temp dirs of its own); these scenarios, which
# measure time or memory or start whole clusters, are one group, so no two of them run at the same time
ALONE = ("benchmarks", "test_multinode.py", "test_multinode_data.py", "test_job_submit.py")


def pytest_configure(config):
    # registered here too, so the mark is known when pytest-xdist is not installed (a plain serial run)
    config.addinivalue_line("markers", "xdist_group(name): tests that run on the same xdist worker")


def pytest_collection_modifyitems(config, items):
    rank = {}
    for item in items:
        path = str(item.path)
        if not path.startswith(SCENARIOS + os.sep):
            item.add_marker(pytest.mark.unit)
            rank[item.nodeid] = 2
            continue
        item.add_marker(pytest.mark.scenario)
        rank[item.nodeid] = 1
        if os.path.relpath(path, SCENARIOS).split(os.sep)[0] in ALONE:
            item.add_marker(pytest.mark.xdist_group("alone"))
            rank[item.nodeid] = 0
    # longest first, so that the workers end together: the "alone" group (one worker runs it from end to end), then
    # the other scenarios, then the unit tests, which fill in behind them in seconds each
    items.sort(key=lambda item: rank[item.nodeid])


# this process joins the session's cluster as a driver (tests/scenarios/conftest.py: ray_session) and Ray reads its
# auth mode once, when first imported: the session's token is fixed here, before anything imports Ray. Command-line
# runs that start a Ray of their own inherit it and use it for theirs; other test clusters set their own.
SESSION_TOKEN_DIR = tempfile.mkdtemp(prefix="rt", dir="/tmp")
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN_PATH"] = new_token(os.path.join(SESSION_TOKEN_DIR, "auth_token"))
os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_TOKEN_DIR, ignore_errors=True)


os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


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


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    """A tiny CIFAR-10 root in torchvision's pickle format: (root, n_train, n_test).

    torchvision checks the real files' MD5 sums; the fake batches cannot match them, so the check is bypassed.
    """
    import torchvision.datasets.cifar as tv_cifar

    from data_factory import write_fake_cifar10

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    root = str(tmp_path / "cifar")
    n_train, n_test = write_fake_cifar10(root)
    return root, n_train, n_test
