"""Faults a cluster run meets, each on a real (tiny) Ray run:

- a Train worker SIGKILLed mid-run: the worker group restarts from the latest checkpoint and finishes without
  redoing the epochs before it;
- a trial whose loss turns non-finite: marked `error` with its reason in results.parquet, the search goes on;
- corrupt and truncated images in an image folder and in a Parquet shard: skipped and counted, not fatal.

The killed worker's run starts its own Ray (RAY_ADDRESS=local, own RAY_TMPDIR) in its own session, so every
process signalled here is a descendant of a process this test started; the non-finite search joins the session's
cluster.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from benchmarks.proc_meter import alive, cmdline, descendants
from data_factory import make_image_folder, truncated_png, write_parquet_shards
from proc_utils import kill_run

TINY = {
    "model.img_size": 16, "model.patch_size": 4, "model.embed_dim": 32, "model.depth": 2, "model.num_heads": 2,
    "mask.patch_size": 8, "mask.ratio": 0.5, "train.warmup_epochs": 1, "train.log_images": False,
    "eval.epochs": 1,
}


# ---- processes of one run --------------------------------------------------------------------------------------


class CliRun:
    """`python -m simmim_ray ARGS` with a private local Ray (`private`, for runs whose processes are signalled),
    else on the cluster os.environ names (join_cluster); killed with everything it started on exit."""

    def __init__(self, args: list[str], cwd, log_path, private: bool = True) -> None:
        self.ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: socket paths must fit 107 bytes
        env = dict(os.environ)
        if private:
            env.update(RAY_ADDRESS="local", RAY_TMPDIR=self.ray_tmp)
            env.pop("RAY_API_SERVER_ADDRESS", None)  # the session cluster's; the run sets its own
        self.log_path = str(log_path)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "simmim_ray", *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        self.seen: set[int] = set()

    def tree(self) -> list[int]:
        pids = descendants(self.proc.pid)
        self.seen.update(pids)
        return pids

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run timed out:\n{self.text()[-4000:]}")

    def text(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def close(self) -> None:
        self.tree()
        kill_run(self.proc, self.seen)  # and the Ray processes that left the group, if any
        self.log.close()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def tb_steps(tb_dir: str, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return sorted(e.step for e in acc.Scalars(tag))


def checkpoint_epochs(run_dir: str) -> list[int]:
    import torch

    out = []
    for p in glob.glob(os.path.join(run_dir, "checkpoint_*", "state.pt")):
        try:
            out.append(int(torch.load(p, map_location="cpu", weights_only=True)["epoch"]))
        except Exception:  # noqa: BLE001 - a checkpoint being written or deleted right now
            pass
    return sorted(out)


# ---- 1. a Train worker killed mid-run ----------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_killed_mid_run_resumes_from_latest_checkpoint(tmp_path):
    epochs = 5
    sets = {**TINY, "model.embed_dim": 64, "model.depth": 4, "model.num_heads": 4,  # a few seconds per epoch
            "train.epochs": epochs, "eval.proxy": "none"}
    args = ["train", "--workers", "2", "--output", "out"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    run = CliRun(args, tmp_path, tmp_path / "log.txt")
    run_dir = str(tmp_path / "out" / "train")
    try:
        deadline = time.time() + 240
        while not checkpoint_epochs(run_dir):
            assert run.proc.poll() is None, f"run ended before its first checkpoint:\n{run.text()[-4000:]}"
            assert time.time() < deadline, "no checkpoint after 240 s"
            run.tree()
            time.sleep(0.2)
        time.sleep(1.0)  # the controller collects reports on its health-check interval; let it register this one
        done_at_kill = checkpoint_epochs(run_dir)
        workers = [p for p in run.tree() if cmdline(p).startswith("ray::RayTrainWorker")]
        assert len(workers) == 2, [cmdline(p) for p in run.tree()]
        os.kill(workers[0], signal.SIGKILL)
        # an epoch can end (and rank 0 save its checkpoint) between the listing above and the kill
        at_kill = checkpoint_epochs(run_dir)
        rc = run.wait(timeout=300)
        log = run.text()
    finally:
        run.close()
    assert rc == 0, log[-4000:]
    assert max(done_at_kill) < epochs, "the kill came after the last epoch: nothing was tested"
    assert not alive(workers[0])

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["epoch"] == epochs and metrics["done"] is True
    resumed = metrics["resumed_from_epoch"]
    # the latest checkpoint at the kill, or (if Ray had not registered it yet) the one before it; never scratch.
    # One epoch boundary can fall between the listing and the kill (an epoch lasts over a second, that gap a
    # fraction of one), and its checkpoint may still be uploading when listed again right after the kill.
    assert 1 <= resumed and max(done_at_kill) - 1 <= resumed <= max(done_at_kill) + 1, (resumed, done_at_kill, at_kill)
    assert f"resumed at epoch {resumed} from the latest checkpoint" in log

    # rank 0 logs one TensorBoard point per epoch it trained: epochs up to the checkpoint exactly once (not
    # redone), every epoch present, and only the epoch that was cut off may appear twice
    steps = tb_steps(str(tmp_path / "out" / "tb"), "loss/loss")
    print(f"checkpoints before / right after the kill: epochs {done_at_kill} / {at_kill}; resumed at {resumed}; "
          f"TensorBoard steps {steps}")
    assert set(steps) == set(range(1, epochs + 1)), steps
    for e in range(1, resumed + 1):
        assert steps.count(e) == 1, (e, steps)
    assert len(steps) <= epochs + 1, steps


# ---- 2. a trial with a non-finite loss --------------------------------------------------------------------------
@pytest.mark.slow
def test_nonfinite_trial_is_marked_error_and_search_goes_on(tmp_path, join_cluster):
    import pyarrow.parquet as pq

    (tmp_path / "lr.yaml").write_text("params:\n  train.base_lr: {choice: [1000000.0, 0.002]}\n")
    (tmp_path / "points.yaml").write_text("- {train.base_lr: 1000000.0}\n- {train.base_lr: 0.002}\n")
    args = ["search", "lr.yaml", "--trials", "2", "--storage-path", "exps", "--target-accuracy", "0.05",
            "--scheduler", "fifo", "--points", "points.yaml", "--max-failures", "0", "--confirm", "0",
            "--workers-per-trial", "1"]  # both trials at once on the cluster's 2 CPUs
    for k, v in {**TINY, "train.epochs": 2, "eval.proxy": "none"}.items():
        args += ["--set", f"{k}={v}"]
    run = CliRun(args, tmp_path, tmp_path / "log.txt", private=False)
    try:
        rc = run.wait(timeout=360)
        log = run.text()
    finally:
        run.close()
    assert rc == 0, log[-4000:]  # the good trial reached the (low) target after the bad one failed

    rows = {r["train.base_lr"]: r for r in pq.read_table(tmp_path / "exps" / "lr" / "results.parquet").to_pylist()}
    assert set(rows) == {1e6, 0.002}, rows
    bad, good = rows[1e6], rows[0.002]
    assert bad["status"] == "error", bad
    assert "NonFiniteLoss" in bad["error"] and "non-finite loss" in bad["error"], bad["error"]
    assert bad["feasible"] is False and bad["val_accuracy"] is None
    assert good["status"] == "complete" and good["error"] == "", good
    assert good["val_accuracy"] is not None and good["feasible"] is True
    # the progress line of the failed trial names the reason too
    assert any(ln.startswith("[") and " error " in ln and "NonFiniteLoss: non-finite loss" in ln
               for ln in log.splitlines()), log[-4000:]
    from simmim_ray.search.record.experiment import Experiment
    from simmim_ray.search.record.ledger import TRIAL_ENDED

    events = Experiment(str(tmp_path / "exps" / "lr")).ledger.events(TRIAL_ENDED)
    assert sorted(e["status"] for e in events) == ["complete", "error"]


# ---- 3. corrupt and truncated images ----------------------------------------------------------------------------
def _fit_one_worker(cfg, tmp_path, name: str) -> dict:
    from simmim_ray.train.launch import Resources, make_trainer

    # one worker on one of the session's 2 CPUs: Ray Data's read tasks need the other
    trainer = make_trainer(cfg, Resources(workers=1, cpus_per_worker=1.0, threads=1),
                           storage_path=str(tmp_path / "runs"), name=name, tb_dir=None)
    return trainer.fit().metrics


@pytest.mark.slow
def test_corrupt_images_are_skipped_and_counted(ray_session, tmp_path):
    """Both sources stream (Ray Data): a bad image is a row that does not decode, counted in `skipped_images`."""
    from simmim_ray.config import Config
    from simmim_ray.data.scan import scan
    from simmim_ray.data.stream_batches import local_batches

    base = {**TINY, "train.epochs": 1, "train.batch_size": 64, "eval.proxy": "none", "eval.protocol": "linear",
            "eval.labeled_fraction": 0.5, "data.test_fraction": 0.1, "data.val_fraction": 0.1}

    def bad_in_pool(cfg) -> int:
        # what the run must skip: the pool's rows that do not decode (the pool is one batch: every row read once)
        plan = scan(cfg)
        assert plan.sizes["pretrain"] < 2 * 64
        return sum(int((~b["valid"]).sum()) for b in local_batches(cfg, plan, "pretrain", "eval", 64)())

    folder = str(tmp_path / "imgs")
    made = make_image_folder(folder, classes=3, per_class=6, corrupt=3, truncated=3)
    cfg_f = Config().with_overrides({**base, "data.source": "imagefolder", "data.path": folder})

    shards = str(tmp_path / "pq")
    write_parquet_shards(shards, n=24, shards=2, split=True, corrupt_rows=3)  # rows 0-2: garbage, all "train"
    # and one truncated PNG among the training rows of the second shard
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(shards, "part-001.parquet")
    table = pq.read_table(path)
    rows = table.to_pylist()
    assert rows[0]["split"] == "train"
    rows[0]["image"] = truncated_png()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    cfg_p = Config().with_overrides({**base, "data.source": "parquet", "data.path": shards})

    # one worker: on 1 of the session's 2 CPUs, Ray Data's read tasks get the other
    m_f = _fit_one_worker(cfg_f, tmp_path, "folder")
    m_p = _fit_one_worker(cfg_p, tmp_path, "parquet")

    assert made["bad"] == 6
    assert m_f["skipped_images"] == bad_in_pool(cfg_f) > 0, m_f
    assert m_p["skipped_images"] == bad_in_pool(cfg_p) > 0, m_p
    for m in (m_f, m_p):  # the run went on to the end and evaluated
        assert m["done"] is True and 0.0 <= m["val_accuracy"] <= 1.0
