"""The session cluster's clean-up after each test (tests/scenarios/conftest.py: settled_cluster): a placement group
still reserved once a test's runs have ended is found through the State API and removed, so the next test's run gets
its CPUs; a group a live creator holds is not what the product's own rule frees."""
from __future__ import annotations

import sys
import time

import pytest
from cluster_utils import run_with_cluster

# a driver whose (detached) actor reserves 1 CPU in a placement group and outlives it; the actor is killed at the
# end by a second driver
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
def test_a_group_still_reserved_after_a_test_is_removed(session_cluster, ray_session):
    from simmim_ray._compat.placement_groups import find_leaked

    assert session_cluster.settle(wait_s=1) == []  # nothing to remove: nothing removed
    made = run_with_cluster(session_cluster, [sys.executable, "-c", RESERVE, session_cluster.address], 120)
    assert made.returncode == 0, made.stderr[-2000:]
    try:
        assert find_leaked() == []  # its creator lives: Ray keeps it on purpose, the product leaves it
        removed = session_cluster.settle(wait_s=1)
        assert len(removed) == 1 and "{'CPU': 1.0}" in removed[0] and "leaked" not in removed[0], removed
        assert session_cluster.settle(wait_s=1) == []
        t0 = time.monotonic()  # the CPU comes back (the raylet hears of the removal within moments)
        while ray_session.available_resources().get("CPU", 0) < 2:
            assert time.monotonic() - t0 < 30, ray_session.available_resources()
            time.sleep(0.2)
    finally:
        run_with_cluster(session_cluster, [sys.executable, "-c", KILL, session_cluster.address], 120)
