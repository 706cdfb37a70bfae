"""Ctrl-C and SIGTERM at every stage (simmim_ray/signals.py): Ray stopped, one line saying how to resume, exit
130 / 143, never a native stack dump; a Ray address that does not answer fails in one line within a bound."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import repo_root

from simmim_ray import signals
from simmim_ray.cli import main
from simmim_ray.errors import UserError
from simmim_ray.train import ray_init

REPO = repo_root.REPO
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
