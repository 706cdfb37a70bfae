"""A whole search whose --storage-path is an s3:// URI, against a real S3 API (moto's server on 127.0.0.1).

The search runs as a subprocess with a private Ray instance and the S3 credentials in its environment only. Tune's
trial state, Train's checkpoints, TensorBoard files and our outputs must all land in the bucket; this process
then reads them back from S3 alone.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import signal
import tempfile
import time

import optuna
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import repo_root
import torch

from benchmarks.s3_server import moto_s3
from proc_utils import e2e_space, ran, shrinking
from simmim_ray.search.record.ledger import TRIAL_ENDED

pytestmark = pytest.mark.slow

REPO = repo_root.REPO
TINY = ["--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
        "--set", "model.img_size=16", "--grace-period", "1", "--confirm", "0",  # confirmation: test_isolation.py
        "--workers-per-trial", "1"]  # two trials at once on 2 CPUs; DDP: test_search_e2e.py


def _files(fs: pafs.FileSystem, path: str) -> list[str]:
    """Every object under `path`, relative to it."""
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(i.path[len(path) + 1:] for i in infos if i.type == pafs.FileType.File)


def _lines(fs: pafs.FileSystem, path: str) -> list[str]:
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode().splitlines()
    except (FileNotFoundError, OSError):
        return []


def _ended(fs: pafs.FileSystem, exp: str) -> set[str]:
    """Trials with an end event in the experiment's ledger (one file per trial under ledger/)."""
    out = set()
    for name in _files(fs, f"{exp}/ledger"):
        for ln in _lines(fs, f"{exp}/ledger/{name}"):
            try:
                e = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if e.get("event") == TRIAL_ENDED:
                out.add(e["trial_id"])
    return out


def test_search_with_s3_storage_path_writes_everything_to_the_bucket(tmp_path, monkeypatch):
    """The driver is SIGKILLed after the first trial ends and the search is resumed by a fresh driver (no local
    study cache, a new Ray instance): what it needs (inputs, study, Tune state, the ledger) is in the bucket."""
    with moto_s3() as s3:
        storage_uri = s3.uri("searches")
        exp_uri = s3.uri("searches/digits_quick")
        # the driver keeps the SQLite study here while the search runs (Experiment.study_cache)
        study_cache = os.path.join(os.path.expanduser("~/.cache/simmim-ray"),
                                   hashlib.sha1(exp_uri.encode()).hexdigest()[:16])
        ray_tmp = tempfile.mkdtemp(prefix="rs3", dir="/tmp")  # short: Ray's socket paths must stay < 107 bytes
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
        env.update(s3.env, RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
        for k, v in s3.env.items():  # this process reads the bucket with the same credentials, nothing else
            monkeypatch.setenv(k, v)
        fs, exp = pafs.FileSystem.from_uri(exp_uri)
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        cmd = [sys.executable, "-m", "simmim_ray", "search"]
        try:
            with open(tmp_path / "first.log", "w") as log:
                first = subprocess.Popen([*cmd, e2e_space(tmp_path), *shrinking(tmp_path, 2), "--trials", "2",
                                          "--storage-path", storage_uri,
                                          "--target-accuracy", "0.05", *TINY], cwd=cwd, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
                deadline, study_before_any_trial = time.time() + 300, False
                while time.time() < deadline and not _ended(fs, exp):
                    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                    # the new study is copied into the bucket before any trial ends (a resume needs it)
                    study_before_any_trial |= fs.get_file_info(f"{exp}/study.db").type == pafs.FileType.File
                    time.sleep(0.5)
                os.killpg(first.pid, signal.SIGKILL)  # the driver and everything it started
                first.wait()
            before = _ended(fs, exp)
            assert study_before_any_trial
            assert before, (tmp_path / "first.log").read_text()[-3000:]
            shutil.rmtree(study_cache, ignore_errors=True)  # a fresh driver
            shutil.rmtree(ray_tmp, ignore_errors=True)
            r = subprocess.run([*cmd, "--resume", exp_uri], cwd=cwd, env=env, capture_output=True, text=True,
                               timeout=420)
        finally:
            shutil.rmtree(study_cache, ignore_errors=True)
            shutil.rmtree(ray_tmp, ignore_errors=True)
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
        assert "Winner:" in r.stdout
        assert not os.listdir(cwd), "a URI storage path must not write into the working directory"
        files = _files(fs, exp)

        table = pq.read_table(f"{exp}/results.parquet", filesystem=fs)
        assert {"trial_id", "status", "val_accuracy", "params", "flops", "feasible", "epochs", "model.embed_dim",
                "mask.ratio"} <= set(table.column_names)
        rows = table.to_pylist()
        # a kill just after Tune started a trial leaves it `interrupted` (never continued, no accuracy), as in
        # test_search_e2e's sigkill tests: not one of the search's trials
        lost = [row for row in rows if row["status"] == "interrupted"]
        assert all(row["val_accuracy"] is None and not row["feasible"] for row in lost), lost
        rows = [row for row in rows if row["status"] != "interrupted"]
        assert len(rows) == 2 and {row["status"] for row in rows} <= {"complete", "pruned"}
        assert before <= {row["trial_id"] for row in rows}
        done = [row for row in rows if row["status"] == "complete"]
        assert done and all(0 <= row["val_accuracy"] <= 1 and row["params"] > 0 for row in done)
        assert pq.read_table(f"{exp}/history.parquet", filesystem=fs).num_rows >= 2  # >= 1 epoch each

        # Train's checkpoints were written to S3 by Ray itself; Tune's per-trial state too, except for a trial
        # that ended between two of Tune's state saves before the kill (its row comes from the ledger)
        assert sum(f"{row['trial_id']}/result.json" in files for row in rows) >= 1
        for row in rows:
            assert any(f.startswith(f"train_runs/{row['trial_id']}/checkpoint_") and f.endswith("/state.pt")
                       for f in files), row["trial_id"]
        # TensorBoard event files copied from the rank-0 worker's local dir to the bucket
        best = min((row for row in rows if row["feasible"]), key=lambda row: row["params"])
        assert any(f.startswith(f"tb/{best['trial_id']}/events.out.tfevents") for f in files)
        # the winner, exported next to the results; its weights load
        metrics = json.loads(fs.open_input_stream(f"{exp}/best/metrics.json").read())
        assert metrics["trial_id"] == best["trial_id"]
        with fs.open_input_stream(f"{exp}/best/encoder.pt") as f:
            assert torch.load(io.BytesIO(f.read()), weights_only=True)
        assert fs.get_file_info(f"{exp}/pareto.png").size > 1000
        assert "inputs/digits_quick.yaml" in files  # what --resume reads on a driver without the space file

        # the Optuna study was kept on the driver and copied into the experiment as trials ended (the fresh driver
        # continued it): a valid SQLite database with one finished trial per row
        db = tmp_path / "study_from_s3.db"
        db.write_bytes(fs.open_input_stream(f"{exp}/study.db").read())
        study = optuna.load_study(study_name="digits_quick", storage=f"sqlite:///{db}")
        assert sorted(t.state.name for t in ran(study)) == sorted(
            "COMPLETE" if row["status"] == "complete" else "PRUNED" for row in rows)

        # `report` reads the experiment straight from S3
        rep = subprocess.run([sys.executable, "-m", "simmim_ray", "report", exp_uri, "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert rep.returncode == 0, rep.stderr[-2000:]
        assert json.loads(rep.stdout)["winner"]["trial_id"] == best["trial_id"]
