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
    from simmim_ray._compat.ray_core import init_local

    port = free_port()
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"  # inherited by every Ray process
    init_local(temp_dir, num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
               configure_logging=False, **kwargs)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fails in seconds when nothing listens at a HOST:PORT (or ray://HOST:PORT) address: ray.init would retry
    the GCS connection for many minutes (20 tries of ~30 s) before giving up."""
    if address.startswith(("http://", "https://")):
        raise UserError(f"--address {address!r}: an http address is the dashboard (for `ray job submit`); "
                        f"use auto, HOST:PORT of the head's GCS, or ray://HOST:10001")
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[1] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if "://" in target or not sep or not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, HOST:PORT of the head's GCS (e.g. 10.0.0.5:6379) "
                        f"or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(f"--address {address!r}: cannot connect to Ray: nothing answers at {host}:{port} "
                        f"({e.strerror or type(e).__name__})") from None


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join `address` or start a private local instance. A search passes log_to_driver=False: its terminal
    shows one line per trial, and worker logs stay in Ray's session directory."""
    import ray

    from simmim_ray.train.launch import RAY_ENV_DEFAULTS, apply_ray_env_defaults

    # Ray processes of a cluster we join inherit their raylet's environment, not ours: the defaults we set (not
    # those the user or a job's runtime_env set) travel in the runtime env
    ours = {k: v for k, v in RAY_ENV_DEFAULTS.items() if k not in os.environ}
    apply_ray_env_defaults()
    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
    if not address and os.environ.get("RAY_ADDRESS", "local") != "local":
        address = "auto"  # inside `ray job submit` (or any shell pointed at a cluster): join it
    try:
        if address:
            ray.init(address=address, configure_logging=False, log_to_driver=log_to_driver,
                     runtime_env={"env_vars": ours} if ours else None)
        else:
            start_local(num_cpus, log_to_driver=log_to_driver)
    except (ConnectionError, ValueError, RuntimeError) as e:
        from simmim_ray._compat.ray_core import version_mismatch

        versions = version_mismatch(e)
        if versions is not None:
            raise UserError(f"--address {address!r}: the cluster runs Ray {versions[0]}, this client has Ray "
                            f"{versions[1]}; a client must match its cluster: install ray=={versions[0]} here "
                            f"(or run the cluster on an image of Ray {versions[1]}, docs/cluster.md)") from None
        if not address:
            raise UserError(f"cannot start a local Ray instance: {str(e).splitlines()[0]}") from None
        raise UserError(f"--address {address!r}: cannot connect to Ray: {str(e).splitlines()[0]}") from None
