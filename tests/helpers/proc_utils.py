"""Helpers for tests that run the command line in a process of its own, or compare directory trees."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from benchmarks.proc_meter import alive


def run_simmim(args: list[str], cwd, timeout: float, cluster=None) -> tuple[int, str]:
    """`python -m simmim_ray ARGS` in `cwd`, joining `cluster` (a cluster_utils.LocalCluster, e.g. the session's
    `cli_cluster`) or else with a fresh local Ray in its own short temp dir (never someone else's cluster); on
    timeout the process group it started, a local Ray included, is killed and the test fails with the log's tail.
    -> (exit code, stdout + stderr)."""
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    if cluster is not None:
        env = cluster.env({"RAY_ADDRESS": cluster.address})
    else:
        env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-m", "simmim_ray", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # what the cluster was doing when the run stalled (resources held, demands pending), before the kill frees it
        state = f"\n{cluster.status()}" if cluster is not None else ""
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"simmim-ray {args[0]} timed out:\n{log[-3000:]}{state}")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return proc.returncode, log


def kill_run(proc: subprocess.Popen, seen: set[int], wait_s: float = 30.0) -> None:
    """SIGKILLs `proc`'s process group (started with start_new_session) and every process `seen` below it: a Ray
    worker can leave the group and would go on writing into the run's output until it noticed its raylet gone. Then
    waits (up to `wait_s`) until they are all gone, so the test reads (or copies) a run nothing still writes to."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    until = time.time() + wait_s
    while any(alive(pid) for pid in seen) and time.time() < until:
        time.sleep(0.1)


def set_args(sets: dict) -> list[str]:
    """{"a.b": 1} -> ["--set", "a.b=1"]"""
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def tree(root) -> dict[str, str]:
    """Every file under `root` -> sha256 of its bytes: what 'nothing written' compares."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# The space the end-to-end search tests run: the digits data of the default space, with continuous keys beside the
# widths (so every trial is a distinct point) and named digits_quick like the default; its own file, so the default
# recipe can change without changing what these tests check.
E2E_SPACE = """params:
  model.embed_dim: {int: [16, 64], step: 16}
  model.depth: {int: [1, 2]}
  model.num_heads: {choice: [1, 2]}
  mask.ratio: {uniform: [0.4, 0.8]}
  loss.visible_weight: {uniform: [0.0, 0.3]}
"""


def e2e_space(root) -> str:
    """Writes E2E_SPACE as ROOT/spaces/digits_quick.yaml (the experiment takes the file's name); -> its path."""
    path = os.path.join(str(root), "spaces", "digits_quick.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(E2E_SPACE)
    return path


def shrinking(root, n: int) -> list[str]:
    """`--points FILE` of `n` E2E_SPACE configurations, each smaller than the last: at a target every trial meets,
    the search skips any configuration that cannot beat the smallest feasible one, so these all run, in order."""
    path = os.path.join(str(root), f"shrinking_{n}.yaml")
    with open(path, "w") as f:
        for w in (64, 48, 32, 16)[:n]:
            f.write(f"- {{model.embed_dim: {w}, model.depth: 2, model.num_heads: 1, mask.ratio: 0.6, "
                    f"loss.visible_weight: 0.1}}\n")
    return ["--points", path]


def trial_pids(exp, trial_ids) -> set[int]:
    """The pids of the Tune actors that ran these trials (every report in each trial's result.json names one): one
    per trial where Tune ends each trial's actor, fewer where it hands actors on (`reuse_actors`)."""
    out = set()
    for t in trial_ids:
        with open(os.path.join(str(exp), t, "result.json")) as f:
            out.update(json.loads(line)["pid"] for line in f)
    return out


def ran(study) -> list:
    """The study trials Tune ran: not a repeat the searcher answered from its twin (`repeat_of`), not a sample that
    could not beat the incumbent (`skipped`), not an orphan of a killed driver (`orphaned`)."""
    return [t for t in study.trials
            if not {"repeat_of", "skipped", "orphaned"} & set(t.user_attrs)]
