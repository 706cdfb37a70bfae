"""Ctrl-C and SIGTERM at every stage (simmim_ray/signals.py): Ray stopped, one line saying how to resume, exit
130 / 143, never a native stack dump; a Ray address that does not answer fails in one line within a bound."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import repo_root

from proc_utils import e2e_space
from simmim_ray import signals
from simmim_ray.cli import main
from simmim_ray.errors import UserError
from simmim_ray.search.experiment import Experiment
from simmim_ray.train import ray_init

REPO = repo_root.REPO
NATIVE = ("Fatal Python error", "Aborted", "SIGTERM received", "Traceback", "core dumped")
STDLIB_SIGNAL = signal.signal


def env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **extra}


# ---- in this process ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_main_stops_on_a_signal_with_one_line_and_128_plus_it(monkeypatch, capsys, sig):
    import simmim_ray.cli.check as check_cmd

    def interrupted(args):
        os.kill(os.getpid(), sig)
        time.sleep(30)  # the handler raises in here
        raise AssertionError("the signal did not stop the command")

    before = {s: signal.getsignal(s) for s in signals.OURS}
    monkeypatch.setattr(check_cmd, "run", interrupted)
    assert main(["check", "s.yaml"]) == 128 + sig
    assert capsys.readouterr().err == f"simmim-ray: interrupted ({signal.Signals(sig).name})\n"
    # the process's own handlers and signal.signal are back (main may be called again, as in tests)
    assert {s: signal.getsignal(s) for s in signals.OURS} == before
    assert signal.signal is STDLIB_SIGNAL


class FakeRay:
    def __init__(self, up: bool) -> None:
        self.up, self.stopped = up, False

    def is_initialized(self) -> bool:
        return self.up

    def shutdown(self) -> None:
        self.up, self.stopped = False, True


@pytest.mark.parametrize("connected_before", [False, True])
def test_a_signal_stops_the_ray_the_command_started_and_never_the_callers(monkeypatch, capsys, connected_before):
    """A notebook or a test session that connected Ray before calling `main` keeps its connection (its jobs end with
    their own Tune run); a Ray the command connected itself is stopped."""
    import simmim_ray.cli.check as check_cmd

    fake = FakeRay(up=connected_before)

    def interrupted(args):
        fake.up = True  # the command connects (or finds the caller's connection)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(check_cmd, "run", interrupted)
    assert main(["check", "s.yaml"]) == 143
    assert fake.stopped is (not connected_before)
    assert fake.up is connected_before


def test_libraries_cannot_take_our_signals_while_a_command_runs(monkeypatch):
    """Tune (during fit) and Ray Train (during a run) install their own SIGINT handler, ray.init a SIGTERM one."""
    import simmim_ray.cli.check as check_cmd

    seen = {}

    def library_takes_them(args):
        for s in signals.OURS:
            signal.signal(s, lambda *a: None)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # other signals are theirs to take
        seen.update({s: signal.getsignal(s) for s in (*signals.OURS, signal.SIGUSR2)})
        return 0

    monkeypatch.setattr(check_cmd, "run", library_takes_them)
    old = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        assert main(["check", "s.yaml"]) == 0
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert all(seen[s] is signals._handler for s in signals.OURS)
    assert seen[signal.SIGUSR2] == signal.SIG_IGN


def silent_listener() -> tuple[socket.socket, int]:
    """A port that accepts connections and never says anything (not Ray)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(s.accept()) for _ in range(16)], daemon=True).start()
    return s, s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_answers_but_not_as_ray_is_refused_in_seconds():
    s, port = silent_listener()
    with s:
        t = time.time()
        with pytest.raises(UserError, match=f"accepts connections but did not answer as Ray within 1 s"):
            ray_init.check_reachable(f"127.0.0.1:{port}", timeout_s=1)
        assert time.time() - t < 5


def test_ray_address_from_the_environment_is_the_one_checked(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert ray_init.given_address(None) == (f"127.0.0.1:{port}", f"RAY_ADDRESS='127.0.0.1:{port}'")
    assert ray_init.given_address("auto")[0] == f"127.0.0.1:{port}"
    with pytest.raises(UserError, match=rf"^RAY_ADDRESS='127.0.0.1:{port}': cannot connect to Ray: nothing answers"):
        ray_init.check_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert ray_init.given_address(None) == ("", "")


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


BLOCKED = """
import hashlib, sys
from simmim_ray import signals
signals.install()
with signals.bounded(float(sys.argv[1]), "the call did not return"):
    open(sys.argv[2], "w").close()
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9)  # native code: no Python handler runs until it returns
"""


def test_bounded_ends_a_native_call_past_its_limit(tmp_path):
    t = time.time()
    p = subprocess.run([sys.executable, "-c", BLOCKED, "1", str(tmp_path / "in")], capture_output=True, text=True,
                       timeout=300, env=env())
    assert p.returncode == 2 and p.stderr == "simmim-ray: error: the call did not return\n"
    assert time.time() - t < 60  # the 1 s limit, not the minutes the call takes


def test_bounded_ends_a_native_call_on_sigterm(tmp_path):
    ready = tmp_path / "in"
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, "600", str(ready)], stderr=subprocess.PIPE, text=True,
                            env=env())
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t = time.time()
        assert proc.wait(timeout=30) == 143
        assert time.time() - t < signals.GRACE_S + 5
        assert proc.stderr.read() == "simmim-ray: interrupted (SIGTERM); nothing was started\n"
    finally:
        proc.kill()
        proc.wait()


# ---- real searches and runs (Ray) -----------------------------------------------------------------------------
TINY = ["--set", "train.epochs=2", "--set", "eval.epochs=1", "--set", "train.log_images=false",
        "--set", "model.img_size=16", "--scheduler", "fifo", "--target-accuracy", "0.05"]


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
    return rc, open(log_path).read()


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
