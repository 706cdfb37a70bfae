"""train/datasets.py without Ray: a streamed split's read task. What Ray Data's coordinators and Train's controller
unpickle (every pipeline, never run there) imports no torch; the task decodes where it runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pyarrow as pa
from ray import cloudpickle

from data_factory import write_parquet_shards
from simmim_ray.data.scan import scan
from simmim_ray.data.stream_read import Selection, read_unit
from simmim_ray.train.datasets import read_task

# a fresh process, as a Ray actor is: unpickles the task, then runs it on one unit (a batch of Ray Data's items)
CHILD = """
import json, pickle, sys
with open(sys.argv[1], "rb") as f:
    fn, batch = pickle.load(f)
unpickled = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
out = list(fn(batch))
print(json.dumps({"unpickled": unpickled, "ran": "torch" in sys.modules, "rows": sum(len(o["valid"]) for o in out),
                  "valid": sum(int(o["valid"].sum()) for o in out), "img": list(out[0]["img"].shape[1:]),
                  "mask": list(out[0]["mask"].shape[1:])}))
"""


def test_a_read_task_unpickles_without_torch_and_decodes_where_it_runs(tmp_path, tiny_cfg):
    write_parquet_shards(str(tmp_path / "pq"), n=40, shards=2)
    c = tiny_cfg.with_overrides({"data.source": "parquet", "data.path": str(tmp_path / "pq")})
    plan = scan(c)
    unit = plan.units_for("pretrain")[0]
    batch = pa.Table.from_pylist([asdict(unit)])  # what split_dataset's from_items gives a task
    with open(tmp_path / "task.pkl", "wb") as f:
        cloudpickle.dump((read_task(plan, c, "pretrain", "pretrain"), batch), f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "task.pkl")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout)
    assert seen["unpickled"] == []  # neither torch nor torchvision until the task runs
    assert seen["ran"] is True
    rows = read_unit(Selection.of(plan), unit, "pretrain").num_rows
    assert seen["rows"] == seen["valid"] == rows > 0
    assert seen["img"] == [3, 16, 16] and seen["mask"] == [4, 4]
