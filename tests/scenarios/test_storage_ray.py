"""The shared-storage probe on a real single-node Ray (the rules it applies: tests/unit/io/test_storage.py)."""
from __future__ import annotations

import os

import pytest

from simmim_ray.io import storage


@pytest.mark.slow
def test_probe_on_a_real_single_node_ray(ray_session, tmp_path):
    """The default probe runs a task on every node that checks for a marker file, then removes the marker."""
    assert storage.nodes_missing_path(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []
    assert storage.cluster_node_count() == 1
