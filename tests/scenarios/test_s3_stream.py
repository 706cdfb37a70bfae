"""The big-data path end to end, small: an ImageNet-shaped folder of JPEGs (varied sizes, 5 classes) is converted
to Parquet straight into S3 (moto's server on 127.0.0.1), then a 1-trial search of `imagenet_swin.yaml`, its own
keys with tiny sizes and epochs through --set, streams its data from the bucket. The commands run as
subprocesses, with the S3 credentials in their environment only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from benchmarks.s3_server import moto_s3
from data_factory import make_jpeg_folder

pytestmark = pytest.mark.slow

# imagenet_swin.yaml's fixed keys kept (swinv2, patch 4, mask patch 32, Parquet), sizes cut for 2 CPUs
TINY = ["model.img_size=64", "model.window_size=2", "train.batch_size=8", "eval.batch_size=8", "train.epochs=1",
        "train.warmup_epochs=0", "eval.epochs=1", "train.log_images=false"]
# one point of the space: its smaller width at its shallower depths (every trial streams the same way)
POINTS = ("- {model.embed_dim: 48, model.depths: [2, 2, 6, 2], model.heads: [3, 6, 12, 24], model.drop_path: 0.1, "
          "mask.ratio: 0.6, loss.visible_weight: 0.1, loss.norm_target: false}\n")


def test_convert_to_s3_then_search_streams_from_the_bucket(tmp_path, monkeypatch):
    src = str(tmp_path / "imagenet")
    made = make_jpeg_folder(src, classes=5, per_class=20)
    with moto_s3() as s3:
        data_uri = s3.uri("imagenet-parquet")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
        ray_tmp = tempfile.mkdtemp(prefix="rs3d", dir="/tmp")  # short: Ray's socket paths must stay < 107 bytes
        env.update(s3.env, RAY_ADDRESS="local", RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1",
                   RAY_USAGE_STATS_ENABLED="0")
        cmd = [sys.executable, "-m", "simmim_ray"]
        try:
            conv = subprocess.run([*cmd, "convert", src, data_uri, "--from", "imagefolder", "--rows-per-shard", "25"],
                                  env=env, capture_output=True, text=True, timeout=300)
            assert conv.returncode == 0, conv.stderr[-3000:]
            assert f"{made['images']} images in 4 shard(s) -> {data_uri}" in conv.stdout
            sets = [*TINY, f"data.path={data_uri}"]
            (tmp_path / "points.yaml").write_text(POINTS)
            # one candidate confirmed with one seed: the answer stage's Train jobs stream from the bucket too
            argv = [*cmd, "search", "imagenet_swin", "--trials", "1", "--warm-start", "0", "--grace-period", "1",
                    "--target-accuracy", "0.01", "--storage-path", str(tmp_path / "exp"), "--points",
                    str(tmp_path / "points.yaml"), "--confirm", "1", "--confirm-seeds", "1",
                    # one Train worker per run: streaming into DDP workers is test_ray_data.py's and data_scaling's
                    "--workers-per-trial", "1"]
            for s in sets:
                argv += ["--set", s]
            r = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])

        for k, v in s3.env.items():  # this process reads the bucket with the same credentials, nothing else
            monkeypatch.setenv(k, v)
        fs, base = pafs.FileSystem.from_uri(data_uri)
        shards = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(base)) if i.path.endswith(".parquet"))
        assert len(shards) == 4
        from simmim_ray.io.configio import load_config
        from simmim_ray.data.scan import scan

        plan = scan(load_config(None, ["data.source=parquet", *sets]))
        assert plan.num_classes == 5 and sum(plan.sizes.values()) == made["images"]
        assert plan.classes == sorted(os.listdir(src))  # class names travel in the Parquet metadata

    rows = pq.read_table(tmp_path / "exp" / "imagenet_swin" / "results.parquet").to_pylist()
    assert len(rows) == 1 and {row["status"] for row in rows} == {"complete"}, rows
    for row in rows:  # every validation image of the bucket, once, in the trial
        assert row["val_count"] == plan.sizes["val"] and 0 <= row["val_accuracy"] <= 1
        assert row["model.embed_dim"] == 48
    # and every test image, once, in the confirmation's Train job (the trial never reads the test split)
    from simmim_ray.search.record.experiment import Experiment

    conf = Experiment(str(tmp_path / "exp" / "imagenet_swin")).ledger.events("confirmation")
    assert [len(e["runs"]) for e in conf] == [1], conf
    assert conf[0]["runs"][0]["test_count"] == plan.sizes["test"], conf
