"""The quick search submitted as a Ray Job (`ray job submit --working-dir <repo> -- ... --address auto`) to a local
head node this test starts on 127.0.0.1 (token auth on, own ports and temp dir), as docs/cluster.md tells users to.
"""
from __future__ import annotations

import json
import os
import secrets
import sys

import optuna
import pyarrow.parquet as pq
import pytest
import repo_root

from cluster_utils import RAY_BIN, LocalCluster, run_with_cluster
from proc_utils import ran

pytestmark = pytest.mark.slow

REPO = repo_root.REPO
# keep the uploaded working_dir to the sources (Ray also skips what .gitignore lists)
EXCLUDES = [".git", ".venv", ".venv-floor", "venv", "experiments", "runs", ".pytest_cache", ".ruff_cache", "*.egg-info",
            "__pycache__"]


def test_quick_search_as_a_ray_job_on_a_local_head(tmp_path):
    storage = tmp_path / "exps"
    job_id = f"simmim-test-{secrets.token_hex(4)}"
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=2)
        url = cluster.dashboard_url

        def job_cli(*args: str, timeout_s: float = 60):
            return run_with_cluster(cluster, [RAY_BIN, "job", *args], timeout_s=timeout_s)

        # the entrypoint runs on the head, in the unpacked working_dir: `-m simmim_ray` imports the uploaded copy
        submit = job_cli(
            "submit", "--address", url, "--submission-id", job_id, "--working-dir", REPO,
            "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--",
            sys.executable, "-m", "simmim_ray", "search", "digits_quick", "--trials", "2",
            "--target-accuracy", "0.05", "--set", "train.epochs=2", "--set", "eval.epochs=1",
            "--set", "train.log_images=false", "--set", "model.img_size=16", "--grace-period", "1",
            "--storage-path", str(storage), "--address", "auto", "--confirm", "0",
            "--workers-per-trial", "1",  # the job's trials on the head's CPUs, one worker each (DDP: test_search_e2e)
            timeout_s=480)
        assert submit.returncode == 0, (submit.stdout[-3000:], submit.stderr[-3000:])
        assert f"Job '{job_id}' submitted successfully" in submit.stdout + submit.stderr

        status = job_cli("status", "--address", url, job_id)
        assert status.returncode == 0 and f"Job '{job_id}' succeeded" in status.stdout, status.stdout[-2000:]
        logs = job_cli("logs", "--address", url, job_id)
        assert logs.returncode == 0, logs.stderr[-2000:]
        # the search joined the head's cluster (no private instance), and finished with a winner
        assert ("simmim-ray search: a budget of 420 trial-epochs (at most 2 trials) of space 'digits_quick'"
                in logs.stdout)
        assert "Winner: trial_" in logs.stdout, logs.stdout[-3000:]
        # the trials ran on this cluster (a private Ray instance would not show here): one Train run each
        actors = run_with_cluster(cluster, [RAY_BIN, "list", "actors", "--address", url, "--format", "json",
                                            "--filter", "class_name=TrainController", "--detail"], 60)
        assert actors.returncode == 0, actors.stderr[-2000:]
        controllers = json.loads(actors.stdout)
        assert len(controllers) == 2
        # our Ray Train defaults reach processes of a joined cluster (they inherit the raylet's env, not ours)
        for c in controllers:
            env_vars = json.loads(c["serialized_runtime_env"]).get("env_vars", {})
            assert env_vars.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S") == "0.2", c["serialized_runtime_env"]

    exp = storage / "digits_quick"
    rows = pq.read_table(str(exp / "results.parquet")).to_pylist()
    assert len(rows) == 2 and {row["status"] for row in rows} <= {"complete", "pruned"}
    feasible = [row for row in rows if row["feasible"]]
    assert feasible and all(0 <= row["val_accuracy"] <= 1 for row in feasible)
    best = min(feasible, key=lambda row: row["params"])
    assert f"Winner: {best['trial_id']}" in logs.stdout
    assert json.loads((exp / "best" / "metrics.json").read_text())["trial_id"] == best["trial_id"]
    assert (exp / "best" / "encoder.pt").stat().st_size > 0
    assert (exp / "pareto.png").stat().st_size > 1000
    study = optuna.load_study(study_name="digits_quick", storage=f"sqlite:///{exp}/study.db")
    assert len(ran(study)) == 2

    # settings.json names the space inside the job's working_dir, gone with the cluster; --resume reads the copy
    settings = json.loads((exp / "settings.json").read_text())
    assert "working_dir_files" in settings["space_path"] and not os.path.exists(settings["space_path"])
    with open(os.path.join(REPO, "search_spaces", "digits_quick.yaml")) as f:
        assert (exp / "inputs" / "digits_quick.yaml").read_text() == f.read()
    from simmim_ray.search.record.experiment import Experiment
    from simmim_ray.search.space import load_space

    assert load_space(Experiment(str(exp)).input_file(settings["space_path"])).name == "digits_quick"
