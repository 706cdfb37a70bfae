"""Joining a real cluster of another Ray version: refused with one line naming both versions, exit 2.

Needs a `ray` executable of another Ray version in SIMMIM_OTHER_RAY (.ci/run passes the floor venv's); skipped
without one. tests/unit/_compat/test_compat.py checks the same refusal against Ray's own version-check error,
everywhere."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cluster_utils

OTHER_RAY = os.environ.get("SIMMIM_OTHER_RAY", "")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isfile(OTHER_RAY), reason="SIMMIM_OTHER_RAY: no other Ray's `ray`")]


def other_version() -> str:
    out = subprocess.run([OTHER_RAY, "--version"], capture_output=True, text=True, timeout=120).stdout
    return out.split()[-1]  # "ray, version 2.53.0"


@pytest.mark.parametrize("command", ["train", "search"])
def test_joining_a_cluster_of_another_ray_version_exits_2_naming_both(tmp_path, monkeypatch, command):
    import ray

    theirs = other_version()
    assert theirs != ray.__version__, "SIMMIM_OTHER_RAY must be another Ray version"
    monkeypatch.setattr(cluster_utils, "RAY_BIN", OTHER_RAY)
    with cluster_utils.LocalCluster() as cluster:
        cluster.start_head(num_cpus=1)
        args = [sys.executable, "-m", "simmim_ray", command, "--address", cluster.address]
        args += ["--output", str(tmp_path / "out")] if command == "train" else ["--storage-path", str(tmp_path)]
        r = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=cluster.env())
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert lines[-1].startswith("simmim-ray: error: --address") and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"Ray {theirs}" in lines[-1] and f"Ray {ray.__version__}" in lines[-1]
