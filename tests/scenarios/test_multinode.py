"""A real two-node Ray cluster on this machine: `ray start --head` plus a second `ray start --address`, each with
its own custom resource (node_a / node_b), temp dir, ports, CPUs and memory, token auth on.

The training driver runs in a subprocess: this pytest process may already hold a Ray session (conftest's
`ray_session`), and one process can only talk to one Ray cluster. Run as a script (`--drive SPEC`), this file is
that driver.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import threading
import time

import pytest

from cluster_utils import FAST_FAILURE_DETECTION, LocalCluster, run_with_cluster

pytestmark = pytest.mark.slow


def node_names() -> dict:
    """node id -> our name for it (the custom resource each node was started with)."""
    import ray

    out = {}
    for n in ray.nodes():
        if n.get("Alive"):
            names = [r for r in n["Resources"] if r.startswith("node_")]
            out[n["NodeID"]] = names[0] if names else "?"
    return out


def watch_workers(path: str, stop: threading.Event) -> None:
    """Records the node of every Train worker seen alive (first attempt and retries), via Ray's State API."""
    from ray.util.state import list_actors

    seen = {}
    while not stop.is_set():
        try:
            for a in list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                                 raise_on_missing_output=False):
                seen[a.actor_id] = a.node_id
        except Exception:  # the State API can be briefly unavailable while a node dies
            pass
        with open(path + ".tmp", "w") as f:
            json.dump(seen, f)
        os.replace(path + ".tmp", path)
        stop.wait(0.5)


def drive(spec_path: str) -> None:
    import ray

    with open(spec_path) as f:
        spec = json.load(f)
    ray.init(address=spec["address"], log_to_driver=False, configure_logging=False)
    from simmim_ray.config import Config
    from simmim_ray.train.launch import Resources, apply_ray_env_defaults, make_trainer
    from simmim_ray.io.storage import check_shared_storage, cluster_node_count

    apply_ray_env_defaults()
    deadline = time.monotonic() + 60
    while cluster_node_count() < spec["nodes"] and time.monotonic() < deadline:
        time.sleep(0.5)
    names = node_names()
    # the storage path is a local directory; both nodes live on this host, so the check must find it shared
    check_shared_storage(spec["storage"], cluster_node_count())
    stop = threading.Event()
    watcher = threading.Thread(target=watch_workers, args=(spec["workers_file"], stop), daemon=True)
    watcher.start()
    trainer = make_trainer(Config.from_dict(spec["config"]),
                           Resources(workers=2, cpus_per_worker=1, placement_strategy=spec["strategy"]),
                           storage_path=spec["storage"], name="run", tb_dir=None, max_failures=spec["max_failures"])
    result = trainer.fit()
    stop.set()
    watcher.join()
    out = {"names": names, "metrics": result.metrics, "error": None if result.error is None else str(result.error),
           "checkpoint": result.checkpoint.path if result.checkpoint else None}
    with open(spec["out"], "w") as f:
        json.dump(out, f, default=str)


def _spec(cluster: LocalCluster, tmp_path, cfg, strategy: str, max_failures: int, nodes: int = 2) -> str:
    # one directory both nodes see (the NFS of this host), fresh for each test
    storage = os.path.join(cluster.root, "shared", tmp_path.name)
    spec = {"address": cluster.address, "config": cfg.to_dict(), "storage": storage, "strategy": strategy,
            "max_failures": max_failures, "nodes": nodes, "out": str(tmp_path / "out.json"),
            "workers_file": str(tmp_path / "workers.json")}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _result(spec_path: str) -> dict:
    with open(json.load(open(spec_path))["out"]) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def cluster():
    """Head (node_a, 2 logical CPUs: room for both workers once node_b is gone) + node_b (1 CPU), fast
    dead-node detection. Stopped, every process of it, at the end; the check that nothing survives is part of
    the test."""
    c = LocalCluster()
    try:
        c.start_head(num_cpus=2, resources={"node_a": 1}, system_config=FAST_FAILURE_DETECTION)
        yield c
    finally:
        root = c.root
        c.shutdown()
    assert c.alive_pids() == [], "processes of the test cluster survived its shutdown"
    assert not os.path.exists(root)


def _with_node_b(cluster: LocalCluster):
    """node_b, started if a previous test stopped it."""
    for n in cluster.nodes:
        if n.resources.get("node_b"):
            return n
    return cluster.add_node("b", num_cpus=1, resources={"node_b": 1})


def test_cluster_refuses_a_client_with_the_wrong_token(cluster):
    """Token auth is on for clusters started with `ray start` (as cluster.yaml does): the right token lists jobs,
    a wrong one is refused."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    cmd = [ray_bin, "job", "list", "--address", cluster.dashboard_url]
    ok = run_with_cluster(cluster, cmd, timeout_s=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = run_with_cluster(cluster, cmd, timeout_s=120, env={"RAY_AUTH_TOKEN": "0" * 64})
    # refused at the GCS ("Unauthenticated") or the dashboard ("Invalid authentication token")
    assert bad.returncode != 0
    assert re.search(r"unauthenticated|invalid authentication token", bad.stdout + bad.stderr, re.I), bad.stderr


def test_two_workers_on_two_nodes_checkpoint_to_shared_storage(cluster, tmp_path, tiny_cfg):
    _with_node_b(cluster)
    cfg = tiny_cfg.with_overrides({"train.epochs": 2, "eval.epochs": 1})
    spec = _spec(cluster, tmp_path, cfg, "STRICT_SPREAD", max_failures=0)
    proc = run_with_cluster(cluster, [sys.executable, __file__, "--drive", spec], timeout_s=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = _result(spec)
    storage = json.load(open(spec))["storage"]
    # every data-parallel rank reported its node: one rank on each node
    ids = res["metrics"]["node_ids"].split(",")
    assert sorted(res["names"][i] for i in ids) == ["node_a", "node_b"], res
    assert res["error"] is None and res["metrics"]["done"] and 0 <= res["metrics"]["val_accuracy"] <= 1
    # the final checkpoint landed on the shared storage path and holds the last epoch
    assert res["checkpoint"].startswith(storage + os.sep), res["checkpoint"]
    import torch

    state = torch.load(os.path.join(res["checkpoint"], "state.pt"), weights_only=True)
    assert state["epoch"] == 2


def test_node_lost_mid_trial_is_retried_and_finishes(cluster, tmp_path, tiny_cfg):
    """SIGKILL every process of the second node (a machine that vanished) once the first checkpoint is stored:
    Ray Train's FailureConfig restarts the worker group on what is left, from that checkpoint, and finishes."""
    import subprocess

    node_b = _with_node_b(cluster)
    cfg = tiny_cfg.with_overrides({"train.epochs": 6, "eval.epochs": 1})
    # SPREAD (not STRICT_): one worker per node while both live, both on the head after the loss
    spec = _spec(cluster, tmp_path, cfg, "SPREAD", max_failures=2)
    s = json.load(open(spec))
    driver = subprocess.Popen([sys.executable, __file__, "--drive", spec], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=cluster.env({"RAY_ADDRESS": cluster.address}))
    try:
        deadline = time.monotonic() + 300
        # a checkpoint counts once the controller registered it (its snapshot names it); a state.pt on disk may
        # still be in flight, and a restart then rightly starts over
        while not (glob.glob(os.path.join(s["storage"], "**", "checkpoint_manager_snapshot.json"), recursive=True)
                   and os.path.exists(s["workers_file"])):
            assert driver.poll() is None, driver.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.5)
        before = json.load(open(s["workers_file"]))
        cluster.stop_node(node_b, graceful=False)
        out, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, out[-4000:]
    res = _result(spec)
    head_id = next(i for i, n in res["names"].items() if n == "node_a")
    b_id = next(i for i, n in res["names"].items() if n == "node_b")
    assert b_id in before.values(), f"no Train worker ran on node_b before it was stopped: {before}"
    after = json.load(open(s["workers_file"]))
    assert len(after) > len(before), f"the worker group was not restarted: {before} -> {after}"
    assert res["error"] is None and res["metrics"]["done"] and res["metrics"]["epoch"] == 6
    # it continued from the checkpoint stored before the loss instead of starting over
    assert 1 <= res["metrics"]["resumed_from_epoch"] < 6, res["metrics"]
    # the finishing attempt ran entirely on the surviving node
    assert set(res["metrics"]["node_ids"].split(",")) == {head_id}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        drive(sys.argv[2])
