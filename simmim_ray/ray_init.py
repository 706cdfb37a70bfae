"""Starting or joining Ray from the CLI and tests."""
from __future__ import annotations

import os
import socket

from simmim_ray.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local(num_cpus: int | None = None, temp_dir: str | None = None, **kwargs) -> None:
    """Start a private local Ray instance whose processes find *its* State API, even when other Ray instances
    run on the same host (Train's placement-group cleaner otherwise fails with "multiple active Ray instances").
    The dashboard (which serves the State API) binds to loopback only."""
    import ray

    port = free_port()
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"  # inherited by every Ray process
    ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
             _temp_dir=temp_dir, configure_logging=False, **kwargs)


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    import ray

    from simmim_ray.launch import apply_ray_env_defaults

    apply_ray_env_defaults()
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, configure_logging=False)
        else:
            start_local(num_cpus)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"--address {address!r}: cannot connect to Ray: {str(e).splitlines()[0]}") from None
