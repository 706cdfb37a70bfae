"""Preprocessing on CPU-only nodes: a two-node cluster on this machine, the head (4 CPUs) for the Train workers and
a second node (1 CPU) labelled `simmim-role=preprocess`, as cluster.yaml's cpu.data type is. With
`data.preprocess_nodes=simmim-role=preprocess` every read/decode task runs on the labelled node, none on the node
of the Train workers.

Run as a script (`--drive SPEC`), this file is the training driver: this pytest process may hold another Ray
session, and one process talks to one cluster.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

from cluster_utils import LocalCluster, run_with_cluster

pytestmark = pytest.mark.slow

LABEL = "simmim-role=preprocess"
DECODE_TASK = "MapBatches(_read_decode)"  # the Ray Data operator of train/datasets.py


def drive(spec_path: str) -> None:
    import ray
    from ray.util.state import list_tasks

    with open(spec_path) as f:
        spec = json.load(f)
    ray.init(address=spec["address"], log_to_driver=False, configure_logging=False)
    from simmim_ray.config import Config
    from simmim_ray.train.launch import Resources, apply_ray_env_defaults, make_trainer

    apply_ray_env_defaults()
    trainer = make_trainer(Config.from_dict(spec["config"]), Resources(workers=2, cpus_per_worker=1),
                           storage_path=spec["storage"], name="run", tb_dir=None, max_failures=0)
    result = trainer.fit()
    tasks = list_tasks(filters=[("name", "=", DECODE_TASK)], detail=True, limit=10000,
                       raise_on_missing_output=False)
    nodes = {n["NodeID"]: ("preprocess" if n.get("Labels", {}).get("simmim-role") == "preprocess" else "train")
             for n in ray.nodes()}
    out = {"metrics": result.metrics, "error": None if result.error is None else str(result.error),
           "task_nodes": [nodes.get(t.node_id, "?") for t in tasks if t.node_id],
           "worker_nodes": [nodes.get(i, "?") for i in result.metrics["node_ids"].split(",")]}
    with open(spec["out"], "w") as f:
        json.dump(out, f, default=str)


def test_decode_tasks_run_on_the_labelled_cpu_node_only(tmp_path, tiny_cfg):
    from data_factory import write_parquet_shards

    data = str(tmp_path / "pq")
    write_parquet_shards(data, n=120, shards=3)
    cfg = tiny_cfg.with_overrides({"train.epochs": 1, "train.batch_size": 8, "eval.epochs": 1,
                                   "eval.batch_size": 8, "data.source": "parquet", "data.path": data,
                                   "data.preprocess_nodes": os.environ.get("SIMMIM_TEST_LABEL", LABEL)})
    spec = {"config": cfg.to_dict(), "storage": str(tmp_path / "runs"), "out": str(tmp_path / "out.json")}
    with LocalCluster() as cluster:
        # the head has CPUs to spare beside the workers': only the label keeps the tasks off it
        cluster.start_head(num_cpus=4)
        cluster.add_node("prep", num_cpus=1, labels={"simmim-role": "preprocess"})
        spec["address"] = cluster.address
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        proc = run_with_cluster(cluster, [sys.executable, __file__, "--drive", str(tmp_path / "spec.json")],
                                timeout_s=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "out.json").read_text())
    assert res["error"] is None and res["metrics"]["done"], res
    assert res["worker_nodes"] == ["train", "train"], res  # both Train workers on the head
    assert res["task_nodes"] and set(res["task_nodes"]) == {"preprocess"}, res


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        drive(sys.argv[2])
