"""End-to-end searches through the real CLI: Ray Tune + Optuna + Train (2 workers per trial) on digits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

TINY = ["--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
        "--set", "train.batch_size=64",
        "--set", "model.img_size=16", "--set", "eval.batch_size=128",
        "--confirm", "0"]  # confirmation on Ray: tests/test_isolation.py
RESULT_COLUMNS = {"trial_id", "status", "val_accuracy", "params", "flops", "feasible", "epochs", "wall_s",
                  "model.embed_dim", "mask.ratio", "loss.visible_weight"}


def cli(*args: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "simmim_ray", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def trial_rows(exp: str) -> list[dict]:
    return pq.read_table(os.path.join(exp, "results.parquet")).to_pylist()


def test_search_end_to_end_writes_every_output(tmp_path):
    r = cli("search", "digits_quick", "--trials", "3", "--storage-path", str(tmp_path), "--target-accuracy",
            "0.05", "--grace-period", "1", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    exp = tmp_path / "digits_quick"
    rows = trial_rows(str(exp))
    assert len(rows) == 3 and RESULT_COLUMNS <= set(rows[0])
    assert {row["status"] for row in rows} <= {"complete", "pruned"}
    done = [row for row in rows if row["status"] == "complete"]
    assert done and all(0 <= row["val_accuracy"] <= 1 and row["params"] > 0 and row["flops"] > 0 for row in done)
    # pruned trials carry no (truncated) accuracy and are never feasible
    assert all(row["val_accuracy"] is None and not row["feasible"] for row in rows if row["status"] == "pruned")
    history = pq.read_table(str(exp / "history.parquet")).to_pylist()
    assert {h["trial_id"] for h in history} == {row["trial_id"] for row in rows}
    # the winner is the smallest feasible trial, exported with its config and loadable in one call
    feasible = [row for row in rows if row["feasible"]]
    best = min(feasible, key=lambda row: row["params"])
    metrics = json.loads((exp / "best" / "metrics.json").read_text())
    assert metrics["trial_id"] == best["trial_id"]
    from simmim_ray.export import load_encoder
    from simmim_ray.models import count_params

    enc = load_encoder(str(exp / "best"))
    assert count_params(enc) == best["params"]
    assert (exp / "pareto.png").stat().st_size > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(exp / "tb" / best["trial_id"]))
    study = optuna.load_study(study_name="digits_quick", storage=f"sqlite:///{exp}/study.db")
    states = sorted(t.state.name for t in study.trials)
    assert states == sorted("COMPLETE" if row["status"] == "complete" else "PRUNED" for row in rows)
    assert "Winner:" in r.stdout
    # Tune handed finished and pruned trials' actors to later trials (one process for several trials)
    pids = {json.loads(line)["pid"] for row in rows
            for line in (exp / row["trial_id"] / "result.json").read_text().splitlines()}
    assert len(pids) < len(rows), pids
    # the report reads the stored experiment
    rep = cli("report", str(exp), "--json")
    assert rep.returncode == 0
    assert json.loads(rep.stdout)["winner"]["trial_id"] == best["trial_id"]


@pytest.mark.parametrize("state_period", ["", "60"], ids=["tune-state-2s", "tune-state-60s"])
def test_resume_after_sigkill_keeps_finished_trials_and_runs_none_twice(tmp_path, monkeypatch, state_period):
    """"60": Tune saves its experiment state as seldom as it does on object stores (>= 10 s apart), so a trial
    starts and finishes between two saves and the restored Tune never knows it: its row still comes from
    trials.jsonl, and the searcher's budget (counted from the study) starts no fifth trial."""
    if state_period:
        monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", state_period)
    args = ["search", "digits_quick", "--trials", "4", "--storage-path", str(tmp_path), "--target-accuracy",
            "0.05", "--scheduler", "fifo", *TINY]
    exp = tmp_path / "digits_quick"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "simmim_ray", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    events = exp / "trials.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and (not events.exists() or len(events.read_text().splitlines()) < 2):
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, as a crash would
    proc.wait()
    before = {json.loads(line)["trial_id"] for line in events.read_text().splitlines()}
    assert len(before) >= 2
    r = cli("search", "--resume", str(exp))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = trial_rows(str(exp))
    assert len(rows) == 4 and all(row["status"] == "complete" for row in rows)
    assert before <= {row["trial_id"] for row in rows}
    # no configuration trained twice, and each finished trial trained once (one set of epochs in history)
    history = pq.read_table(str(exp / "history.parquet")).to_pylist()
    for row in rows:
        epochs = sorted(h["epoch"] for h in history if h["trial_id"] == row["trial_id"])
        assert epochs == [1, 2], (row["trial_id"], epochs)
    keys = [tuple(row[k] for k in ("model.embed_dim", "model.depth", "mask.ratio")) for row in rows]
    assert len(set(keys)) == 4
    study = optuna.load_study(study_name="digits_quick", storage=f"sqlite:///{exp}/study.db")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["tune_trial_id"] for t in complete) == sorted(
        row["trial_id"].removeprefix("trial_") for row in rows)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
