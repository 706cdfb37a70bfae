"""Signals and unreachable addresses through real `python -m simmim_ray` processes: a search or a train stopped
by a signal says so in one line and exits 128+N, `report` reads what it left, and a closed address exits 2 in
seconds (the handlers themselves: tests/unit/test_signals.py)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import repo_root
from proc_utils import e2e_space

from simmim_ray.search.record.experiment import Experiment

REPO = repo_root.REPO
NATIVE = ("Fatal Python error", "Aborted", "SIGTERM received", "Traceback", "core dumped")


def env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **extra}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- real searches and runs (Ray) -----------------------------------------------------------------------------
# one Train worker per run: what is signalled is the driver, whatever the trials' size (DDP: test_search_e2e.py)
TINY = ["--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
        "--set", "model.img_size=16", "--scheduler", "fifo", "--target-accuracy", "0.05", "--workers-per-trial", "1"]


def group(pgid: int) -> str:
    return subprocess.run(["pgrep", "-a", "-g", str(pgid)], capture_output=True, text=True).stdout


def signal_at(args: list[str], cwd, sig: int, ready) -> tuple[int, str]:
    """Runs the CLI with a private Ray until `ready()` holds, then sends `sig`: SIGINT to its process group, as
    Ctrl-C in a terminal does (Ray's processes get it too), SIGTERM to the driver, as `kill PID` does.
    -> (exit code, output)."""
    log_path = os.path.join(str(cwd), "cli.log")
    ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "simmim_ray", *args], stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env(RAY_ADDRESS="local", RAY_TMPDIR=ray_tmp), start_new_session=True)
        try:
            deadline = time.time() + 400
            while not ready(open(log_path).read()):
                assert proc.poll() is None and time.time() < deadline, open(log_path).read()[-3000:]
                time.sleep(0.2)
            os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
            rc = proc.wait(timeout=120)
            # Ray's processes went with the driver: nothing of its group is left (a moment for the last to exit)
            deadline = time.time() + 30
            while (left := group(proc.pid)) and time.time() < deadline:
                time.sleep(0.5)
            assert not left, left
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)  # its Ray's session files: nothing of the group is left
    return rc, open(log_path).read()


# ---- in a process of its own ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "env"])
def test_train_on_a_closed_address_exits_2_in_seconds_and_writes_nothing(tmp_path, how):
    port = closed_port()
    extra = ["--address", f"127.0.0.1:{port}"] if how == "flag" else []
    e = env(RAY_ADDRESS=f"127.0.0.1:{port}" if how == "env" else "local")
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "simmim_ray", "train", "--output", str(tmp_path / "out"), *extra],
                       capture_output=True, text=True, timeout=120, env=e, cwd=tmp_path)
    # bounded by our probe (5 s) plus start-up on a loaded machine; ray.init alone retried for many minutes
    assert time.time() - t < 60 and p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}': cannot connect to Ray: nothing answers" in lines[0], p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stage, sig, args, ready", [
    ("trials", signal.SIGTERM, ["--trials", "3", "--confirm", "0"], lambda log: "[1/3]" in log),
    ("confirmation", signal.SIGINT, ["--trials", "1", "--confirm", "1", "--confirm-seeds", "1"],
     lambda log: "simmim-ray: confirming" in log),
], ids=["trials-sigterm", "confirmation-sigint"])
def test_search_stops_on_a_signal_and_report_reads_it(tmp_path, stage, sig, args, ready):
    exp = tmp_path / "exps" / "digits_quick"
    rc, log = signal_at(["search", e2e_space(tmp_path), "--storage-path", str(tmp_path / "exps"), *TINY, *args],
                        tmp_path, sig, ready)
    assert rc == 128 + sig, log[-3000:]
    assert not [n for n in NATIVE if n in log], log[-3000:]
    assert log.rstrip().splitlines()[-1] == (f"simmim-ray: interrupted ({signal.Signals(sig).name}); resume with: "
                                             f"simmim-ray search --resume {exp}")
    assert Experiment(str(exp)).ledger.latest("search_interrupted")["signal"] == signal.Signals(sig).name
    assert not (exp / ".lease").exists()  # given back once Ray had stopped
    rep = subprocess.run([sys.executable, "-m", "simmim_ray", "report", str(exp)], capture_output=True, text=True,
                         timeout=120, env=env())
    assert rep.returncode == 0 and "trial_" in rep.stdout, rep.stderr


@pytest.mark.slow
def test_train_stops_on_sigterm_while_training(tmp_path):
    out = tmp_path / "out"
    rc, log = signal_at(["train", "--output", str(out), "--set", "train.epochs=20", "--set", "model.img_size=16",
                         "--set", "train.log_images=false"], tmp_path, signal.SIGTERM,
                        lambda log: (out / "tb").exists())
    assert rc == 143, log[-3000:]
    assert not [n for n in NATIVE if n in log], log[-3000:]
    assert log.rstrip().splitlines()[-1] == (f"simmim-ray: interrupted (SIGTERM); run the same command again to "
                                             f"resume {out} from its last checkpoint")
    assert not (out / "metrics.json").exists()
