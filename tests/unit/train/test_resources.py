"""The one resource check `train` and `search` share: requests that could never be placed are refused."""
from __future__ import annotations

import pytest

from simmim_ray.errors import UserError
from simmim_ray.train.resources import check_fits, local_resources, starts_locally


def test_check_fits_names_flags_and_the_machine():
    check_fits(2, 1.0, 1.0, False, {"CPU": 2}, "--workers", "this machine")
    check_fits(4, 0.5, 1.0, False, {"CPU": 2}, "--workers", "this machine")  # fractions add up exactly
    with pytest.raises(UserError, match=r"^--workers x --cpus-per-worker = 1000 CPUs, but this machine has 2; "
                                        r"the job could never start$"):
        check_fits(1000, 1.0, 1.0, False, {"CPU": 2}, "--workers", "this machine")
    with pytest.raises(UserError, match=r"--workers-per-trial x --gpus-per-worker = 2 GPUs, but the cluster has 0; "
                                        r"one trial could never start"):
        check_fits(2, 1.0, 1.0, True, {"CPU": 8}, "--workers-per-trial", "the cluster", job="one trial")
    check_fits(2, 1.0, 1.0, False, {"CPU": 8}, "--workers", "x")  # no GPU asked: none needed


def test_local_resources_and_when_ray_starts_locally(monkeypatch):
    have = local_resources()
    assert have["CPU"] >= 1 and have["GPU"] >= 0
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert starts_locally(None) and not starts_locally("auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # inside `ray job submit`: joins that cluster
    assert not starts_locally(None)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert starts_locally(None)
