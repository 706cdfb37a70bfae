"""Streamed training through Ray Data: never starved of CPUs, every split streamed, exact evaluation counts.

The run is the user's command, `simmim-ray train --set data.source=parquet ...` with the default 2 workers x 1
CPU, joining a Ray cluster of exactly 2 CPUs (the session's, bounded in time): before the CPU plan, Ray Data got
no CPU there and the run read 0 rows forever. It runs from the data's folder with a relative `data.path`: Ray's
workers run elsewhere, so that failed in the workers (`does not exist`) until the driver made it absolute.
"""
from __future__ import annotations

import json

import pytest

from data_factory import write_parquet_shards
from proc_utils import run_simmim, set_args
from simmim_ray.errors import UserError
from simmim_ray.train.data_cpus import plan_data_cpus

TINY = ["model.img_size=16", "model.patch_size=4", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
        "mask.patch_size=8", "mask.ratio=0.5", "train.epochs=2", "train.warmup_epochs=1", "train.batch_size=8",
        "train.log_images=false", "eval.epochs=1", "eval.batch_size=8"]


@pytest.mark.parametrize("cpus,workers,per_worker,want", [
    (2, 2, 1.0, (0.5, 1.0, 1.0, True)),  # the default on 2 cores: workers give Ray Data one CPU
    (4, 2, 1.0, (1.0, 2.0, 1.0, False)),  # room left: untouched, Ray Data gets the rest
    (1, 1, 1.0, (0.5, 0.5, 0.5, True)),  # one core: half each
    (2, 2, 0.5, (0.5, 1.0, 1.0, False)),
    (8, 16, 1.0, (1.0, 0.0, 1.0, False)),  # more than the cluster has now: an autoscaler may add nodes
    (0, 2, 1.0, (1.0, 0.0, 1.0, False)),  # unknown
])
def test_ray_data_keeps_a_cpu(cpus, workers, per_worker, want):
    c = plan_data_cpus(cpus, workers, per_worker)
    assert (c.worker, c.data, c.task, c.lowered) == want
    if cpus and workers * per_worker <= cpus:
        assert workers * c.worker + c.data == pytest.approx(cpus)


def test_no_cpu_left_for_ray_data_is_refused_naming_the_flag():
    with pytest.raises(UserError, match=r"^--cpus-per-worker: 4 workers on 1 CPUs leave Ray Data no CPU"):
        plan_data_cpus(1, 4, 0.25)


@pytest.mark.slow
def test_default_parquet_train_on_a_two_cpu_ray_completes_with_exact_counts(tmp_path, cli_cluster):
    from simmim_ray.io.configio import load_config
    from simmim_ray.data.scan import scan
    from simmim_ray.data.stream_batches import local_batches

    data = str(tmp_path / "pq")
    write_parquet_shards(data, n=160, shards=4, corrupt_rows=4)
    rc, log = run_simmim(["train", "--output", "out", *set_args(dict(
        kv.split("=", 1) for kv in [*TINY, "data.source=parquet", "data.path=pq"]))],
                         tmp_path, timeout=420, cluster=cli_cluster)
    assert rc == 0, log[-4000:]
    assert "each worker requests 0.5 CPU and Ray Data keeps 1" in log
    assert f"path: {data}" in (tmp_path / "out" / "config.yaml").read_text()  # made absolute by the driver
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    cfg = load_config(None, [*TINY, "data.source=parquet", f"data.path={data}"])
    plan = scan(cfg)

    def readable(split: str) -> int:
        return sum(int(b["valid"].sum()) for b in local_batches(cfg, plan, split, "eval", 64)())

    # every validation and test image once over the two ranks (no duplicates, none dropped), corrupt ones skipped
    assert (m["val_count"], m["test_count"]) == (readable("val"), readable("test"))
    # each rank ran the same steps over its equal share of the pre-training pool: rows // 2 // 8 whole batches
    per_rank = plan.sizes["pretrain"] // 2 // 8 * 8
    assert m["images"] + m["skipped_images"] == per_rank
    assert m["done"] is True and m["epoch"] == 2 and 0 <= m["val_accuracy"] <= 1
