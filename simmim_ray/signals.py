"""Ctrl-C (SIGINT) and SIGTERM, for every command at every stage: one handler, installed once by `cli.main`.

The handler raises `Interrupted` in the main thread, wherever the command is (validation, Tune's loop, waiting for
confirmation jobs, a `train` run); `cli.main` then stops the Ray jobs this process started (`ray.shutdown`: a
local instance ends, a joined cluster ends this driver's actors), prints one line saying how to resume, and exits
128 + the signal (130, 143). A second signal while it stops exits at once.

Libraries replace a process's handlers as they go: Tune takes SIGINT for its own graceful stop during `fit` (after
which the search would have gone on to confirmation), Ray Train takes SIGINT during a `train` run, `ray.init` sets a
SIGTERM handler that exits from wherever the interpreter is, and Ray's core then installs a native one that dumps
a stack and aborts. While ours is installed, `signal.signal` leaves SIGINT and SIGTERM alone, and `reassert()` (called
after `ray.init`) puts ours back at the C level.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from simmim_ray.errors import one_line

OURS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 3.0  # how long `bounded` waits for the main thread to take a signal itself


class Interrupted(KeyboardInterrupt):
    """A signal stopped the command: exit 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    real_signal: Callable | None = None  # signal.signal while ours is installed (the library's own)
    previous: dict = {}
    received: int | None = None
    hint: Callable[[], str] | None = None  # how to resume, once the command knows (see `stopping`)
    caller_ray: bool = False  # Ray was connected before the command began: the caller's to stop, not ours


def _handler(signum, frame) -> None:
    if _State.received is not None:  # asked again while stopping: stop now
        print(f"simmim-ray: {signal.Signals(signum).name} again: exiting without stopping Ray", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)
    _State.received = signum
    raise Interrupted(signum)


def _guarded(signum, handler):
    """signal.signal while ours is installed: SIGINT and SIGTERM stay ours."""
    if signum in OURS:
        return _handler
    return _State.real_signal(signum, handler)


def install() -> None:
    """(Only the main thread receives signals: `cli.main` called from another thread, as tests do, installs none.)"""
    if _State.real_signal is not None:
        return
    _State.caller_ray = _ray_connected()
    if threading.current_thread() is not threading.main_thread():
        return
    _State.previous = {s: signal.getsignal(s) for s in OURS}
    _State.received, _State.hint = None, None
    for s in OURS:
        signal.signal(s, _handler)
    _State.real_signal, signal.signal = signal.signal, _guarded


def uninstall() -> None:
    """Back to what the process had (for callers of `cli.main` in a longer-lived process, such as tests)."""
    if _State.real_signal is None:
        return
    signal.signal, _State.real_signal = _State.real_signal, None
    for s, h in _State.previous.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)


def reassert() -> None:
    """After `ray.init`: its core's native SIGTERM handler replaced ours below Python; put ours back."""
    if _State.real_signal is not None:
        for s in OURS:
            _State.real_signal(s, _handler)


@contextmanager
def stopping(hint: Callable[[], str], on_stop: Callable[[str], None] | None = None) -> Iterator[None]:
    """Around a command's work: on a signal, Ray stops first, then `on_stop` (e.g. a ledger event) runs, before
    anything the command holds is released on the way out; `hint()` is the resume line `cli.main` prints."""
    _State.hint = hint
    try:
        yield
    except KeyboardInterrupt as e:
        stop_ray()
        if on_stop is not None:
            try:
                on_stop(signal.Signals(received(e)).name)
            except Exception as err:  # noqa: BLE001 - the stop goes on to its one line and exit code
                print(f"simmim-ray: warning: {one_line(str(err) or type(err).__name__)}", file=sys.stderr, flush=True)
        raise


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def stop_ray() -> None:
    """Ends the Ray jobs this command started (a local instance: all its processes; a cluster: this driver's jobs,
    which Ray ends with the driver's connection). A Ray the caller had connected before `cli.main` (a notebook, a
    test session) stays up: the command's jobs end with their Tune/Train run, the connection is the caller's."""
    if _State.caller_ray or not _ray_connected():
        return
    ray = sys.modules["ray"]
    try:
        ray.shutdown()
    except Exception as e:  # noqa: BLE001 - stopping must go on to the message and the exit code
        print(f"simmim-ray: warning: stopping Ray: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr, flush=True)


def received(e: KeyboardInterrupt) -> int:
    """The signal that stopped the command: the one our handler took (a library may turn `Interrupted` into a
    KeyboardInterrupt of its own on the way up: Ray's `get` does), else Ctrl-C."""
    return _State.received or getattr(e, "signum", signal.SIGINT)


def message(e: KeyboardInterrupt) -> str:
    """The one line for a stopped command."""
    hint = _State.hint() if _State.hint is not None else ""
    return f"interrupted ({signal.Signals(received(e)).name}){'; ' + hint if hint else ''}"


def exit_code(e: KeyboardInterrupt) -> int:
    return 128 + received(e)


@contextmanager
def bounded(limit_s: float, what: str) -> Iterator[None]:
    """Around a call that blocks in native code, where neither our handler nor any deadline runs until it returns
    (`ray.init` on an address that accepts connections but never answers as Ray retries for many minutes, 40 s per
    try): a thread watches the clock and the signals (Python's wakeup fd), and ends the process itself when the
    main thread cannot: `what` (one line, exit 2) after `limit_s`, or the signal's line and exit code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w)
    done = threading.Event()

    def watch() -> None:
        ready, _, _ = select.select([r], [], [], limit_s)
        if done.is_set():
            return
        if not ready:
            print(f"simmim-ray: error: {what}", file=sys.stderr, flush=True)
            os._exit(2)
        signum = os.read(r, 1)[0]
        if done.wait(GRACE_S) or signum not in OURS:
            return
        print(f"simmim-ray: interrupted ({signal.Signals(signum).name}); nothing was started", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)

    watcher = threading.Thread(target=watch, name="simmim-ray-bounded", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old)
        os.write(w, b"\0")  # wakes the watcher, which sees `done`
        watcher.join()
        os.close(r)
        os.close(w)
