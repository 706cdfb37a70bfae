"""simmim_ray/_compat/placement_groups.py: which placement groups count as leaked (Ray's own removal rule, read
from the GCS tables, not from the GCS's creator-dead flag that the race leaves unset), on a fake GCS table; the
private pieces it reads are in this Ray. (A real leak, freed by the resumed search: test_search_e2e.py.)"""
from __future__ import annotations

import pytest
import ray
from ray.core.generated import gcs_pb2

from simmim_ray._compat import placement_groups
from simmim_ray._compat.probe import check

JOB = "02000000"
T = gcs_pb2.PlacementGroupTableData


def actor_id(n: int) -> bytes:
    return bytes([n]) * 12 + bytes.fromhex(JOB)


def pg(n: int, *, state=T.CREATED, job_dead=True, creator: bytes | None = None, detached=False) -> bytes:
    d = T(placement_group_id=bytes([n]) * 14 + bytes.fromhex(JOB), creator_job_id=bytes.fromhex(JOB),
          state=state, creator_job_dead=job_dead, is_detached=detached,
          creator_actor_id=creator if creator is not None else ray.ActorID.nil().binary(),
          creator_actor_dead=False)  # the flag the race leaves unset: never read
    d.bundles.add().unit_resources["CPU"] = 1.0
    return d.SerializeToString()


@pytest.fixture
def gcs(monkeypatch):
    """A fake GCS: `rows` (serialized table rows) and `actors` (hex id -> state)."""
    from ray._private import state as state_mod

    fake = type("Fake", (), {})()
    fake.rows, fake.actors = [], {}
    accessor = type("Accessor", (), {"get_placement_group_table": lambda self: fake.rows})()
    monkeypatch.setattr(state_mod.state, "_connect_and_get_accessor", lambda: accessor)
    monkeypatch.setattr(state_mod.state, "actor_table",
                        lambda aid: {"State": fake.actors[aid]} if aid in fake.actors else {})
    return fake


def test_a_group_is_leaked_only_when_its_job_and_its_creator_are_both_gone(gcs):
    dead, alive, unknown = actor_id(1), actor_id(2), actor_id(3)
    gcs.actors = {dead.hex(): "DEAD", alive.hex(): "ALIVE"}
    gcs.rows = [pg(1, creator=dead),                   # the race: creator dead, flag unset -> leaked
                pg(2),                                 # made by a driver whose job ended -> leaked
                pg(3, creator=unknown),                # creator gone from the actor table -> leaked
                pg(4, creator=alive),                  # a live (detached) creator holds it, as Ray intends
                pg(5, creator=dead, job_dead=False),   # its job still runs: Ray's rule keeps it
                pg(6, creator=dead, detached=True),    # detached: lives until removed
                pg(7, creator=dead, state=T.REMOVED)]  # already gone
    found = placement_groups.find_leaked()
    assert [int(x.placement_group_id[:2], 16) for x in found] == [1, 2, 3]
    assert all(x.job_id == JOB and x.bundles == ({"CPU": 1.0},) for x in found)
    assert str(found[0]).endswith(f"(job {JOB}, 1 CPU)")


def test_the_private_pieces_it_reads_are_in_this_ray():
    assert [check(*c) for c in placement_groups.CHECKS] == [None] * len(placement_groups.CHECKS)
    assert placement_groups.missing() == []


def test_a_ray_without_them_frees_nothing(monkeypatch):
    monkeypatch.setattr(placement_groups, "missing", lambda: ["ray._private.state.state"])
    monkeypatch.setattr(placement_groups, "find_leaked", lambda: pytest.fail("must not read the GCS"))
    assert placement_groups.free_leaked() == []
