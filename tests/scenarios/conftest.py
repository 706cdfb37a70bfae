"""Scenario fixtures: one Ray cluster per test session (per xdist worker) that command-line runs join instead of
each starting a Ray of their own (a start and a stop cost ~10 s on 2 cores)."""
from __future__ import annotations

import os

import pytest

# what a command that joins the cluster must see: its address and token; RAY_API_SERVER_ADDRESS, which the
# session's private instance (ray_session) may have set in this process, points at that instance, not the cluster
JOIN_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_API_SERVER_ADDRESS")


@pytest.fixture(scope="session")
def cli_cluster():
    """A one-node cluster (`ray start --head`) with explicit CPUs and memory, its own ports, temp dir and token;
    stopped at the end of the session, and only the processes it started. As many CPUs as a local start would
    take on a small machine (2..4): the scenarios' concurrency follows the cluster's CPUs."""
    from cluster_utils import GiB, MiB, LocalCluster

    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=max(2, min(4, os.cpu_count() or 2)), memory=8 * GiB,
                           object_store_memory=400 * MiB)
        yield cluster


@pytest.fixture
def join_cluster(cli_cluster, monkeypatch):
    """Every `python -m simmim_ray` this test starts (they inherit os.environ) joins the session's cluster."""
    env = cli_cluster.env({"RAY_ADDRESS": cli_cluster.address})
    for k in JOIN_VARS:
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    return cli_cluster
