"""Real local Ray clusters and S3 servers for tests, started and stopped exactly (never `ray stop`).

Each `LocalCluster` gets its own root under /tmp (short: Ray's socket paths must stay under 107 bytes), its own
token file (token auth stays on; the user's ~/.ray/auth_token is neither read nor written), its own ports, and
explicit CPUs, memory and object-store memory per node (otherwise every node claims the whole host). Nodes run as
`ray start --block` children; stopping a node signals exactly the processes it started: the `ray start` process,
its descendants, and any process whose command line names the node's temp dir. Linux only (reads /proc).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from benchmarks.proc_meter import all_pids, descendants, start_time  # the one walk of a process tree
from repo_root import REPO

HELPERS = os.path.dirname(os.path.abspath(__file__))

RAY_BIN = os.path.join(os.path.dirname(sys.executable), "ray")
MiB = 1024 ** 2
GiB = 1024 ** 3
# GCS notices a dead raylet in about a second instead of ~25 s (the defaults: 3 s period x 5 failures + timeout)
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def new_token(path: str) -> str:
    """Writes a new random Ray auth token to `path` (readable by its owner only); -> path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def _pids_naming(text: str) -> set[int]:
    out = set()
    needle = text.encode()
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    out.add(pid)
        except OSError:
            continue
    return out


@dataclass
class RayNode:
    name: str
    proc: subprocess.Popen
    temp_dir: str
    log_path: str
    resources: dict

    def pids(self) -> dict[int, int | None]:
        """pid -> start time of every process this node started (collected now: workers come and go)."""
        pids = {self.proc.pid} | set(descendants(self.proc.pid)) | _pids_naming(self.temp_dir)
        pids.discard(os.getpid())
        return {p: start_time(p) for p in pids}

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


class LocalCluster:
    """A Ray cluster of `ray start` processes on 127.0.0.1. Use as a context manager; `shutdown()` is idempotent."""

    def __init__(self, token_path: str | None = None) -> None:
        """`token_path`: an existing token file to use (the session's, which the pytest process itself reads:
        tests/conftest.py); default a new token of this cluster's own."""
        self.root = tempfile.mkdtemp(prefix="rc", dir="/tmp")
        self.token_path = token_path or new_token(os.path.join(self.root, "auth_token"))
        self.nodes: list[RayNode] = []
        self.gcs_port = self.dashboard_port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, extra: dict | None = None) -> dict:
        """Environment for anything that talks to this cluster: token auth on, with this cluster's token."""
        env = dict(os.environ)
        # RAY_AUTH_TOKEN would win over our token file; RAY_API_SERVER_ADDRESS (set by a private instance this
        # pytest process may hold, see ray_init.start_local) would send State API and job calls to that instance
        for k in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            env.pop(k, None)
        if self.dashboard_port:
            # as ray_init.start_local does: with several Ray instances on this host (a test's private one, say),
            # Train's placement-group cleaner cannot tell which State API is its own and never frees a stopped
            # trial's CPUs; every process of this cluster inherits this from its raylet
            env["RAY_API_SERVER_ADDRESS"] = self.dashboard_url
        # a driver script run against the cluster (a test file run with --drive) imports the test helpers and the
        # repository's packages as pytest's `pythonpath` gives them to the tests
        env["PYTHONPATH"] = os.pathsep.join(p for p in (HELPERS, REPO, env.get("PYTHONPATH", "")) if p)
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path,
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                    # SIGTERM'd nodes stop at once instead of draining for up to 30 s
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
        env.update(extra or {})
        return env

    def start_head(self, num_cpus: float = 1, memory: int = 2 * GiB, object_store_memory: int = 200 * MiB,
                   resources: dict | None = None, system_config: dict | None = None, env: dict | None = None,
                   timeout_s: float = 120) -> RayNode:
        self.gcs_port, self.dashboard_port, client, agent = free_ports(4)
        args = ["--head", f"--port={self.gcs_port}", "--node-ip-address=127.0.0.1",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}"]
        if system_config:
            args.append(f"--system-config={json.dumps(system_config)}")
        return self._start("head", args, num_cpus, memory, object_store_memory, resources, env, timeout_s)

    def add_node(self, name: str, num_cpus: float = 1, memory: int = 2 * GiB, object_store_memory: int = 200 * MiB,
                 resources: dict | None = None, env: dict | None = None, timeout_s: float = 120,
                 labels: dict | None = None) -> RayNode:
        """`labels`: Ray node labels (`ray start --labels`), e.g. {"simmim-role": "preprocess"}."""
        assert self.gcs_port, "start_head() first"
        (agent,) = free_ports(1)
        args = [f"--address={self.address}", "--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={agent}"]
        if labels:
            args.append("--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()))
        return self._start(name, args, num_cpus, memory, object_store_memory, resources, env, timeout_s)

    def _start(self, name, args, num_cpus, memory, object_store_memory, resources, env, timeout_s) -> RayNode:
        temp_dir = os.path.join(self.root, name[:8])
        log_path = os.path.join(self.root, f"{name}.log")
        cmd = [RAY_BIN, "start", "--block", *args, f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}",
               f"--memory={int(memory)}", f"--object-store-memory={int(object_store_memory)}",
               "--min-worker-port=0", "--max-worker-port=0",  # OS-assigned: two raylets share this host
               "--disable-usage-stats", f"--resources={json.dumps(resources or {})}"]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(env),
                                    start_new_session=True)  # keep terminal signals meant for pytest away
        node = RayNode(name, proc, temp_dir, log_path, dict(resources or {}))
        self.nodes.append(node)
        deadline = time.monotonic() + timeout_s
        while "block forever" not in node.log():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = node.log()[-3000:]
                self.stop_node(node, graceful=False)
                raise RuntimeError(f"ray start ({name}) did not come up (rc={proc.poll()}):\n{tail}")
            time.sleep(0.5)
        return node

    def stop_node(self, node: RayNode, graceful: bool = True, timeout_s: float = 10) -> None:
        """graceful: SIGTERM to `ray start --block` (it stops its processes, the raylet tells GCS it is leaving),
        then to whatever is left; otherwise SIGKILL everything at once, like a machine that vanished. Whatever
        is still alive after `timeout_s` gets SIGKILL."""
        pids = node.pids()
        if graceful:
            self._kill({node.proc.pid: pids.get(node.proc.pid)}, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5)
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        self._kill({node.proc.pid: pids.get(node.proc.pid)}, sig)  # first, so it cannot react to the others
        node.proc.poll()  # reap it, so it does not linger as a zombie
        pids.update(node.pids())  # anything started while we were stopping
        self._kill(pids, sig)
        deadline = time.monotonic() + timeout_s
        while any(t is not None and start_time(p) == t for p, t in pids.items()) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        self._kill(pids, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=5)
        if node in self.nodes:
            self.nodes.remove(node)

    @staticmethod
    def _kill(pids: dict[int, int | None], sig: int) -> None:
        for pid, started in pids.items():
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)

    def alive_pids(self) -> list[int]:
        """Processes of this cluster still running (for tests that check a stop was complete)."""
        return sorted(_pids_naming(self.root) - {os.getpid()})

    def status(self) -> str:
        """`ray status` of this cluster (nodes, resources in use, pending demands)."""
        out = run_with_cluster(self, [RAY_BIN, "status", "--address", self.address], timeout_s=60)
        return out.stdout + out.stderr

    def settle(self, wait_s: float = 15) -> list[str]:
        """Hands the cluster back idle after a test: waits up to `wait_s` for every placement group to be gone (a
        finished run's is removed within a second or two), then removes what is left: first what the product frees
        (simmim_ray/_compat/placement_groups.py: Ray's rule, where a race left a dead job's group reserved), then
        any other group that is not itself detached (at a test's end no run of this session is active, this
        process's included); -> what it removed. Read from the State API, not `ray status`, whose resource lines
        lag by seconds. This process must be a driver of this cluster (tests/scenarios/conftest.py: ray_session)."""
        import ray
        from ray.util.state import list_placement_groups

        from simmim_ray._compat.placement_groups import free_leaked, remove

        assert ray.is_initialized() and ray.get_runtime_context().gcs_address.endswith(f":{self.gcs_port}")

        def left():
            return [pg for pg in list_placement_groups(address=self.dashboard_url, detail=True,
                                                       filters=[("state", "!=", "REMOVED")]) if not pg.is_detached]

        deadline = time.monotonic() + wait_s
        while (groups := left()) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not groups:
            return []
        freed = free_leaked()
        removed = [f"{leak} (leaked: freed by the product's rule)" for leak in freed]
        gone = {leak.placement_group_id for leak in freed}  # the State API may list them a moment longer
        for pg in left():
            if pg.placement_group_id in gone:
                continue
            remove(pg.placement_group_id)
            removed.append(f"{pg.placement_group_id} of job {pg.creator_job_id}: "
                           f"{[b['unit_resources'] for b in pg.bundles]}")
        return removed

    def shutdown(self) -> None:
        for node in reversed(list(self.nodes)):  # workers before the head
            self.stop_node(node, graceful=True)
        leftovers = {p: start_time(p) for p in self.alive_pids()}
        self._kill(leftovers, signal.SIGKILL)
        keep = os.environ.get("SIMMIM_TEST_KEEP_RAY_LOGS")  # a directory: keep the nodes' logs for debugging
        if keep:
            shutil.copytree(self.root, os.path.join(keep, os.path.basename(self.root)), ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets", "runtime_resources"))
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def run_with_cluster(cluster: LocalCluster, cmd: list[str], timeout_s: float, env: dict | None = None,
                     **kw) -> subprocess.CompletedProcess:
    """Runs a driver (script, CLI, `ray job submit`) against `cluster`, with its token, bounded in time."""
    return subprocess.run(cmd, env=cluster.env({"RAY_ADDRESS": cluster.address, **(env or {})}),
                          capture_output=True, text=True, timeout=timeout_s, **kw)
