"""End-to-end searches through the real CLI: Ray Tune + Optuna + Train (2 workers per trial) on digits."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import optuna
import pyarrow.parquet as pq
import pytest
from proc_utils import e2e_space, kill_run, ran, shrinking, tree, trial_pids

from benchmarks.proc_meter import descendants
from simmim_ray._compat import ENV_VAR
from simmim_ray.metrics import REPLAYED
from simmim_ray.search.record.experiment import Experiment
from simmim_ray.search.record.ledger import INTERRUPTED, TRIAL_ENDED, TRIAL_RESULT

pytestmark = pytest.mark.slow

TINY = ["--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
        "--set", "train.batch_size=64",
        "--set", "model.img_size=16", "--set", "eval.batch_size=128",
        "--confirm", "0"]  # confirmation on Ray: tests/scenarios/test_isolation.py
# what a kill-and-resume test needs of a trial is that it runs and ends: one Train worker each (two trials at once on
# two CPUs); the DDP path of a search is the end-to-end tests' (2 workers, one trial at a time)
RESUMABLE = [*TINY, "--workers-per-trial", "1"]
RESULT_COLUMNS = {"trial_id", "status", "val_accuracy", "params", "flops", "feasible", "epochs", "wall_s",
                  "model.embed_dim", "mask.ratio", "loss.visible_weight"}


def cli(*args: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "simmim_ray", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def trial_rows(exp: str) -> list[dict]:
    return pq.read_table(os.path.join(exp, "results.parquet")).to_pylist()


@pytest.mark.floor_smoke
def test_search_end_to_end_on_the_public_trial_path_writes_every_output(tmp_path, monkeypatch, join_cluster):
    """A 2-trial search with ASHA on the public trial path (Ray's TuneReportCallback and TorchConfig, no actor
    reuse), forced: it finishes, writes every output, each trial in its own actor, and says which path ran. The
    driver chooses the path and hands it to the trials, so the variable need only reach the driver (the joined
    cluster's processes never see it). The default (lean) path's searches: every other search test here, and its
    actor reuse in tests/scenarios/test_isolation.py."""
    monkeypatch.setenv(ENV_VAR, "public")
    r = cli("search", e2e_space(tmp_path), *shrinking(tmp_path, 2), "--trials", "2", "--storage-path", str(tmp_path),
            "--target-accuracy", "0.05", "--grace-period", "1", *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "simmim-ray: public trial path (SIMMIM_RAY_TRIAL_PATH=public)" in r.stderr
    exp = tmp_path / "digits_quick"
    rows = trial_rows(str(exp))
    assert len(rows) == 2 and RESULT_COLUMNS <= set(rows[0])
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
    from simmim_ray.io.export import load_encoder
    from simmim_ray.models import count_params

    enc = load_encoder(str(exp / "best"))
    assert count_params(enc) == best["params"]
    assert (exp / "pareto.png").stat().st_size > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(exp / "tb" / best["trial_id"]))
    study = optuna.load_study(study_name="digits_quick", storage=f"sqlite:///{exp}/study.db")
    states = sorted(t.state.name for t in ran(study))
    assert states == sorted("COMPLETE" if row["status"] == "complete" else "PRUNED" for row in rows)
    assert "Winner:" in r.stdout
    # the terminal in a log (not a TTY): no Optuna INFO line, no colour or redraw codes, counts in one format
    assert "A new study created" not in r.stdout + r.stderr
    assert "\x1b[" not in r.stdout and "\r" not in r.stdout and "e+0" not in r.stdout
    assert "RAY_AUTH_MODE=disabled" not in r.stdout  # Ray's banner goes to stderr; ours never repeats it
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("[")]) == 2  # one line per trial
    # Tune ended each trial's actor (and with it the trial's Train run)
    pids = trial_pids(exp, [row["trial_id"] for row in rows])
    assert len(pids) == len(rows), pids
    assert (exp / "trial_path").read_text().strip() == "public"
    # the report reads the stored experiment
    rep = cli("report", str(exp), "--json")
    assert rep.returncode == 0
    assert json.loads(rep.stdout)["winner"]["trial_id"] == best["trial_id"]


def trained(exp) -> dict[str, list[dict]]:
    """Each trial's reports that came from training (not a recorded final result reported again)."""
    out: dict[str, list[dict]] = {}
    for e in Experiment(str(exp)).ledger.events(TRIAL_RESULT):
        if not e["result"].get(REPLAYED):
            out.setdefault(e["trial_id"], []).append(e["result"])
    return out


def start_and_kill(args: list[str], exp, log_path, ended: int) -> set[str]:
    """Runs a search until `ended` trials have ended, then SIGKILLs its driver and everything it started, as a
    crash would; -> the trials ended in the ledger by then."""
    # a private local Ray, killed with the driver's process group: on the session's cluster the killed driver's
    # trials would go on writing into the experiment until Ray noticed, racing what the test reads next
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env.update(RAY_ADDRESS="local", RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "simmim_ray", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        deadline, seen = time.time() + 400, set()
        while time.time() < deadline and len(ended_trials(exp)) < ended:
            assert proc.poll() is None, open(log_path).read()[-3000:]
            seen.update(descendants(proc.pid))
            time.sleep(0.25)  # the ledger is the event: kill soon after the trial that ended it
        seen.update(descendants(proc.pid))
        kill_run(proc, seen)  # the driver, its Ray, and any worker of it that left the group: nothing writes after
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return ended_trials(exp)


def ended_trials(exp) -> set[str]:
    if not os.path.isdir(os.path.join(exp, "ledger")):
        return set()
    return {e["trial_id"] for e in Experiment(str(exp)).ledger.events(TRIAL_ENDED)}


def kill_a_search(tmp_path, *extra: str) -> tuple:
    """A 3-trial search (with `extra` flags) SIGKILLed once 2 trials have ended -> (experiment dir, trials ended
    before the kill, the epochs each trial had reported by then)."""
    exp = tmp_path / "first" / "digits_quick"
    args = ["search", e2e_space(tmp_path), *shrinking(tmp_path, 3), "--trials", "3", "--storage-path",
            str(exp.parent), "--target-accuracy", "0.05", "--scheduler", "fifo", *RESUMABLE, *extra]
    before = start_and_kill(args, exp, tmp_path / "first.log", ended=2)
    assert len(before) >= 2
    return exp, before, trained(exp)


def assert_resumed(exp, before: set[str], reports_before: dict, study_db: str = "") -> None:
    """The resumed search finished its 3 trials, each trained once: a trial that had ended before the kill trained
    no further epoch after it (a re-launched one reports its recorded result again); one set of epochs each in
    history; the study (in `study_db`, default the experiment's SQLite file) holds one COMPLETE trial per row and
    none left RUNNING."""
    study_db = study_db or f"sqlite:///{exp}/study.db"
    rows = done_rows(exp, study_db)
    assert len(rows) == 3 and all(row["status"] == "complete" for row in rows)
    assert before <= {row["trial_id"] for row in rows}
    after = trained(exp)
    assert {t: after[t] for t in before} == {t: reports_before[t] for t in before}
    history = pq.read_table(str(exp / "history.parquet")).to_pylist()
    for row in rows:
        epochs = sorted(h["epoch"] for h in history if h["trial_id"] == row["trial_id"])
        assert epochs == [1, 2], (row["trial_id"], epochs)
        assert os.listdir(exp / "train_runs" / row["trial_id"])  # its checkpoints, in this directory
    keys = [tuple(row[k] for k in ("model.embed_dim", "model.depth", "mask.ratio")) for row in rows]
    assert len(set(keys)) == 3
    study = optuna.load_study(study_name="digits_quick", storage=study_db)
    complete = [t for t in ran(study) if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["tune_trial_id"] for t in complete) == sorted(
        row["trial_id"].removeprefix("trial_") for row in rows)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


@pytest.mark.floor_smoke
def test_resume_after_sigkill_runs_none_twice_on_the_directory_copied_or_moved(tmp_path, join_cluster):
    """A killed search copied elsewhere and resumed there: the copy finishes (its own study, ledger, Tune state,
    checkpoints), every trial trained once, and the original is untouched, byte for byte. The original, then
    moved (its old path gone), resumes where it is."""
    exp, before, reports_before = kill_a_search(tmp_path)
    copy = tmp_path / "copies" / "renamed"
    shutil.copytree(exp, copy)
    original = tree(exp)
    r = cli("search", "--resume", str(copy))
    assert r.returncode == 0, r.stderr[-3000:]
    now = tree(exp)
    changed = {f for f in set(original) | set(now) if now.get(f) != original.get(f)}
    assert not changed, f"resuming a copy wrote into the original: {sorted(changed)}"
    assert_resumed(copy, before, reports_before)
    moved = tmp_path / "moved" / "elsewhere"
    shutil.move(exp, moved)
    r = cli("search", "--resume", str(moved))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = done_rows(moved)
    assert len(rows) == 3 and all(row["status"] == "complete" for row in rows)
    assert not exp.exists()  # nothing recreated where it was


def done_rows(exp, study_db: str = "") -> list[dict]:
    """The rows of trials the search finished. A trial the killed driver had started but Tune had not saved yet
    was never continued: its row says `interrupted`, without accuracy, and its study trial failed (orphaned)."""
    rows = trial_rows(str(exp))
    lost = [row for row in rows if row["status"] == INTERRUPTED]
    assert all(row["val_accuracy"] is None and not row["feasible"] for row in lost), lost
    study = optuna.load_study(study_name="digits_quick", storage=study_db or f"sqlite:///{exp}/study.db")
    failed = {t.user_attrs.get("tune_trial_id") for t in study.trials if t.state.name == "FAIL"}
    assert {row["trial_id"].removeprefix("trial_") for row in lost} <= failed, (lost, failed)
    return [row for row in rows if row["status"] != INTERRUPTED]


