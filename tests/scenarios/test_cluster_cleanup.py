"""The session cluster's cleanup between tests (tests/scenarios/conftest.py): a placement group that a finished
driver left reserved is found through the State API and removed, so the next test's run gets its CPUs."""
from __future__ import annotations

import sys

import pytest
from cluster_utils import run_with_cluster

# a driver whose (detached) actor reserves 1 CPU in a placement group and outlives it: the shape of the group a
# finished search left behind in CI; the actor is killed at the end by a second driver
RESERVE = """
import ray, sys
from ray.util.placement_group import placement_group
ray.init(address=sys.argv[1], namespace="cleanup-test", log_to_driver=False)
@ray.remote(num_cpus=0)
class Holder:
    def reserve(self):
        ray.get(placement_group([{"CPU": 1}]).ready())
h = Holder.options(lifetime="detached", name="holder").remote()
ray.get(h.reserve.remote())
"""
KILL = """
import ray, sys
ray.init(address=sys.argv[1], namespace="cleanup-test", log_to_driver=False)
ray.kill(ray.get_actor("holder"))
"""


@pytest.mark.slow
def test_a_group_reserved_by_a_finished_driver_is_removed(session_cluster, ray_session):
    assert session_cluster.remove_orphan_placement_groups() == []  # nothing to remove: nothing removed
    made = run_with_cluster(session_cluster, [sys.executable, "-c", RESERVE, session_cluster.address], 120)
    assert made.returncode == 0, made.stderr[-2000:]
    try:
        removed = session_cluster.remove_orphan_placement_groups()
        assert len(removed) == 1 and "{'CPU': 1.0}" in removed[0], removed
        assert session_cluster.remove_orphan_placement_groups() == []
    finally:
        run_with_cluster(session_cluster, [sys.executable, "-c", KILL, session_cluster.address], 120)
