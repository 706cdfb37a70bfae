"""Starting or joining Ray from the CLI and tests."""
from __future__ import annotations

import os
import socket
import sys

from simmim_ray import signals
from simmim_ray._compat.ray_core import init_local, version_mismatch
from simmim_ray.errors import UserError


PORT_TRIES = 3  # a port found free and taken before Ray binds it: rare; three in a row, something else is wrong


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local(num_cpus: int | None = None, temp_dir: str | None = None, **kwargs) -> None:
    """Start a private local Ray instance whose processes find *its* State API, even when other Ray instances
    run on the same host (Train's placement-group cleaner otherwise fails with "multiple active Ray instances").
    The dashboard (which serves the State API) binds to loopback only. Its port is found free here and bound by
    Ray moments later: should another process take it in between, Ray refuses it before starting anything, and
    another free port is tried."""
    for attempt in range(1, PORT_TRIES + 1):
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"  # inherited by every Ray process
        try:
            init_local(temp_dir, num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                       dashboard_port=port, configure_logging=False, **kwargs)
            return
        except ValueError as e:
            if "already occupied" not in str(e) or attempt == PORT_TRIES:
                raise


# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray Client server) answers
# with a SETTINGS frame of its own, anything else does not
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
H2_SETTINGS = 4
CONNECT_LIMIT_S = 120.0  # ray.init joining a cluster that answers gRPC but not as Ray: a bound of our own


def check_reachable(address: str, timeout_s: float = 5.0, shown: str = "") -> None:
    """Fails in seconds when nothing listens at a HOST:PORT (or ray://HOST:PORT) address, or something that does
    not speak gRPC does: ray.init would retry the GCS connection for many minutes (20 tries of ~30 s) before giving
    up. `shown` names where the address came from (default: --address)."""
    shown = shown or f"--address {address!r}"
    if address.startswith(("http://", "https://")):
        raise UserError(f"{shown}: an http address is the dashboard (for `ray job submit`); "
                        f"use auto, HOST:PORT of the head's GCS, or ray://HOST:10001")
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[1] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if "://" in target or not sep or not host or not port.isdigit():
        raise UserError(f"{shown}: expected auto, HOST:PORT of the head's GCS (e.g. 10.0.0.5:6379) "
                        f"or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            if os.environ.get("RAY_USE_TLS", "0").strip().lower() not in ("1", "true"):  # as Ray reads it
                conn.sendall(H2_PREFACE)
                head = conn.recv(9)
                if len(head) < 4 or head[3] != H2_SETTINGS:
                    raise UserError(f"{shown}: {host}:{port} answers, but not as Ray (no gRPC reply); "
                                    f"give the head's GCS port (6379 by default) or ray://HOST:10001")
    except socket.timeout:
        raise UserError(f"{shown}: {host}:{port} accepts connections but did not answer as Ray within "
                        f"{timeout_s:g} s") from None
    except OSError as e:
        raise UserError(f"{shown}: cannot connect to Ray: nothing answers at {host}:{port} "
                        f"({e.strerror or type(e).__name__})") from None


def given_address(address: str | None) -> tuple[str, str]:
    """(the address this process will join, how messages name it): --address, else RAY_ADDRESS (what `ray.init`
    reads for "auto"); ("", "") to start Ray here."""
    env = os.environ.get("RAY_ADDRESS", "local")
    if address and not (address == "auto" and env not in ("local", "auto", "")):
        return address, f"--address {address!r}"
    if address or env != "local":  # inside `ray job submit` (or any shell pointed at a cluster): join it
        return env or "auto", f"RAY_ADDRESS={env!r}"
    return "", ""


def check_address(address: str | None) -> None:
    """The Ray address a command will join answers as Ray (nothing to check when Ray starts here)."""
    target, shown = given_address(address)
    if target:
        check_reachable(target, shown=shown)


def plain_ray_lines(stream=None) -> None:
    """Ray's lines that still reach the driver (a raylet's note that a worker died) carry colour codes even in a
    file; Ray's RAY_COLOR_PREFIX=0 leaves them plain when our output is not a terminal (unless the user set it)."""
    if not (stream or sys.stdout).isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join `address` or start a private local instance. A search passes log_to_driver=False: its terminal
    shows one line per trial, and worker logs stay in Ray's session directory."""
    import ray  # Ray when it starts: the CLI imports this module at startup

    from simmim_ray.train.launch import RAY_ENV_DEFAULTS, apply_ray_env_defaults

    # Ray processes of a cluster we join inherit their raylet's environment, not ours: the defaults we set (not
    # those the user or a job's runtime_env set) travel in the runtime env
    ours = {k: v for k, v in RAY_ENV_DEFAULTS.items() if k not in os.environ}
    apply_ray_env_defaults()
    plain_ray_lines()
    if ray.is_initialized():
        return
    target, shown = given_address(address)
    if target:
        check_reachable(target, shown=shown)
        address = address or "auto"
    try:
        if address:
            with signals.bounded(CONNECT_LIMIT_S, f"{shown}: Ray did not answer within {CONNECT_LIMIT_S:g} s"):
                ray.init(address=address, configure_logging=False, log_to_driver=log_to_driver,
                         runtime_env={"env_vars": ours} if ours else None)
        else:
            start_local(num_cpus, log_to_driver=log_to_driver)
        signals.reassert()  # ray.init replaced the CLI's SIGTERM handler with its own
    except (ConnectionError, ValueError, RuntimeError) as e:
        versions = version_mismatch(e)
        if versions is not None:
            raise UserError(f"--address {address!r}: the cluster runs Ray {versions[0]}, this client has Ray "
                            f"{versions[1]}; a client must match its cluster: install ray=={versions[0]} here "
                            f"(or run the cluster on an image of Ray {versions[1]}, docs/cluster.md)") from None
        if not address:
            raise UserError(f"cannot start a local Ray instance: {str(e).splitlines()[0]}") from None
        raise UserError(f"--address {address!r}: cannot connect to Ray: {str(e).splitlines()[0]}") from None
    if address:
        free_leaked_placement_groups()


def free_leaked_placement_groups() -> None:
    """Frees, on a cluster just joined, the placement groups that finished jobs left reserved and Ray did not remove
    (simmim_ray/_compat/placement_groups.py), with one line saying so: otherwise their CPUs stay lost to this run
    and every later one. Best effort: a cluster that does not answer the question is left as it is."""
    from simmim_ray._compat import placement_groups

    try:
        freed = placement_groups.free_leaked()
    except Exception:  # noqa: BLE001 - a clean-up of others' leftovers must never stop the run
        return
    if freed:
        print(f"simmim-ray: freed {len(freed)} placement group(s) that finished jobs left reserved and Ray did not "
              f"remove: {', '.join(map(str, freed))}", file=sys.stderr, flush=True)
