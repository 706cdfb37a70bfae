"""train/ray_init.py's private local Ray: a dashboard port taken between finding it free and Ray binding it costs
one more try, not the run; any other refusal is not retried."""
from __future__ import annotations

import os

import pytest

from simmim_ray.train import ray_init

OCCUPIED = "Failed to bind to 127.0.0.1:{} because it's already occupied. You can use `ray start --dashboard-port ...`"


@pytest.fixture
def tries(monkeypatch):
    """Ports handed out in order (1001, 1002, ...), and the ports init_local was asked to use."""
    ports, asked = iter(range(1001, 1100)), []
    monkeypatch.setattr(ray_init, "free_port", lambda: next(ports))
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    return asked


def test_a_port_taken_before_ray_binds_it_is_replaced(tries, monkeypatch):
    def init_local(temp_dir, dashboard_port, **kw):
        tries.append(dashboard_port)
        if len(tries) == 1:
            raise ValueError(OCCUPIED.format(dashboard_port))

    monkeypatch.setattr(ray_init, "init_local", init_local)
    ray_init.start_local(num_cpus=1)
    assert tries == [1001, 1002]
    assert os.environ["RAY_API_SERVER_ADDRESS"] == "http://127.0.0.1:1002"  # the State API of the Ray that started


def test_three_taken_ports_or_another_refusal_are_raised(tries, monkeypatch):
    def occupied(temp_dir, dashboard_port, **kw):
        tries.append(dashboard_port)
        raise ValueError(OCCUPIED.format(dashboard_port))

    monkeypatch.setattr(ray_init, "init_local", occupied)
    with pytest.raises(ValueError, match="already occupied"):
        ray_init.start_local(num_cpus=1)
    assert tries == [1001, 1002, 1003]

    def other(temp_dir, dashboard_port, **kw):
        tries.append(dashboard_port)
        raise ValueError("num_cpus must be a non-negative number")

    tries.clear()
    monkeypatch.setattr(ray_init, "init_local", other)
    with pytest.raises(ValueError, match="num_cpus"):
        ray_init.start_local(num_cpus=1)
    assert tries == [1004]


def test_a_joined_cluster_gets_back_what_finished_jobs_left_reserved_with_one_line(monkeypatch, capsys):
    from simmim_ray._compat import placement_groups

    leak = placement_groups.Leaked("ab" * 18, "02000000", ({"CPU": 1.0},))
    monkeypatch.setattr(placement_groups, "free_leaked", lambda: [leak])
    ray_init.free_leaked_placement_groups()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"simmim-ray: freed 1 placement group(s) that finished jobs left reserved and Ray did not remove: "
                   f"{'ab' * 18} (job 02000000, 1 CPU)"]

    def unreadable():
        raise ConnectionError("GCS unavailable")

    monkeypatch.setattr(placement_groups, "free_leaked", unreadable)
    ray_init.free_leaked_placement_groups()  # best effort: the run goes on, nothing printed
    monkeypatch.setattr(placement_groups, "free_leaked", lambda: [])
    ray_init.free_leaked_placement_groups()
    assert capsys.readouterr().err == ""
