"""Placement groups Ray should have removed and did not: Ray's own rule, applied where Ray missed it.

Ray removes a (non-detached) placement group once both its creator job and its creator actor are dead. When the
actor dies while its request to create the group is still on the way (seen: a search's driver SIGKILLed while a
trial's Train controller was starting its worker group), the GCS never marks the creator dead, Train's
placement-group cleaner has not been told of the group yet, and the group keeps its CPUs reserved until the cluster
stops: on a cluster that is a worker's CPUs lost for every later job, and a streamed run whose Ray Data then waits
for a CPU forever. `free_leaked()` finds them: job dead, creator actor dead (or none), by the GCS's tables (no
public API names a group's creator actor), and removes them with the public `remove_placement_group`.
On a Ray without these private pieces it finds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from simmim_ray._compat.probe import missing as _missing

STATE = "ray._private.state"


@dataclass(frozen=True)
class Leaked:
    placement_group_id: str  # hex
    job_id: str  # hex
    bundles: tuple[dict, ...]  # unit resources per bundle

    def __str__(self) -> str:
        cpus = sum(b.get("CPU", 0.0) for b in self.bundles)
        return f"{self.placement_group_id} (job {self.job_id}, {cpus:g} CPU)"


def find_leaked() -> list[Leaked]:
    """The connected cluster's placement groups whose creator job and creator actor are both dead but that are
    still reserved. Needs `ray.init` first."""
    import ray
    from ray._private.state import state  # private: the GCS tables, which name a group's creator actor
    from ray.core.generated import gcs_pb2

    table = gcs_pb2.PlacementGroupTableData
    found = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = table.FromString(raw)
        if pg.state == table.REMOVED or pg.is_detached or not pg.creator_job_dead:
            continue
        creator = ray.ActorID(pg.creator_actor_id)
        # the GCS's own flag is what the race leaves unset: read the actor's state instead
        if not creator.is_nil() and state.actor_table(creator.hex()).get("State", "DEAD") != "DEAD":
            continue  # a live (detached) creator still holds it, as Ray intends
        found.append(Leaked(pg.placement_group_id.hex(), pg.creator_job_id.hex(),
                            tuple(dict(b.unit_resources) for b in pg.bundles)))
    return found


def free_leaked() -> list[Leaked]:
    """Removes what `find_leaked` finds; -> what it removed (empty where this Ray lacks the pieces)."""
    if missing():
        return []
    removed = []
    for leak in find_leaked():
        remove(leak.placement_group_id)
        removed.append(leak)
    return removed


def remove(placement_group_id: str) -> None:
    """Removes the placement group of this hex id (Ray's public call takes a handle, which the tables do not give)."""
    import ray
    from ray.util.placement_group import PlacementGroup

    ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(placement_group_id))))


# probe.check arguments; each has a test in tests/unit/_compat/test_compat.py
CHECKS = ((STATE, "state"),
          (STATE, "GlobalState._connect_and_get_accessor"),
          (STATE, "GlobalState.actor_table", ("actor_id",)))
# the GCS table's fields read here (generated code: checked on the loaded message, not in source)
FIELDS = ("state", "is_detached", "creator_job_dead", "creator_actor_id", "placement_group_id", "creator_job_id",
          "bundles")


def missing() -> list[str]:
    try:
        from ray.core.generated import gcs_pb2
    except ImportError:
        return ["ray.core.generated.gcs_pb2 (no such module)"]
    have = {f.name for f in gcs_pb2.PlacementGroupTableData.DESCRIPTOR.fields}
    return _missing(*CHECKS) + [f"gcs_pb2.PlacementGroupTableData.{f}" for f in FIELDS if f not in have]
